from __future__ import annotations

import smtplib
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from sandbox.client import SandboxControlError
from sandbox.testing import SandboxHandle
from sandbox.tests.helpers import RECIPIENT, SENDER, post_message, receipt, twilio_client


def send_sms(client: Client, body: str = "hi") -> str:
    return client.messages.create(to=RECIPIENT, from_=SENDER, body=body).sid


def connection_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def send_mail(sandbox: SandboxHandle, message: EmailMessage | None = None, timeout: float = 5) -> None:
    with smtplib.SMTP("127.0.0.1", sandbox.port("smtp-primary"), timeout=timeout) as smtp:
        smtp.send_message(message or receipt())


def test_fault_updates_merge_and_are_reported(sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("sms-primary", latency_ms=5)
    faults = sandbox.control.set_faults("sms-primary", failure_rate=0.25, error_status=503)

    assert (faults["latency_ms"], faults["failure_rate"], faults["error_status"]) == (5, 0.25, 503)
    assert sandbox.control.instance("sms-primary")["faults"] == faults
    assert sandbox.control.instance("sms-fallback")["faults"]["latency_ms"] == 0


def test_outage_refuses_connections_until_restored(sandbox: SandboxHandle, sms: Client) -> None:
    port = sandbox.port("sms-primary")
    send_sms(sms)  # leaves a pooled keep-alive connection that the outage must kill too

    sandbox.control.set_faults("sms-primary", outage=True)
    assert connection_refused(port)
    with pytest.raises(requests.ConnectionError):
        send_sms(sms)
    assert send_sms(twilio_client(sandbox.url("sms-fallback")))

    sandbox.control.set_faults("sms-primary", outage=False)
    assert sandbox.control.instance("sms-primary")["port"] == port
    assert send_sms(sms)
    assert len(sandbox.control.messages("sms-primary")) == 2


def test_smtp_outage_refuses_connections_and_drops_open_sessions(sandbox: SandboxHandle) -> None:
    port = sandbox.port("smtp-primary")
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as open_session:
        sandbox.control.set_faults("smtp-primary", outage=True)

        assert connection_refused(port)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            open_session.send_message(receipt())

    sandbox.control.clear_faults("smtp-primary")
    send_mail(sandbox)
    assert len(sandbox.control.messages("smtp-primary")) == 1


def test_latency_delays_each_answer_without_serialising_requests(sandbox: SandboxHandle, sms: Client) -> None:
    sandbox.control.set_faults("sms-primary", latency_ms=300)

    started = time.monotonic()
    send_sms(sms)
    assert time.monotonic() - started >= 0.3

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda _: send_sms(twilio_client(sandbox.url("sms-primary"))), range(10)))
    assert time.monotonic() - started < 1.5  # ten sequential sleeps would take 3 s


def test_smtp_latency_delays_the_answer_to_data(sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("smtp-primary", latency_ms=300)

    started = time.monotonic()
    send_mail(sandbox)

    assert time.monotonic() - started >= 0.3


def test_failure_rate_is_roughly_honoured(sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("sms-primary", failure_rate=0.5)
    url = sandbox.url("sms-primary")

    statuses = [post_message(url, {"To": RECIPIENT, "From": SENDER, "Body": "x"})[0] for _ in range(200)]

    failures = statuses.count(500)
    assert 60 <= failures <= 140
    assert statuses.count(201) == 200 - failures
    counters = sandbox.control.instance("sms-primary")["counters"]
    assert counters == {
        "requests": 200,
        "connections": 0,
        "accepted": 200 - failures,
        "duplicates_received": 0,
        "duplicates_suppressed": 0,
        "failures_injected": failures,
    }
    assert len(sandbox.control.messages("sms-primary")) == 200 - failures


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500), (503, 20503)])
def test_injected_http_errors_look_like_twilios(sandbox: SandboxHandle, sms: Client, status: int, code: int) -> None:
    sandbox.control.set_faults("sms-primary", failure_rate=1, error_status=status)

    with pytest.raises(TwilioRestException) as caught:
        send_sms(sms)

    assert (caught.value.status, caught.value.code) == (status, code)
    assert sandbox.control.messages("sms-primary") == []


def test_injected_smtp_failures_are_transient_unless_marked_permanent(sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("smtp-primary", failure_rate=1)
    with pytest.raises(smtplib.SMTPDataError) as transient:
        send_mail(sandbox)

    sandbox.control.set_faults("smtp-primary", smtp_permanent=True, error_status=550)
    with pytest.raises(smtplib.SMTPDataError) as permanent:
        send_mail(sandbox)

    assert (transient.value.smtp_code, transient.value.smtp_error[:5]) == (451, b"4.3.0")
    assert (permanent.value.smtp_code, permanent.value.smtp_error[:5]) == (554, b"5.3.0")
    assert sandbox.control.messages("smtp-primary") == []


def test_hang_never_answers_until_faults_are_cleared(sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("sms-primary", hang=True)
    impatient = twilio_client(sandbox.url("sms-primary"), timeout=0.5)

    with pytest.raises(requests.ReadTimeout):
        send_sms(impatient)
    assert sandbox.control.messages("sms-primary") == []

    sandbox.control.clear_faults("sms-primary")
    assert send_sms(impatient)


def test_smtp_hang_withholds_the_greeting_and_replies(sandbox: SandboxHandle) -> None:
    port = sandbox.port("smtp-primary")
    with smtplib.SMTP("127.0.0.1", port, timeout=0.5) as open_session:
        sandbox.control.set_faults("smtp-primary", hang=True)

        # smtplib reports a read timeout while waiting for a reply as a disconnect "timed out".
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            smtplib.SMTP("127.0.0.1", port, timeout=0.5)
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            open_session.send_message(receipt())

    sandbox.control.clear_faults("smtp-primary")
    send_mail(sandbox)
    assert len(sandbox.control.messages("smtp-primary")) == 1


def test_reset_empties_inboxes_zeroes_counters_and_clears_faults(sandbox: SandboxHandle, sms: Client) -> None:
    send_sms(sms)
    send_mail(sandbox)
    sandbox.control.set_faults("sms-primary", outage=True)
    sandbox.control.set_faults("smtp-primary", latency_ms=50, hang=True)

    sandbox.control.reset()

    for instance in sandbox.control.instances():
        assert instance["message_count"] == 0
        assert set(instance["counters"].values()) == {0}
        assert instance["faults"] == {
            "latency_ms": 0,
            "answer_delay_ms": 0,
            "failure_rate": 0,
            "error_status": 500,
            "smtp_permanent": False,
            "outage": False,
            "hang": False,
            # Receipts are not faults until changed: every accepted message is reported delivered.
            "receipt_status": "delivered",
            "receipt_error_code": 0,
            "receipt_delay_ms": 100.0,
            "receipt_duplicates": False,
            "receipt_out_of_order": False,
        }
    assert send_sms(sms)
    send_mail(sandbox, timeout=2)


def test_ending_an_outage_on_a_port_taken_meanwhile_reports_the_instance_still_down(sandbox: SandboxHandle) -> None:
    port = sandbox.port("sms-fallback")
    sandbox.control.set_faults("sms-fallback", outage=True)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()

        with pytest.raises(SandboxControlError) as caught:
            sandbox.control.set_faults("sms-fallback", outage=False)

        assert caught.value.status == 500
        assert sandbox.control.instance("sms-fallback")["faults"]["outage"] is True
    sandbox.control.clear_faults("sms-fallback")
    assert sandbox.control.instance("sms-fallback")["faults"]["outage"] is False
