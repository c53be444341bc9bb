"""6. Sentry tells vendors nothing and keeps customers out of error reports: an outgoing vendor
request carries no `sentry-trace`/`baggage` header (they named Beacon's release and
transaction), and an exception raised with a rendered message in scope reaches Sentry without
the customer's name. A fresh process with SENTRY_DSN set, against a local stand-in for Sentry."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.tests.sentry_sink import EnvelopeSink, strings_in
from harness.processes import stack_env
from harness.testdb import current_database_url
from tests.security.listeners import Listener

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER = "Ana Souza"

SCRIPT = textwrap.dedent(
    """
    import os, sys, django
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    import sentry_sdk
    from notifications.vendors.base import OutboundMessage
    from notifications.vendors.registry import build_adapter

    adapter = build_adapter("webhook_sms", settings={"url": sys.argv[1]}, secrets={"signing_secret": "s"}, timeout=5)

    def notification_deliver(rendered_text):
        message = OutboundMessage(channel="sms", to="+447911123456", subject="", text=rendered_text, html="",
                                  idempotency_key="k-1")
        adapter.send(message)
        payload = {"customer_name": "Ana Souza", "order_ref": "AB12CD34"}
        raise RuntimeError("template helper failed after the send")

    with sentry_sdk.start_transaction(op="task", name="notifications.tasks.notification_send"):
        try:
            notification_deliver("Olá Ana Souza, your order AB12CD34 is confirmed")
        except RuntimeError:
            sentry_sdk.capture_exception()
    sentry_sdk.flush(10)
    """
)


@pytest.fixture
def report(settings, sentry_sink: EnvelopeSink, listener: Listener) -> Iterator[tuple[EnvelopeSink, Listener]]:
    env = stack_env(
        database_url=current_database_url(), redis_url=settings.REDIS_URL, SECRET_KEY=settings.SECRET_KEY,
        SENTRY_DSN=sentry_sink.dsn, SENTRY_RELEASE="beacon@secret-release-1", SENTRY_TRACES_SAMPLE_RATE="1.0",
    )
    result = subprocess.run([sys.executable, "-c", SCRIPT, listener.url + "/hook"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    yield sentry_sink, listener


@pytest.mark.slow
def test_vendors_receive_no_tracing_headers(report: tuple[EnvelopeSink, Listener]) -> None:
    _, hook = report

    [request] = hook.seen
    names = {name.lower() for name in request}
    assert "x-beacon-signature" in names  # the vendor call did happen
    assert not names & {"sentry-trace", "baggage", "traceparent"}
    assert not any("secret-release-1" in value for value in request.values())


@pytest.mark.slow
def test_error_reports_carry_no_message_text(report: tuple[EnvelopeSink, Listener]) -> None:
    sink, _ = report

    [event] = sink.events()
    texts = list(strings_in(event))
    assert any("template helper failed" in text for text in texts)  # the report did arrive
    assert not [text for text in texts if CUSTOMER in text]
