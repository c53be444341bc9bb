"""Databases of the systems the benchmark compares Beacon with, on Beacon's bench server."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from bench.stack import database_connect

# A database name this module creates: a plain identifier, nothing to quote or escape.
DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def database_recreate_named(server_url: str, name: str) -> str:
    """Drop and create the database `name` on the server of `server_url`; returns its URL.

    Raises ValueError for a name that is not a plain lower-case identifier."""
    if not DATABASE_NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    parts = urlsplit(server_url)
    with database_connect(urlunsplit(parts._replace(path="/postgres"))) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))
