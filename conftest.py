"""Fixtures shared by every app's tests: real PostgreSQL, real Redis, real sandbox servers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from checkout.api_keys import api_client_cache_clear, api_client_create
from checkout.models import ApiClient
from notifications.routing import vendors_forget
from notifications.vendors.smtp import smtp_sessions
from sandbox.testing import SandboxHandle, start_sandbox

# Fixture modules that tests in several folders use (a conftest's fixtures reach only its own
# folder). Tests never import them, nor each other (tests/test_test_modules_stand_alone.py).
pytest_plugins = ["notifications.tests.fixtures", "config.tests.sentry_sink"]


@pytest.fixture(scope="session", autouse=True)
def _static_files_without_collectstatic() -> Iterator[None]:
    """Plain static storage in the suite, as Django's docs advise: the manifest storage needs
    `collectstatic` first (tests/browser/test_gunicorn_static.py runs the real one)."""
    plain = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    with override_settings(STORAGES={**settings.STORAGES, "staticfiles": plain}):
        yield


@pytest.fixture(autouse=True)
def _isolated_cache(settings) -> Iterator[None]:
    """Each test gets its own cache namespace in the real Redis, so tests never see each
    other's cached templates or throttle counters (and a dev stack's keys are untouched)."""
    # Django's setting_changed handler rebuilds the cache handlers from the new settings.
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"beacon-test-{uuid.uuid4().hex[:12]}"},
    }
    vendors_forget()  # this process's vendor lists: each test sees its own vendor rows
    api_client_cache_clear()  # and the API clients it read (rolled back with the last test)
    smtp_sessions.close_all()  # and opens its own SMTP sessions
    yield
    cache.close()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxHandle]:
    """The fake vendors (real SMTP and Twilio-compatible HTTP servers) on free loopback ports."""
    with start_sandbox() as handle:
        yield handle


@pytest.fixture
def sandbox(sandbox_server: SandboxHandle) -> SandboxHandle:
    """The sandbox with empty inboxes and no faults."""
    sandbox_server.control.reset()
    return sandbox_server


@pytest.fixture
def api_client_with_key(db) -> tuple[ApiClient, str]:
    return api_client_create(name=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def api(api_client_with_key: tuple[ApiClient, str]) -> APIClient:
    """A DRF test client that sends a valid API key."""
    _, key = api_client_with_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client
