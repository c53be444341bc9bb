"""`/healthz` (the process answers) and `/readyz` (its dependencies answer)."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from foundation.broker import amqp_ping, broker_is_amqp

# Each dependency check gives up after this long (seconds): readiness must answer quickly.
READINESS_TIMEOUT = 1.0


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=READINESS_TIMEOUT, socket_timeout=READINESS_TIMEOUT)
    try:
        client.ping()
    finally:
        client.close()


def _check_broker() -> None:
    if broker_is_amqp(settings.CELERY_BROKER_URL):
        amqp_ping(settings.CELERY_BROKER_URL, timeout=READINESS_TIMEOUT)
    else:
        _check_redis(settings.CELERY_BROKER_URL)


def readyz(request: HttpRequest) -> JsonResponse:
    """200 when PostgreSQL, Redis and the broker answer; 503 naming what is down.

    `?check=database` (comma-separated names) checks only those: a load balancer's readiness
    check of the web asks for the database alone, since checkouts go on while Redis or the
    broker is down (the outbox hands their work over later). An unknown name is a 400.
    """
    checks = {
        "database": _check_database,
        "redis": lambda: _check_redis(settings.REDIS_URL),
        "cache": lambda: _check_redis(settings.CACHE_URL),
        "broker": _check_broker,
    }
    wanted = [name for name in request.GET.get("check", "").split(",") if name]
    unknown = sorted(set(wanted) - set(checks))
    if unknown:
        return JsonResponse({"error": {"code": "invalid_request", "message": f"unknown check(s): {', '.join(unknown)}",
                                       "checks": sorted(checks)}}, status=400)
    if wanted:
        checks = {name: check for name, check in checks.items() if name in wanted}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            results[name] = f"down: {type(exc).__name__}"
    down = [name for name, result in results.items() if result != "ok"]
    body = {"status": "ok" if not down else "unavailable", "checks": results}
    if down:
        body["down"] = down
    return JsonResponse(body, status=200 if not down else 503)
