"""Fixtures for the sandbox's own tests: one in-process sandbox per module, reset between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twilio.rest import Client

from sandbox.testing import SandboxHandle, start_sandbox
from sandbox.tests.helpers import twilio_client


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with start_sandbox() as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean_sandbox(sandbox: SandboxHandle) -> Iterator[None]:
    sandbox.control.reset()
    yield
    sandbox.control.reset()


@pytest.fixture
def sms(sandbox: SandboxHandle) -> Client:
    return twilio_client(sandbox.url("sms-primary"))
