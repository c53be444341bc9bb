"""Database URLs and throw-away databases of the running stacks (harness/stack.py) and the tests.

Every harness names its database through `database_url`: the same server as a given URL, another
database on it (and, for a proxy in front of it, another address).
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import psycopg


def database_url(server_url: str, name: str | None = None, *, host: str | None = None, port: int | None = None) -> str:
    """`server_url` pointing at the database `name` (its own when None), on `host`:`port` instead when given."""
    parts = urlsplit(server_url)
    netloc = parts.netloc
    if host is not None or port is not None:
        userinfo, _, _hostport = netloc.rpartition("@")
        netloc = f"{userinfo + '@' if userinfo else ''}{host or parts.hostname}:{port or parts.port or 5432}"
    path = parts.path if name is None else f"/{name}"
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def database_connect(url: str) -> psycopg.Connection:
    """An autocommit connection to a `postgres://` URL (Django's spelling; libpq wants `postgresql://`)."""
    return psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True, connect_timeout=5)


def database_recreate(url: str, *, settings: dict[str, str] | None = None) -> None:
    """Drop the database `url` names (closing its sessions) and create it empty on the same server.

    `settings` become the database's defaults (`ALTER DATABASE ... SET name = value`), which every
    later session gets. Names and values come from the harness's own code, never from input.
    """
    name = database_drop(url)
    with database_connect(database_url(url, "postgres")) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        for setting, value in (settings or {}).items():
            conn.execute(f'ALTER DATABASE "{name}" SET {setting} = {value}')


def database_drop(url: str) -> str:
    """Drop the database `url` names, if it exists, closing its sessions; returns its name."""
    name = urlsplit(url).path.lstrip("/")
    with database_connect(database_url(url, "postgres")) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return name


def current_database_url() -> str:
    """The URL of the database Django is using right now (the test database inside pytest)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    auth = quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    server = f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    return database_url(server, db["NAME"])
