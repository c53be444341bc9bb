"""PAYMENT_GATEWAY: explicit outside development, checked, and the one class that charges."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from checkout.models import Order
from checkout.payments import payment_gateway
from checkout.tests.factories import CHECKOUTS_URL, checkout_body

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = "checkout.payments.SandboxPaymentGateway"
PROVIDER = "checkout.tests.gateways.ProviderLikeGateway"


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`manage.py ARGS` as a production host runs it: DEBUG off, no test-suite variables."""
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "beacon.example.com",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/beacon"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env},
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_with_debug_off_and_no_gateway_named_nothing_starts() -> None:
    result = manage("check")

    assert result.returncode != 0
    assert "PAYMENT_GATEWAY must be set when DEBUG is off" in result.stderr


def test_with_debug_on_the_sandbox_is_the_default() -> None:
    result = manage("shell", "-c", "from django.conf import settings; print(settings.PAYMENT_GATEWAY)", DEBUG="true")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == SANDBOX


def test_the_sandbox_named_explicitly_starts_but_check_deploy_warns() -> None:
    plain = manage("check", PAYMENT_GATEWAY=SANDBOX)
    deploy = manage("check", "--deploy", "--tag", "payments", PAYMENT_GATEWAY=SANDBOX)

    assert plain.returncode == 0, plain.stderr
    assert "checkout.W001" not in plain.stdout + plain.stderr
    assert "checkout.W001" in deploy.stdout + deploy.stderr
    assert "tok_ok" in deploy.stdout + deploy.stderr


def test_a_provider_gateway_passes_check_deploy_without_payment_warnings() -> None:
    result = manage("check", "--deploy", "--tag", "payments", "--fail-level", "WARNING", PAYMENT_GATEWAY=PROVIDER)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("path", "error_id"),
    [("checkout.tests.gateways.NoSuchGateway", "checkout.E001"), ("checkout.tests.gateways.NotAGateway", "checkout.E002")],
)
def test_a_gateway_that_cannot_charge_is_refused_by_check(path: str, error_id: str) -> None:
    result = manage("check", PAYMENT_GATEWAY=path)

    assert result.returncode != 0
    assert error_id in result.stdout + result.stderr


@pytest.fixture
def provider_gateway(settings) -> Iterator[None]:
    settings.PAYMENT_GATEWAY = PROVIDER
    payment_gateway.cache_clear()
    yield
    payment_gateway.cache_clear()


@pytest.mark.django_db
def test_checkouts_are_charged_through_the_configured_gateway(api: APIClient, provider_gateway: None) -> None:
    paid = api.post(CHECKOUTS_URL, checkout_body(payment_token="pm_card_visa"), format="json", HTTP_IDEMPOTENCY_KEY="k-provider")
    sandbox_token = api.post(CHECKOUTS_URL, checkout_body(payment_token="tok_ok"), format="json")

    assert paid.status_code == 201, paid.content
    assert Order.objects.get(pk=paid.json()["id"]).payment_reference == "provider_k-provider"
    assert sandbox_token.status_code == 402  # the sandbox's test token means nothing to a real provider
