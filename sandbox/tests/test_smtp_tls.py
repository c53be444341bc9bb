"""The sandbox's SMTP with STARTTLS, driven with the standard library's smtplib: a generated
certificate (trusted through its CA file, or self-signed), AUTH only after STARTTLS, 8BITMIME
and SMTPUTF8 advertised, and what each stored message records."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator

import pytest

from sandbox.server import InstanceConfig
from sandbox.testing import SandboxHandle, start_sandbox
from sandbox.tests.helpers import receipt

USER, PASSWORD = "beacon", "tls-pass-91"


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


def connect(relays: SandboxHandle, name: str) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", relays.port(name), local_hostname="shop.example", timeout=5)
    client.ehlo()
    return client


def trusting(relays: SandboxHandle, name: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=relays.instances[name]["tls"]["ca_file"])


def test_before_starttls_auth_is_not_offered_and_mail_is_refused(relays: SandboxHandle) -> None:
    with connect(relays, "smtp-trusted") as client:
        assert client.has_extn("starttls") and not client.has_extn("auth")
        assert client.has_extn("8bitmime") and client.has_extn("smtputf8")
        code, text = client.mail("no-reply@shop.example")

    assert code == 530 and b"STARTTLS" in text
    assert relays.control.messages("smtp-trusted") == []


def test_after_starttls_on_the_trusted_certificate_auth_is_offered_and_mail_goes_through(relays: SandboxHandle) -> None:
    with connect(relays, "smtp-trusted") as client:
        client.starttls(context=trusting(relays, "smtp-trusted"))
        client.ehlo()
        assert client.has_extn("auth") and not client.has_extn("starttls")
        client.login(USER, PASSWORD)
        client.send_message(receipt(), mail_options=["BODY=8BITMIME"])

    [stored] = relays.control.messages("smtp-trusted")
    assert stored["tls"] is True
    assert stored["ehlo"] == "shop.example"
    assert "BODY=8BITMIME" in stored["mail_options"]


def test_a_wrong_password_over_tls_is_refused_with_535(relays: SandboxHandle) -> None:
    with connect(relays, "smtp-trusted") as client:
        client.starttls(context=trusting(relays, "smtp-trusted"))
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            client.login(USER, "wrong")

    assert caught.value.smtp_code == 535


def test_the_untrusted_certificate_fails_verification(relays: SandboxHandle) -> None:
    assert relays.instances["smtp-untrusted"]["tls"] == {"mode": "untrusted", "ca_file": None}
    with connect(relays, "smtp-untrusted") as client, pytest.raises(ssl.SSLCertVerificationError):
        client.starttls(context=ssl.create_default_context())

    assert relays.control.messages("smtp-untrusted") == []


def test_the_trusted_ca_does_not_vouch_for_the_untrusted_relay(relays: SandboxHandle) -> None:
    with connect(relays, "smtp-untrusted") as client, pytest.raises(ssl.SSLCertVerificationError):
        client.starttls(context=trusting(relays, "smtp-trusted"))


def test_a_relay_without_tls_offers_no_starttls_but_8bitmime(relays: SandboxHandle) -> None:
    with connect(relays, "smtp-plain") as client:
        assert not client.has_extn("starttls")
        assert client.has_extn("8bitmime") and client.has_extn("smtputf8")
        client.send_message(receipt())

    [stored] = relays.control.messages("smtp-plain")
    assert stored["tls"] is False and "BODY=8BITMIME" not in stored["mail_options"]


def test_the_control_api_names_the_ca_file(relays: SandboxHandle) -> None:
    described = relays.control.instance("smtp-trusted")

    assert described["tls"]["mode"] == "trusted"
    with open(described["tls"]["ca_file"], encoding="ascii") as ca:
        assert ca.read().startswith("-----BEGIN CERTIFICATE-----")
