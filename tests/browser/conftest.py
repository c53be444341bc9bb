"""Fixtures of the browser tests: headless Debian Chromium, the sandbox vendors, a real Celery
worker on the test database, and the admin users.

The worker is a subprocess (`celery -A config worker`, started by harness/stack.py) pointed at the
test database and the broker the tests publish to, so a send the admin queues is delivered for
real. Its log is kept at artifacts/browser-worker.log.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import override_settings

from harness.database import current_database_url
from harness.processes import ManagedProcess, broker_purge
from harness.stack import Stack, StackOptions
from notifications import publisher
from notifications.demo import demo_templates_install, demo_vendors_install
from notifications.models import Vendor
from notifications.overview import CELERY_QUEUES
from notifications.routing import vendor_circuit
from sandbox.testing import SandboxHandle
from tests.browser.helpers import ADMIN_PASSWORD, ARTIFACTS, CHROMIUM, SCREENSHOTS

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Seconds the worker gets to say "ready".
WORKER_START_TIMEOUT = 60
# The browser session's private broker: REDIS_URL's database plus this (the other suites use + 2).
BROWSER_BROKER_DB_OFFSET = 3


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread from here on; the ORM
    # calls of the tests themselves (setup, polling, flushes) are still plain synchronous code,
    # so Django's async-safety guard is lifted while the browser runs, and restored after.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server) -> Iterator[object]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def _private_broker_url() -> str:
    """The browser session's own broker database (REDIS_URL's db + BROWSER_BROKER_DB_OFFSET).

    Other suites' workers listen on the shared test broker (db + 2); a task of ours taken by
    one of them is looked up in their database, found missing and dropped, so a browser run
    beside another test run would hang. BROWSER_TEST_BROKER_URL overrides it.
    """
    base, _, db = settings.REDIS_URL.rpartition("/")
    default = f"{base}/{int(db) + BROWSER_BROKER_DB_OFFSET}" if db.isdigit() else settings.CELERY_BROKER_URL
    return os.environ.get("BROWSER_TEST_BROKER_URL", default)


@contextmanager
def _publishing_to(broker_url: str) -> Iterator[None]:
    """Point this process's Celery app (what the live server enqueues with) at `broker_url`."""
    from config.celery import app

    previous, previous_env = app.conf.broker_url, os.environ.get("CELERY_BROKER_URL")
    overridden = override_settings(CELERY_BROKER_URL=broker_url)
    overridden.enable()

    def repoint(url: str) -> None:
        # Celery reads the CELERY_BROKER_URL environment variable before its own setting.
        os.environ["CELERY_BROKER_URL"] = url
        app.conf.broker_url = url
        # Drop the pools built for the old URL; the next publish builds them for the new one.
        app._pool = None
        app.amqp._producer_pool = None
        # The bounded publisher (the checkout's hand-off) builds its own app from the settings once.
        publisher._publisher_app.cache_clear()

    repoint(broker_url)
    try:
        yield
    finally:
        repoint(previous)
        if previous_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = previous_env
        overridden.disable()


@pytest.fixture(scope="package")
def browser_worker(django_db_setup) -> Iterator[ManagedProcess]:
    """A real worker on every queue, on the test database, listening on the browser session's
    private broker; stopped after the browser tests. Tests use `celery_worker`.

    Not kept for the session: its trigger listener hears every trigger committed in the test
    database, and would claim, and publish to its private broker, the triggers that a later
    test's own worker waits for."""
    broker_url = _private_broker_url()
    broker_purge(broker_url, CELERY_QUEUES)  # nothing left over from an earlier run
    ARTIFACTS.mkdir(exist_ok=True)
    stack = Stack(StackOptions(
        log_dir=ARTIFACTS,
        database_url=current_database_url(),
        redis_url=settings.REDIS_URL,
        broker_url=broker_url,
        settings={
            "SECRET_KEY": settings.SECRET_KEY,  # vendor secrets are encrypted with a key derived from it
            "CACHE_KEY_PREFIX": f"beacon-browser-{uuid.uuid4().hex[:8]}",
            "NOTIFICATION_RETRY_BASE_DELAY": "0.5",
        },
        sandbox=False,  # the session's own (the `sandbox` fixture), which `vendors` points at
        worker_concurrency=4,
    ))
    try:
        worker = stack.worker_start("browser-worker", log_path=ARTIFACTS / "browser-worker.log")
        stack.worker_wait_ready("browser-worker", timeout=WORKER_START_TIMEOUT)
        yield worker
    finally:
        stack.stop()


@pytest.fixture
def celery_worker(browser_worker: ManagedProcess) -> Iterator[ManagedProcess]:
    """The session's worker, with this process publishing to its broker for this test only: the
    suites that run after the browser tests publish to their own broker again."""
    with _publishing_to(_private_broker_url()):
        yield browser_worker


@pytest.fixture
def admin_user(transactional_db) -> User:
    return User.objects.create_superuser("admin", "admin@beacon.example", ADMIN_PASSWORD)


@pytest.fixture
def support_user(transactional_db) -> User:
    # The tables are flushed between browser tests, so the migration's group is installed again.
    migration = importlib.import_module("notifications.migrations.0002_support_group")
    migration.support_group_install(django_apps, None)
    user = User.objects.create_user("sam", "sam@beacon.example", ADMIN_PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=migration.SUPPORT_GROUP))
    return user


@pytest.fixture
def vendors(transactional_db, sandbox: SandboxHandle) -> dict[str, Vendor]:
    ports = {name: sandbox.port(name) for name in ("smtp-primary", "smtp-fallback", "sms-primary", "sms-fallback")}
    installed = {vendor.name: vendor for vendor in demo_vendors_install(host="127.0.0.1", ports=ports, timeout=2.0)}
    for vendor in installed.values():
        vendor_circuit(vendor).reset()  # ids repeat across test databases; breaker keys live on in Redis
    yield installed
    for vendor in installed.values():
        vendor_circuit(vendor).reset()


@pytest.fixture
def templates(transactional_db) -> None:
    demo_templates_install()


@pytest.fixture
def screenshot(page) -> Callable[[str], Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    return take
