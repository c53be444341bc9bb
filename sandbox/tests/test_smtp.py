from __future__ import annotations

import smtplib

import pytest

from sandbox.server import InstanceConfig
from sandbox.testing import SandboxHandle, start_sandbox
from sandbox.tests.helpers import receipt


def smtp_to(sandbox: SandboxHandle, name: str = "smtp-primary") -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", sandbox.port(name), timeout=5)


def test_accepted_mail_is_parsed_into_the_inbox(sandbox: SandboxHandle) -> None:
    message = receipt()
    with smtp_to(sandbox) as smtp:
        smtp.send_message(message)

    [stored] = sandbox.control.messages("smtp-primary")
    assert stored["to"] == ["ada@example.com"]
    assert stored["from"] == "noreply@beacon.example"
    assert stored["subject"] == "Your receipt"
    assert stored["message_id"] == stored["id"] == stored["idempotency_key"] == message["Message-ID"]
    assert stored["text"].strip() == stored["body"].strip() == "Thanks for your order."
    assert stored["html"].strip() == "<p>Thanks for your <b>order</b>.</p>"
    assert ["Subject", "Your receipt"] in stored["headers"]
    assert isinstance(stored["received_at"], float)
    assert sandbox.control.messages("smtp-fallback") == []


def test_inbox_can_be_filtered_by_recipient(sandbox: SandboxHandle) -> None:
    with smtp_to(sandbox) as smtp:
        smtp.send_message(receipt("ada@example.com"))
        smtp.send_message(receipt("bob@example.com"))

    assert [m["to"] for m in sandbox.control.messages("smtp-primary", to="BOB@example.com")] == [["bob@example.com"]]


def test_counters_tell_sessions_from_transactions(sandbox: SandboxHandle) -> None:
    with smtp_to(sandbox) as smtp:
        smtp.send_message(receipt("ada@example.com"))
        smtp.send_message(receipt("bob@example.com"))
    with smtp_to(sandbox) as smtp:
        smtp.send_message(receipt("cy@example.com"))

    counters = sandbox.control.instance("smtp-primary")["counters"]
    assert (counters["connections"], counters["requests"], counters["accepted"]) == (2, 3, 3)


def test_recipients_at_bounce_example_are_rejected_permanently_at_rcpt(sandbox: SandboxHandle) -> None:
    with smtp_to(sandbox) as smtp, pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        smtp.send_message(receipt("nobody@bounce.example"))

    code, reply = caught.value.recipients["nobody@bounce.example"]
    assert code == 550
    assert reply.startswith(b"5.1.1")
    assert sandbox.control.messages("smtp-primary") == []


def test_smtp_auth_is_required_when_credentials_are_configured() -> None:
    config = InstanceConfig("smtp-auth", "smtp", smtp_credentials=("beacon", "s3cret"))
    with start_sandbox(instances=(config,)) as sandbox:
        with smtp_to(sandbox, "smtp-auth") as smtp, pytest.raises(smtplib.SMTPSenderRefused) as caught:
            smtp.send_message(receipt())
        assert caught.value.smtp_code == 530

        with smtp_to(sandbox, "smtp-auth") as smtp, pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("beacon", "wrong")

        with smtp_to(sandbox, "smtp-auth") as smtp:
            smtp.login("beacon", "s3cret")
            smtp.send_message(receipt())
        assert len(sandbox.control.messages("smtp-auth")) == 1
