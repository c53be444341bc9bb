"""Counting what the peer (and Beacon) deliver, at the vendors: once, more than once, never.

The counts come from real sandbox inboxes; the peer's task runs for real (its own Django
project and database, in a subprocess) against the sandbox's SMTP and Twilio API.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from django.db import connection
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from bench.databases import database_recreate_named
from bench.inbox import inbox_tally, sandbox_messages
from bench.stack import database_connect
from harness.processes import ROOT
from sandbox.testing import SandboxHandle, start_sandbox

ACCOUNT_SID = "AC" + "0" * 32


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    with start_sandbox() as handle:
        yield handle


def _email(sandbox: SandboxHandle, to: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "shop@peer.example", to, "Your order"
    message.set_content("Thanks.")
    with smtplib.SMTP("127.0.0.1", sandbox.port("smtp-primary"), timeout=5) as smtp:
        smtp.send_message(message)


def _sms(sandbox: SandboxHandle, to: str, instance: str = "sms-fallback") -> None:
    client = Client(ACCOUNT_SID, "sandbox-token", http_client=TwilioHttpClient(timeout=5))
    client.api.base_url = sandbox.url(instance)
    client.messages.create(to=to, from_="+15005550006", body="Thanks.")


def test_the_tally_counts_each_address_once_twice_or_never() -> None:
    expected = {"a@shop.example": "email", "b@shop.example": "email", "+447900000001": "sms"}
    messages = [{"to": ["a@shop.example"]}, {"to": ["b@shop.example", "other@shop.example"]},
                {"to": ["b@shop.example"]}, {"to": ["b@shop.example"]}, {"to": "+447999999999"}]

    tally = inbox_tally(expected, messages)

    assert tally["email"].as_dict() == {"expected": 2, "once": 1, "more_than_once": 1, "missing": 0, "extra_copies": 2}
    assert tally["sms"].as_dict() == {"expected": 1, "once": 0, "more_than_once": 0, "missing": 1, "extra_copies": 0}


def test_it_counts_the_real_inboxes_of_both_channels_and_their_fallbacks(sandbox: SandboxHandle) -> None:
    _email(sandbox, "once@shop.example")
    _email(sandbox, "twice@shop.example")
    _email(sandbox, "twice@shop.example")
    _sms(sandbox, "+447900000001", "sms-primary")
    _sms(sandbox, "+447900000001", "sms-fallback")  # a failover that sent it twice
    expected = {"once@shop.example": "email", "twice@shop.example": "email", "never@shop.example": "email",
                "+447900000001": "sms"}

    tally = inbox_tally(expected, sandbox_messages(sandbox.control))

    assert (tally["email"].once, tally["email"].more_than_once, tally["email"].missing) == (1, 1, 1)
    assert (tally["sms"].once, tally["sms"].more_than_once, tally["sms"].extra_copies) == (0, 1, 1)


PEER_SENDS = """
import json, os, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from bench.peer.models import Order, OrderLine
from bench.peer.tasks import send_order_notifications
from sandbox.client import SandboxControl

def order(email, phone):
    o = Order.objects.create(customer_name="Ana", customer_email=email, customer_phone=phone, locale="en",
                             currency="EUR", total="15.00")
    OrderLine.objects.create(order=o, sku="MUG", name="Mug", quantity=2, unit_price="7.50")
    return o

states = [send_order_notifications.apply(args=[order("ok@shop.example", "+447900000001").id]).state]
SandboxControl(os.environ["SANDBOX_CONTROL"]).set_faults("sms-primary", failure_rate=1.0, error_status=500)
states.append(send_order_notifications.apply(args=[order("retried@shop.example", "+447900000002").id]).state)
print(json.dumps(states))
"""


@pytest.fixture
def peer_database(db) -> Iterator[str]:
    settings = connection.settings_dict
    server = f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/postgres"
    name = f"{settings['NAME']}_peer"
    url = database_recreate_named(server, name)
    yield url
    with database_connect(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_peer_sends_once_and_resends_the_email_on_each_retry_of_a_failed_sms(
        sandbox: SandboxHandle, peer_database: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "bench.peer.settings", "PEER_SECRET_KEY": "test-" * 10,
           "PEER_DATABASE_URL": peer_database, "PEER_BROKER_URL": "redis://127.0.0.1:1/0",
           "PEER_SMTP_PORT": str(sandbox.port("smtp-primary")), "PEER_TWILIO_URL": sandbox.url("sms-primary"),
           "SANDBOX_CONTROL": sandbox.control_url}

    run = subprocess.run([sys.executable, "-c", PEER_SENDS], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)

    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == ["SUCCESS", "FAILURE"]
    expected = {"ok@shop.example": "email", "+447900000001": "sms", "retried@shop.example": "email",
                "+447900000002": "sms"}
    messages = sandbox_messages(sandbox.control)
    tally = inbox_tally(expected, messages)
    # The first order: one email, one SMS. The second: the SMS never went out, and each of the
    # task's retries (autoretry_for, max_retries=5) sent the email again: six copies.
    assert (tally["email"].once, tally["email"].more_than_once, tally["email"].extra_copies) == (1, 1, 5)
    assert (tally["sms"].once, tally["sms"].missing) == (1, 1)
