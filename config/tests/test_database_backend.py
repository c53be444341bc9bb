"""The database backend's health checks (config/database), on real connections to PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection, connections

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def health_checks(monkeypatch) -> list[bool]:
    """Every health check the connection runs (the real `SELECT 1`), with its answer."""
    checks: list[bool] = []
    real = type(connections["default"]).is_usable

    def counted(self) -> bool:
        usable = real(self)
        checks.append(usable)
        return usable

    monkeypatch.setattr(type(connections["default"]), "is_usable", counted)
    return checks


def request(sql: str = "SELECT 1") -> None:
    """One request (or task) as Django and config/celery_signals.py frame it."""
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute(sql)
    connection.close_if_unusable_or_obsolete()


def test_a_connection_that_just_ended_a_request_is_not_checked_again(health_checks: list[bool]) -> None:
    request()
    checks_before = len(health_checks)

    request()
    request()

    assert len(health_checks) == checks_before


def test_a_connection_idle_for_longer_than_the_freshness_is_checked(health_checks: list[bool], settings) -> None:
    request()
    settings.DATABASE_HEALTH_CHECK_FRESH_SECONDS = 0  # as if that second had passed

    request()

    assert health_checks == [True]


def test_a_connection_that_broke_while_idle_is_replaced_without_failing_the_request(health_checks: list[bool], settings) -> None:
    request()
    old_pid = connection.connection.info.backend_pid
    with connections.create_connection("default").cursor() as other:  # PostgreSQL restarted, say
        other.execute("SELECT pg_terminate_backend(%s)", [old_pid])
    settings.DATABASE_HEALTH_CHECK_FRESH_SECONDS = 0

    request()

    assert health_checks == [False]
    assert connection.connection.info.backend_pid != old_pid


def test_a_connection_that_broke_during_a_request_is_not_taken_for_fresh(health_checks: list[bool]) -> None:
    """It ended its request moments ago, but with an error: it is checked, closed and replaced."""
    request()
    old_pid = connection.connection.info.backend_pid
    connection.close_if_unusable_or_obsolete()
    with connections.create_connection("default").cursor() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [old_pid])
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close_if_unusable_or_obsolete()

    request()

    assert health_checks == [False]
    assert connection.connection.info.backend_pid != old_pid
