"""Scenario 5 runs on the Procfile's worker configuration unless scenario 4 showed a clearly better one."""

from __future__ import annotations

from bench.scenarios import workers_for_daily_volume

DEFAULT = ("threads", 2)


def point(pool: str, processes: int, delivered: float, *, lost: int = 0, p99: float = 500.0) -> dict:
    return {"pool": pool, "processes": processes, "delivered_per_s": delivered, "lost_total": lost, "delivery_p99_ms": p99}


def test_a_small_lead_from_noise_keeps_the_default() -> None:
    points = [point("threads", 1, 57.8), point("threads", 2, 53.0), point("prefork", 16, 57.3)]

    assert workers_for_daily_volume(points, default=DEFAULT) == DEFAULT


def test_a_clear_lead_replaces_the_default() -> None:
    points = [point("threads", 1, 40.0), point("threads", 2, 50.0), point("prefork", 16, 56.0)]

    assert workers_for_daily_volume(points, default=DEFAULT) == ("prefork", 16)


def test_a_configuration_that_lost_notifications_is_never_chosen() -> None:
    points = [point("threads", 2, 50.0, lost=3), point("prefork", 16, 40.0)]

    assert workers_for_daily_volume(points, default=DEFAULT) == ("prefork", 16)


def test_without_a_usable_point_the_default_stays() -> None:
    assert workers_for_daily_volume([point("threads", 2, 50.0, lost=1)], default=DEFAULT) == DEFAULT
