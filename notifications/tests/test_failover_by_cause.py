"""Who is at fault decides what happens next: a vendor's own configuration fault fails over to
the next vendor and counts against the vendor's breaker; a recipient's or message's fault fails
the notification at once. Against the sandbox's Twilio accounts, which refuse what Twilio does."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from notifications.models import AttemptOutcome, DeliveryAttempt, NotificationStatus, Vendor
from notifications.routing import vendor_circuit, vendors_forget
from notifications.sending import notification_send
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from notifications.vendor_secrets import secrets_encrypt
from notifications.vendors.base import OutboundMessage, VendorError
from notifications.vendors.registry import build_adapter
from sandbox.testing import SandboxHandle
from sandbox.tls import certificate_generate

pytestmark = pytest.mark.django_db


def misconfigure(vendor: Vendor, *, secrets: dict[str, str] | None = None, **settings: object) -> None:
    """Change a vendor row behind the admin's back (an edit elsewhere, a vendor-side change)."""
    Vendor.objects.filter(pk=vendor.pk).update(
        settings={**vendor.settings, **settings},
        **({"secrets_encrypted": secrets_encrypt(secrets)} if secrets is not None else {}),
    )
    vendors_forget()


def attempts_of(notification_id: int) -> list[tuple[str, str, str]]:
    attempts = DeliveryAttempt.objects.filter(notification_id=notification_id).order_by("id")
    return [(a.vendor.name, a.outcome, a.vendor_code) for a in attempts]


@pytest.mark.parametrize(
    ("change", "code"),  # changes the admin would accept, refused by the vendor's account
    [
        ({"from_number": "+15005550007"}, "21606"),  # a number the primary's account does not own
        ({"secrets": {"auth_token": "rotated-elsewhere"}}, "20003"),
    ],
)
def test_a_vendor_refusing_its_own_configuration_fails_over_and_counts_against_it(
    vendors: dict, templates: None, sandbox: SandboxHandle, change: dict, code: str
) -> None:
    misconfigure(vendors["sms-primary"], **change)
    notification = dispatch(make_trigger())["sms"]

    final = run_until_settled(notification.pk)

    assert final.status == NotificationStatus.SENT and final.vendor.name == "sms-fallback"
    assert attempts_of(final.pk) == [
        ("sms-primary", AttemptOutcome.TRANSIENT_ERROR, code),
        ("sms-fallback", AttemptOutcome.SENT, ""),
    ]
    assert "configuration fault" in DeliveryAttempt.objects.filter(notification=final).first().error
    assert vendor_circuit(vendors["sms-primary"]).snapshot().failures == 1
    assert len(sandbox.control.messages("sms-fallback")) == 1


def test_a_malformed_setting_fails_over_without_a_request(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    misconfigure(vendors["sms-primary"], messaging_service_sid="MG123")
    notification = dispatch(make_trigger())["sms"]

    final = run_until_settled(notification.pk)

    assert final.status == NotificationStatus.SENT and final.vendor.name == "sms-fallback"
    [first, _] = DeliveryAttempt.objects.filter(notification=final).order_by("id")
    assert first.outcome == AttemptOutcome.TRANSIENT_ERROR and "messaging_service_sid" in first.error
    assert sandbox.control.instance("sms-primary")["counters"]["requests"] == 0


def test_every_vendor_misconfigured_retries_later_instead_of_failing(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    for name in ("sms-primary", "sms-fallback"):
        misconfigure(vendors[name], from_number="+15005550007")
    notification = dispatch(make_trigger())["sms"]

    outcome = notification_send(notification_id=notification.pk)

    notification.refresh_from_db()
    assert outcome.status == NotificationStatus.RETRYING and outcome.retry_in is not None
    assert "21606" in notification.last_error


@pytest.mark.parametrize(("phone", "code"), [("+15005550004", "21610"), ("+15005550009", "21614")])
def test_a_recipient_fault_fails_the_notification_without_trying_another_vendor(
    vendors: dict, templates: None, sandbox: SandboxHandle, phone: str, code: str
) -> None:
    notification = dispatch(make_trigger(phone=phone))["sms"]

    final = run_until_settled(notification.pk)

    assert final.status == NotificationStatus.FAILED
    assert attempts_of(final.pk) == [("sms-primary", AttemptOutcome.PERMANENT_ERROR, code)]
    assert sandbox.control.instance("sms-fallback")["counters"]["requests"] == 0
    assert vendor_circuit(vendors["sms-primary"]).snapshot().failures == 0


def test_a_bounced_address_fails_the_email_without_trying_another_vendor(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    notification = dispatch(make_trigger(email="nobody@bounce.example"))["email"]

    final = run_until_settled(notification.pk)

    assert final.status == NotificationStatus.FAILED
    assert [(name, outcome) for name, outcome, _ in attempts_of(final.pk)] == [
        ("smtp-primary", AttemptOutcome.PERMANENT_ERROR)
    ]
    assert "550" in final.last_error


def test_a_body_longer_than_twilio_takes_is_the_messages_fault_and_costs_no_request(
    vendors: dict, sandbox: SandboxHandle
) -> None:
    vendor = vendors["sms-primary"]
    adapter = build_adapter(
        "twilio", settings=vendor.settings, secrets={"auth_token": "sandbox-token"}, timeout=1.0
    )
    message = OutboundMessage(channel="sms", to="+447911123456", subject="", text="x" * 1601, html="",
                              idempotency_key="k-long")

    with pytest.raises(VendorError) as caught:
        adapter.send(message)

    assert caught.value.permanent and "1601 characters" in str(caught.value)
    assert sandbox.control.instance("sms-primary")["counters"]["requests"] == 0


@pytest.fixture
def https_vendor() -> Iterator[str]:
    """An HTTPS endpoint whose certificate nothing vouches for (a self-signed one)."""
    certificate = certificate_generate("untrusted")
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    certificate.remove()


def test_an_http_vendor_whose_certificate_does_not_verify_is_transient(vendors: dict, https_vendor: str) -> None:
    settings = {**vendors["sms-primary"].settings, "base_url": https_vendor}
    adapter = build_adapter("twilio", settings=settings, secrets={"auth_token": "sandbox-token"}, timeout=2.0)
    message = OutboundMessage(channel="sms", to="+447911123456", subject="", text="hi", html="", idempotency_key="k-tls")

    with pytest.raises(VendorError) as caught:
        adapter.send(message)

    # Nothing was sent and the message is fine: the next vendor may take it, the breaker counts it.
    error = caught.value
    assert (error.permanent, error.misconfigured, error.outcome_unknown) == (False, False, False)
    assert "TLS" in str(error)
