"""10. Nobody let in: every API route needs a key (compared in constant time), the admin needs
staff, /metrics is not public, vendor secrets reach no log line, page or error report, and the
production settings pass `manage.py check --deploy`."""

from __future__ import annotations

import hmac
import inspect
import logging
import os
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from checkout import api_keys
from checkout.api_keys import api_client_authenticate, api_client_create
from config.sentry import sentry_before_send
from notifications.configuration import vendor_upsert
from notifications.models import DeliveryAttempt
from notifications.sending import notification_send
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch
from sandbox.testing import SandboxHandle

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "post", "put", "patch", "delete")


def api_routes() -> list[str]:
    """Every URL under /api/v1/, from the URL resolver, with sample values for its converters."""
    found: list[str] = []

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
                found.append("/" + re.sub(r"<uuid:\w+>", str(uuid.uuid4()), re.sub(r"<int:\w+>", "1", route)))

    walk(get_resolver().url_patterns, "")
    return found


def test_the_api_has_routes_to_check() -> None:
    assert {"/api/v1/checkouts/"} <= set(api_routes())


@pytest.mark.django_db
@pytest.mark.parametrize("route", api_routes())
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer bk_00000000_not-a-real-key", "Basic dXNlcjpwYXNz", "Token abc", "bk_x_y"],
)
def test_every_api_route_refuses_requests_without_a_valid_key(route: str, authorization: str | None) -> None:
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    for method in METHODS:
        response = getattr(client, method)(route, {}, format="json")
        assert response.status_code == 401, (method, route, response.status_code)
        assert response.json()["error"]["code"] in ("authentication_required", "authentication_failed")


@pytest.mark.django_db
def test_keys_are_checked_by_hash_in_constant_time() -> None:
    client, key = api_client_create(name=f"sec-{uuid.uuid4().hex[:8]}")
    wrong_secret = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    unknown_prefix = "bk_ffffffff_" + key.split("_", 2)[2]

    with mock.patch.object(api_keys.hmac, "compare_digest", wraps=hmac.compare_digest) as compare:
        assert api_client_authenticate(key=key) == client
        assert api_client_authenticate(key=wrong_secret) is None
        assert api_client_authenticate(key=unknown_prefix) is None  # compared against a dummy hash: same cost
        assert api_client_authenticate(key="") is None

    assert compare.call_count == 4
    source = inspect.getsource(api_client_authenticate)
    assert "hmac.compare_digest" in source
    assert "== expected" not in source and "key_hash ==" not in source
    client.is_active = False
    client.save()
    assert api_client_authenticate(key=key) is None


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/", "/admin/notifications/notification/", "/admin/notifications/vendor/",
                                  "/admin/checkout/order/"])
def test_the_admin_requires_staff(path: str) -> None:
    user = get_user_model().objects.create_user("customer", "c@shop.example", "Pa55-word-long")
    anonymous, non_staff = Client(), Client()
    non_staff.force_login(user)

    for client in (anonymous, non_staff):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_metrics_are_not_public(settings) -> None:
    settings.METRICS_TOKEN = "metrics-" + secrets.token_hex(16)
    client = Client()

    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    allowed = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}")
    assert allowed.status_code == 200


@pytest.mark.django_db
def test_a_vendor_secret_appears_in_no_log_line_page_or_error_report(
    vendors: dict, templates: None, sandbox: SandboxHandle, caplog: pytest.LogCaptureFixture
) -> None:
    secret = secrets.token_hex(16)  # looks like a Twilio auth token; the sandbox expects another one
    for name in ("sms-primary", "sms-fallback"):
        vendor_upsert(name=name, secrets={"auth_token": secret})
    notification = dispatch(make_trigger())["sms"]
    caplog.set_level(logging.DEBUG)

    notification_send(notification_id=notification.pk)

    notification.refresh_from_db()
    # 401 / Twilio 20003 at both vendors: their configuration's fault, retried later, not failed.
    assert notification.status == "retrying"
    logged = [caplog.text] + [repr(vars(record)) for record in caplog.records]
    assert caplog.records and not [text for text in logged if secret in text]
    stored = [notification.last_error, *DeliveryAttempt.objects.filter(notification=notification).values_list("error", flat=True)]
    assert not any(secret in text for text in stored)

    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("ops", "ops@shop.example", "Pa55-word-long"))
    pages = [
        admin.get(f"/admin/notifications/vendor/{vendors['sms-primary'].pk}/change/"),
        admin.get(f"/admin/notifications/notification/{notification.pk}/change/"),
        admin.get("/admin/notifications/notification/"),
    ]
    assert all(page.status_code == 200 for page in pages)
    assert not any(secret in page.content.decode() for page in pages)

    # An error report of the same failure (the events Sentry's logging integration would build).
    events = [
        {"message": record.getMessage(), "extra": {k: str(v) for k, v in vars(record).items()}, "level": record.levelname}
        for record in caplog.records
    ]
    events.append({"exception": {"values": [{"type": "VendorError", "value": notification.last_error}]},
                   "extra": {"auth_token": secret, "headers": {"Authorization": f"Basic {secret}"}}})
    assert [event for event in events if secret in repr(sentry_before_send(event, {}))] == []


def test_manage_py_check_deploy_passes_with_production_settings() -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "beacon.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://beacon.example.com",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/beacon"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "METRICS_TOKEN": secrets.token_urlsafe(32),
        # Production names its provider's gateway; the sandbox would (rightly) warn.
        "PAYMENT_GATEWAY": "checkout.tests.gateways.ProviderLikeGateway",
    }

    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )

    assert check.returncode == 0, check.stdout + check.stderr
    assert "no issues" in check.stdout
