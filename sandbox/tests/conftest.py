"""Fixtures for the sandbox's own tests: one in-process sandbox per module, reset between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from sandbox.testing import SandboxHandle, start_sandbox
from sandbox.twilio_api import DEFAULT_AUTH_TOKEN

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
SENDER = "+15005550006"
RECIPIENT = "+14155550123"
# Client-side timeout of the twilio client in these tests: long enough for injected latency,
# short enough that a hang test does not stall the suite.
CLIENT_TIMEOUT_SECONDS = 2.0


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with start_sandbox() as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean_sandbox(sandbox: SandboxHandle) -> Iterator[None]:
    sandbox.control.reset()
    yield
    sandbox.control.reset()


def twilio_client(url: str, *, token: str = DEFAULT_AUTH_TOKEN, timeout: float = CLIENT_TIMEOUT_SECONDS) -> Client:
    """The official twilio client, routed to a sandbox instance instead of api.twilio.com."""
    client = Client(ACCOUNT_SID, token, http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = url
    return client


@pytest.fixture
def sms(sandbox: SandboxHandle) -> Client:
    return twilio_client(sandbox.url("sms-primary"))
