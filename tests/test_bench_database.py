"""The benchmark says which PostgreSQL it measured and whether its commits reach the disk:
the embedded development server (fsync and synchronous_commit off) gives numbers that a
durable server would not, and a summary must not pass one for the other."""

from __future__ import annotations

import pytest
from django.db import connection

from bench.stack import database_describe


def _test_database_url(**options: str) -> str:
    settings = connection.settings_dict
    url = f"postgresql://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    if options:
        url += "?options=" + "%20".join(f"-c{name}%3D{value}" for name, value in options.items())
    return url


def _show(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_the_description_names_the_server_version_and_its_durability_settings():
    described = database_describe(_test_database_url())

    assert described.startswith(f"PostgreSQL {_show('server_version').split()[0]}, ")
    assert f"fsync {_show('fsync')}" in described
    assert f"synchronous_commit {_show('synchronous_commit')}" in described
    skips_flush = "off" in (_show("fsync"), _show("synchronous_commit"))
    assert ("not comparable with a durable server" in described) == skips_flush


@pytest.mark.django_db
def test_a_session_whose_commits_skip_the_flush_is_flagged_not_comparable():
    described = database_describe(_test_database_url(synchronous_commit="off"))

    assert "synchronous_commit off" in described
    assert "not comparable with a durable server" in described

