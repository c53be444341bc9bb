"""Beacon's SMTP adapter against the sandbox's strict relays: STARTTLS on a generated
certificate (trusted or not), AUTH after STARTTLS, and the mail it writes (EHLO name,
Message-ID domain, BODY=8BITMIME, no internal headers). Failures are classified by cause."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from notifications.configuration import vendor_upsert
from notifications.models import AttemptOutcome, DeliveryAttempt, NotificationStatus, Vendor
from notifications.routing import vendor_circuit
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from notifications.vendors.base import OutboundMessage, VendorAdapter, VendorError
from notifications.vendors.registry import build_adapter
from sandbox.server import InstanceConfig
from sandbox.testing import SandboxHandle, start_sandbox

USER, PASSWORD = "beacon", "relay-pass-4e1"
SENDER = "Shop <no-reply@shop.example>"


@pytest.fixture(scope="module")
def relays() -> Iterator[SandboxHandle]:
    instances = (
        InstanceConfig("smtp-trusted", "smtp", smtp_tls="trusted", smtp_credentials=(USER, PASSWORD)),
        InstanceConfig("smtp-untrusted", "smtp", smtp_tls="untrusted"),
        InstanceConfig("smtp-plain", "smtp"),
    )
    with start_sandbox(instances=instances) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean(relays: SandboxHandle) -> None:
    relays.control.reset()


@pytest.fixture
def trusted_ca(relays: SandboxHandle, settings: Any) -> str:
    """Beacon trusts the sandbox CA (as an operator points SMTP_CA_BUNDLE at a private CA)."""
    settings.SMTP_CA_BUNDLE = relays.instances["smtp-trusted"]["tls"]["ca_file"]
    return settings.SMTP_CA_BUNDLE


def relay(relays: SandboxHandle, name: str, *, login: bool = False, use_tls: bool = True) -> VendorAdapter:
    settings = {"host": "127.0.0.1", "port": relays.port(name), "use_tls": use_tls, "from_email": SENDER}
    secrets = {"username": USER, "password": PASSWORD} if login else {}
    return build_adapter("smtp", settings=settings, secrets=secrets, timeout=2.0)


def email(text: str = "Your order shipped.", key: str | None = None) -> OutboundMessage:
    return OutboundMessage(
        channel="email", to="ana@example.com", subject="Order shipped", text=text, html="",
        idempotency_key=key or uuid.uuid4().hex, request_id="req-internal-42",
    )


def expect_error(adapter: VendorAdapter, message: OutboundMessage) -> VendorError:
    with pytest.raises(VendorError) as caught:
        adapter.send(message)
    return caught.value


def test_it_sends_over_starttls_with_auth_to_a_relay_it_trusts(relays: SandboxHandle, trusted_ca: str) -> None:
    result = relay(relays, "smtp-trusted", login=True).send(email(key="order-9-email"))

    [stored] = relays.control.messages("smtp-trusted")
    assert stored["tls"] is True
    # Names from the sender's domain, not the host's getfqdn() ("localhost" here).
    assert stored["ehlo"] == "shop.example"
    assert result.message_id == stored["message_id"] == "<order-9-email@shop.example>"
    # The request id is Beacon's, not the recipient's business.
    assert not [name for name, _ in stored["headers"] if name.lower().startswith("x-request")]


def test_ehlo_and_message_id_domains_come_from_settings(relays: SandboxHandle, trusted_ca: str, settings: Any) -> None:
    settings.SMTP_EHLO_HOSTNAME = "mx1.beacon.example"
    settings.EMAIL_MESSAGE_ID_DOMAIN = "mail.shop.example"

    result = relay(relays, "smtp-trusted", login=True).send(email(key="k-7"))

    [stored] = relays.control.messages("smtp-trusted")
    assert (stored["ehlo"], result.message_id) == ("mx1.beacon.example", "<k-7@mail.shop.example>")


def test_an_8bit_body_is_declared_8bitmime_and_an_ascii_one_is_not(relays: SandboxHandle, trusted_ca: str) -> None:
    adapter = relay(relays, "smtp-trusted", login=True)

    adapter.send(email(text="Seu pedido está a caminho ✓"))
    adapter.send(email(text="Your order shipped."))

    eight_bit, ascii_only = relays.control.messages("smtp-trusted")
    assert "BODY=8BITMIME" in eight_bit["mail_options"]
    assert eight_bit["text"].strip() == "Seu pedido está a caminho ✓"
    assert "BODY=8BITMIME" not in ascii_only["mail_options"]


def test_an_untrusted_certificate_is_a_transient_failure(relays: SandboxHandle, trusted_ca: str) -> None:
    error = expect_error(relay(relays, "smtp-untrusted"), email())

    # Not the message's fault: the next vendor may take it, and the breaker counts it.
    assert (error.permanent, error.misconfigured, error.outcome_unknown) == (False, False, False)
    assert "TLS failure" in str(error) and "certificate" in str(error)
    assert relays.control.messages("smtp-untrusted") == []


def test_a_relay_whose_ca_is_not_trusted_is_refused(relays: SandboxHandle, settings: Any) -> None:
    settings.SMTP_CA_BUNDLE = ""  # the system's CAs do not know the sandbox's

    error = expect_error(relay(relays, "smtp-trusted", login=True), email())

    assert not error.permanent and "certificate" in str(error)


def test_no_starttls_where_the_relay_requires_it_is_the_vendors_misconfiguration(relays: SandboxHandle) -> None:
    error = expect_error(relay(relays, "smtp-trusted", use_tls=False), email())

    assert (error.permanent, error.misconfigured, error.status_code) == (False, True, 530)
    assert "the server said 530" in str(error) and "STARTTLS" in str(error)


def test_login_without_starttls_says_auth_is_not_offered(relays: SandboxHandle) -> None:
    error = expect_error(relay(relays, "smtp-trusted", login=True, use_tls=False), email())

    assert error.misconfigured and "AUTH" in str(error)


@pytest.mark.django_db
def test_an_untrusted_primary_fails_over_to_the_fallback_and_trips_its_breaker(
    relays: SandboxHandle, trusted_ca: str, templates: None
) -> None:
    primary = vendor_upsert(
        name="smtp-primary", channel="email", adapter="smtp", priority=10, timeout_seconds=2.0,
        settings={"host": "127.0.0.1", "port": relays.port("smtp-untrusted"), "use_tls": True, "from_email": SENDER},
        secrets={},
    )
    vendor_upsert(
        name="smtp-fallback", channel="email", adapter="smtp", priority=20, timeout_seconds=2.0,
        settings={"host": "127.0.0.1", "port": relays.port("smtp-plain"), "from_email": SENDER}, secrets={},
    )
    Vendor.objects.update(breaker_minimum_calls=1, breaker_window_size=2, breaker_failure_rate=50)
    vendor_circuit(Vendor.objects.get(pk=primary.pk)).reset()
    notification = dispatch(make_trigger())["email"]

    final = run_until_settled(notification.pk)

    assert final.status == NotificationStatus.SENT and final.vendor.name == "smtp-fallback"
    attempts = DeliveryAttempt.objects.filter(notification=final).order_by("id")
    assert [(a.vendor.name, a.outcome) for a in attempts] == [
        ("smtp-primary", AttemptOutcome.TRANSIENT_ERROR), ("smtp-fallback", AttemptOutcome.SENT)
    ]
    assert "certificate" in attempts[0].error
    assert len(relays.control.messages("smtp-plain")) == 1
    assert vendor_circuit(Vendor.objects.get(pk=primary.pk)).snapshot().state == "open"


@pytest.mark.parametrize("name", ["SMTP_EHLO_HOSTNAME", "EMAIL_MESSAGE_ID_DOMAIN"])
def test_a_domain_setting_that_is_no_domain_stops_the_process_at_start(name: str) -> None:
    env = {**os.environ, "DEBUG": "true", "SECRET_KEY": "x", name: "shop example/"}
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"}, capture_output=True, text=True, timeout=60,
    )

    assert started.returncode != 0
    assert f"{name} must be a domain name" in started.stderr
