"""RabbitMQ chosen by CELERY_BROKER_URL: the settings it brings, and readiness and metrics that
answer quickly when no node does. (`make cluster-test` runs Beacon on a real three-node cluster.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from django.test import Client

from config.metrics_collectors import CeleryQueueDepthCollector
from harness.processes import ROOT


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dead_amqp_list() -> str:
    return ";".join(f"amqp://beacon:x@127.0.0.1:{_dead_port()}//" for _ in range(2))


def _celery_settings(broker_url: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({k: getattr(s, k, None) for k in ('CELERY_TASK_DEFAULT_QUEUE_TYPE', "
        "'CELERY_TASK_CREATE_MISSING_QUEUE_TYPE', 'CELERY_BROKER_TRANSPORT_OPTIONS')}))"
    )
    env = {**os.environ, "CELERY_BROKER_URL": broker_url, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "true"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_amqp_broker_url_brings_quorum_queues_and_publisher_confirms() -> None:
    chosen = _celery_settings("amqp://beacon:x@10.0.0.1:5672//;amqp://beacon:x@10.0.0.2:5672//")

    assert chosen["CELERY_TASK_DEFAULT_QUEUE_TYPE"] == "quorum"
    assert chosen["CELERY_TASK_CREATE_MISSING_QUEUE_TYPE"] == "quorum"  # the routed email and sms queues
    assert chosen["CELERY_BROKER_TRANSPORT_OPTIONS"]["confirm_publish"] is True


def test_a_redis_broker_keeps_redis_transport_options() -> None:
    chosen = _celery_settings("redis://127.0.0.1:6379/5")

    assert chosen["CELERY_TASK_DEFAULT_QUEUE_TYPE"] is None
    assert "visibility_timeout" in chosen["CELERY_BROKER_TRANSPORT_OPTIONS"]


@pytest.mark.django_db
def test_readyz_is_503_naming_the_broker_when_no_rabbitmq_node_answers(settings) -> None:
    settings.CELERY_BROKER_URL = _dead_amqp_list()

    started = time.monotonic()
    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json()["down"] == ["broker"]
    assert time.monotonic() - started < 5


def test_queue_depth_scrape_skips_the_samples_when_no_rabbitmq_node_answers(settings) -> None:
    settings.CELERY_BROKER_URL = _dead_amqp_list()

    assert list(CeleryQueueDepthCollector().collect()) == []


@pytest.mark.django_db
def test_readyz_can_check_the_database_alone_so_a_broker_outage_keeps_the_web_in_rotation(settings) -> None:
    settings.CELERY_BROKER_URL = _dead_amqp_list()

    response = Client().get("/readyz?check=database")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok"}


def test_readyz_refuses_an_unknown_check_name() -> None:
    response = Client().get("/readyz?check=database,disk")

    assert response.status_code == 400
    assert "disk" in response.json()["error"]["message"]
