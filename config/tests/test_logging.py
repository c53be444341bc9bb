"""Log lines: JSON in production, personal data and secrets masked everywhere (message,
`extra=` fields, tracebacks), and the request id carried into Celery task headers."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from checkout.tests.factories import VALID_CHECKOUT
from config.celery import app as celery_app
from config.logging import RedactingFilter, RedactingJsonFormatter, RedactingTextFormatter, RequestIdFilter
from foundation.masking import text_mask
from foundation.request_context import request_id_var
from notifications.models import NotificationTrigger

EMAIL, PHONE = "ana.souza@example.com", "+447911123456"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"beacon.test.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream, handler
    logger.removeHandler(handler)


def test_json_lines_mask_the_message_the_extra_fields_and_the_traceback(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(RedactingJsonFormatter("%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"))
    token = request_id_var.set("req-0123456789")
    try:
        raise RuntimeError(f"vendor refused {EMAIL}")
    except RuntimeError:
        logger.exception(
            "sending to %s failed", PHONE, extra={"to": EMAIL, "phone": PHONE, "body": "auth_token=s3cr3t-value", "n": 3}
        )
    finally:
        request_id_var.reset(token)

    output = stream.getvalue()
    line = json.loads(output)
    assert line["request_id"] == "req-0123456789"
    assert line["message"] == f"sending to {text_mask(PHONE)} failed"
    assert line["to"] == "a•••@example.com"
    assert line["phone"] == text_mask(PHONE) != PHONE
    assert line["body"] == "auth_token=[redacted]"
    assert line["n"] == 3
    assert "RuntimeError: vendor refused a•••@example.com" in line["exc_info"]
    for secret in (EMAIL, PHONE, "s3cr3t-value"):
        assert secret not in output


def test_text_lines_are_masked_and_carry_the_request_id(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(RedactingTextFormatter("%(levelname)s [%(request_id)s] %(message)s"))
    token = request_id_var.set("req-abcdefgh")
    try:
        logger.info("delivered to %s", EMAIL, extra={"phone": PHONE})
    finally:
        request_id_var.reset(token)

    assert stream.getvalue() == "INFO [req-abcdefgh] delivered to a•••@example.com\n"


def test_production_logs_are_json_by_default() -> None:
    # DEBUG is off in the suite, as in production; LOG_FORMAT=text comes from pytest_plugin for readability.
    assert settings.LOGGING["formatters"]["json"]["()"] == "config.logging.RedactingJsonFormatter"
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["request_id", "redact"]


def test_a_published_task_carries_the_current_request_id_in_its_headers() -> None:
    queue = f"beacon-test-{uuid.uuid4().hex[:12]}"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2)
    token = request_id_var.set("req-from-http-1234")
    try:
        celery_app.send_task("notifications.tasks.outbox_relay", queue=queue)
        raw = broker.lpop(queue)
    finally:
        request_id_var.reset(token)
        broker.delete(queue)

    message = json.loads(raw)
    assert message["headers"]["request_id"] == "req-from-http-1234"


def test_a_published_task_without_a_request_keeps_no_request_id() -> None:
    queue = f"beacon-test-{uuid.uuid4().hex[:12]}"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2)
    try:
        celery_app.send_task("notifications.tasks.outbox_relay", queue=queue)
        raw = broker.lpop(queue)
    finally:
        broker.delete(queue)

    assert "request_id" not in json.loads(raw)["headers"]


@pytest.mark.django_db
def test_the_clients_request_id_is_echoed_and_stored_on_the_trigger(api: APIClient) -> None:
    response = api.post("/api/v1/checkouts/", VALID_CHECKOUT, format="json", HTTP_X_REQUEST_ID="client-req-00001")

    assert response.status_code == 201
    assert response["X-Request-ID"] == "client-req-00001"
    assert NotificationTrigger.objects.get().request_id == "client-req-00001"
