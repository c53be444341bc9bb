"""Beacon's adapters judged by servers it did not write (see third_party_servers.py):
- Prism validates the Twilio adapter's requests (and the sandbox's answers) against Twilio's
  OpenAPI description; what Prism refuses for a vendor setting counts against the vendor.
- nodemailer's smtp-server takes the SMTP adapter's mail over STARTTLS with AUTH, and tells
  how it was sent (EHLO, BODY=8BITMIME, the raw message); its 530/538 replies are quoted.
"""

from __future__ import annotations

import base64
import email
import email.policy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from notifications.tests.third_party_servers import NodeSmtpServer, PrismProxy, require_vendor_servers
from notifications.vendors.base import OutboundMessage, VendorAdapter, VendorError
from notifications.vendors.registry import build_adapter
from notifications.vendors.smtp import smtp_sessions
from notifications.vendors.twilio import TwilioAdapter
from sandbox.server import InstanceConfig
from sandbox.testing import SandboxHandle, start_sandbox
from sandbox.tls import CertificateFiles, certificate_generate
from sandbox.twilio_api import DEFAULT_AUTH_TOKEN

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
SERVICE_SID = "MG" + "fedcba9876543210" * 2
USER, PASSWORD = "beacon", "node-relay-pass-3"
SENDER = "Shop <no-reply@shop.example>"


@pytest.fixture(scope="module")
def twilio_sandbox() -> Iterator[SandboxHandle]:
    with start_sandbox(instances=(InstanceConfig("sms-primary", "twilio"),)) as handle:
        yield handle


@pytest.fixture(scope="module")
def prism(twilio_sandbox: SandboxHandle) -> Iterator[PrismProxy]:
    require_vendor_servers()
    with PrismProxy(twilio_sandbox.url("sms-primary")) as proxy:
        yield proxy


@pytest.fixture(autouse=True)
def _clean(twilio_sandbox: SandboxHandle) -> None:
    twilio_sandbox.control.reset()
    smtp_sessions.close_all()


class UncheckedTwilioAdapter(TwilioAdapter):
    """The Twilio adapter without Beacon's own settings check, as a row written behind the
    admin's back would reach the vendor: here Prism is the one to refuse it."""

    @classmethod
    def validate_config(cls, settings: Any, secrets: Any) -> dict[str, str]:
        return {}


def twilio(url: str, cls: type[TwilioAdapter] = TwilioAdapter, **settings: str) -> TwilioAdapter:
    config = {"base_url": url, "account_sid": ACCOUNT_SID, "from_number": "+15005550006", **settings}
    return cls(settings=config, secrets={"auth_token": DEFAULT_AUTH_TOKEN}, timeout=10.0)


def sms(to: str = "+14155550123", text: str = "Your order shipped ✓") -> OutboundMessage:
    return OutboundMessage(channel="sms", to=to, subject="", text=text, html="", idempotency_key=uuid.uuid4().hex,
                           request_id="req-prism")


def refused(adapter: VendorAdapter, message: OutboundMessage) -> VendorError:
    with pytest.raises(VendorError) as caught:
        adapter.send(message)
    return caught.value


# Twilio, through Prism


@pytest.mark.parametrize(
    "vendor_settings",
    [
        {},
        {"messaging_service_sid": SERVICE_SID},
        {"status_callback": "https://shop.example/twilio/status?store=7"},
    ],
)
def test_prism_finds_the_twilio_adapters_requests_and_the_sandboxs_answers_valid(
    prism: PrismProxy, twilio_sandbox: SandboxHandle, vendor_settings: dict[str, str]
) -> None:
    result = twilio(prism.url, **vendor_settings).send(sms())

    [stored] = twilio_sandbox.control.messages("sms-primary")
    assert result.status_code == 201 and result.message_id == stored["sid"]
    assert stored["body"] == "Your order shipped ✓"
    assert stored["request_id"] == "req-prism"  # HTTP vendors do get the request id


@pytest.mark.parametrize(
    ("vendor_settings", "field"),
    [
        ({"messaging_service_sid": "MG123"}, "MessagingServiceSid"),
        ({"account_sid": "AC123"}, "accountsid"),
        ({"status_callback": "/twilio/status"}, "StatusCallback"),
    ],
)
def test_what_prism_refuses_in_a_vendor_setting_is_the_vendors_fault(
    prism: PrismProxy, twilio_sandbox: SandboxHandle, vendor_settings: dict[str, str], field: str
) -> None:
    error = refused(twilio(prism.url, UncheckedTwilioAdapter, **vendor_settings), sms())

    assert error.status_code == 422
    assert (error.permanent, error.misconfigured) == (False, True)  # fail over; the breaker counts it
    assert field in str(error) and "configuration fault" in str(error)
    assert twilio_sandbox.control.messages("sms-primary") == []


def test_beacons_own_check_stops_those_settings_before_any_request(prism: PrismProxy) -> None:
    error = refused(twilio(prism.url, messaging_service_sid="MG123"), sms())

    assert error.misconfigured and error.status_code is None and "messaging_service_sid" in str(error)


def test_a_recipient_twilio_refuses_through_prism_fails_the_message(prism: PrismProxy) -> None:
    error = refused(twilio(prism.url), sms(to="+15005550004"))

    assert (error.permanent, error.vendor_code) == (True, "21610")


# SMTP, against nodemailer's smtp-server


@pytest.fixture(scope="module")
def certificate() -> Iterator[CertificateFiles]:
    files = certificate_generate("trusted")
    yield files
    files.remove()


@pytest.fixture(scope="module")
def node_relay(certificate: CertificateFiles) -> Iterator[NodeSmtpServer]:
    require_vendor_servers()
    with NodeSmtpServer(cert=str(certificate.cert_file), key=str(certificate.key_file), user=USER,
                        password=PASSWORD) as server:
        yield server


@pytest.fixture
def trusting(certificate: CertificateFiles, settings: Any) -> None:
    settings.SMTP_CA_BUNDLE = str(certificate.ca_file)


def smtp(port: int, *, use_tls: bool = True, login: bool = True) -> VendorAdapter:
    config = {"host": "127.0.0.1", "port": port, "use_tls": use_tls, "from_email": SENDER}
    secrets = {"username": USER, "password": PASSWORD} if login else {}
    return build_adapter("smtp", settings=config, secrets=secrets, timeout=5.0)


def mail(text: str, key: str | None = None) -> OutboundMessage:
    return OutboundMessage(channel="email", to="ana@example.com", subject="Pedido enviado", text=text,
                           html=f"<p>{text}</p>", idempotency_key=key or uuid.uuid4().hex, request_id="req-smtp")


def parsed(record: dict[str, Any]) -> email.message.EmailMessage:
    return email.message_from_bytes(base64.b64decode(record["raw"]), policy=email.policy.default)


def test_node_relay_takes_mail_over_starttls_with_auth(node_relay: NodeSmtpServer, trusting: None) -> None:
    before = len(node_relay.messages())

    result = smtp(node_relay.port).send(mail("Seu pedido está a caminho ✓", key="order-5-email"))

    record = node_relay.messages(wait_for=before + 1)[-1]
    assert (record["secure"], record["user"], record["ehlo"]) == (True, USER, "shop.example")
    assert record["mail_args"].get("BODY") == "8BITMIME"
    message = parsed(record)
    assert message["Message-ID"] == result.message_id == "<order-5-email@shop.example>"
    assert "X-Request-ID" not in message
    assert message.get_body(("plain",)).get_content().strip() == "Seu pedido está a caminho ✓"


def test_node_relay_without_8bitmime_gets_a_7bit_message(certificate: CertificateFiles, trusting: None) -> None:
    require_vendor_servers()
    with NodeSmtpServer(cert=str(certificate.cert_file), key=str(certificate.key_file), user=USER,
                        password=PASSWORD, hide8BITMIME=True) as relay:
        smtp(relay.port).send(mail("Seu pedido está a caminho ✓"))
        [record] = relay.messages(wait_for=1)

    raw = base64.b64decode(record["raw"])
    assert raw.isascii() and "BODY" not in record["mail_args"]
    assert parsed(record).get_body(("plain",)).get_content().strip() == "Seu pedido está a caminho ✓"


def test_auth_without_starttls_is_reported_as_the_servers_538(node_relay: NodeSmtpServer) -> None:
    error = refused(smtp(node_relay.port, use_tls=False), mail("hi"))

    assert (error.permanent, error.misconfigured, error.status_code) == (False, True, 538)
    assert "the server said 538" in str(error) and "enable use_tls" in str(error)


def test_mail_without_auth_is_reported_as_the_servers_530(node_relay: NodeSmtpServer, trusting: None) -> None:
    error = refused(smtp(node_relay.port, login=False), mail("hi"))

    assert (error.permanent, error.misconfigured, error.status_code) == (False, True, 530)
    assert "the server said 530" in str(error) and "sender refused" not in str(error)


def test_a_wrong_password_is_reported_as_the_servers_535(node_relay: NodeSmtpServer, trusting: None) -> None:
    adapter = build_adapter(
        "smtp", settings={"host": "127.0.0.1", "port": node_relay.port, "use_tls": True, "from_email": SENDER},
        secrets={"username": USER, "password": "wrong-one"}, timeout=5.0,
    )

    error = refused(adapter, mail("hi"))

    assert (error.misconfigured, error.status_code) == (True, 535)
    assert "username/password rejected" in str(error) and "wrong-one" not in str(error)


def test_node_relays_certificate_untrusted_is_a_transient_tls_failure(node_relay: NodeSmtpServer) -> None:
    error = refused(smtp(node_relay.port), mail("hi"))  # SMTP_CA_BUNDLE unset: the system's CAs

    assert (error.permanent, error.misconfigured, error.outcome_unknown) == (False, False, False)
    assert "TLS failure" in str(error)
