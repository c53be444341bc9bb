"""/healthz and /readyz, as a load balancer and an orchestrator use them."""

from __future__ import annotations

import socket

import pytest
from django.test import Client


def _dead_redis_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


def test_healthz_answers_without_touching_any_dependency() -> None:
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_200_when_database_redis_and_broker_answer() -> None:
    response = Client().get("/readyz")

    assert response.status_code == 200
    assert set(response.json()["checks"].values()) == {"ok"}


@pytest.mark.django_db
def test_readyz_is_503_naming_the_broker_when_it_is_down(settings) -> None:
    settings.CELERY_BROKER_URL = _dead_redis_url()

    response = Client().get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["broker"]
    assert body["checks"]["database"] == "ok"
