"""Fixtures of the delivery engine for every app's tests (a pytest plugin named by the root
conftest.py's `pytest_plugins`): the demo vendors on the sandbox, the demo templates, and real
Celery workers on the test database and broker.

Not a test module and never imported by one: pytest loads it, tests ask for its fixtures by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.processes import ManagedProcess, broker_purge, celery_worker, stack_env, wait_until
from harness.testdb import current_database_url
from notifications.demo import demo_templates_install, demo_vendors_install
from notifications.models import Vendor
from notifications.routing import vendor_circuit
from sandbox.testing import SandboxHandle


@pytest.fixture
def vendors(db, sandbox: SandboxHandle) -> dict[str, Vendor]:
    """Two email and two SMS vendors on the sandbox, with small timeouts and breakers.

    Each test gets fresh vendor rows, hence fresh breaker keys in Redis (`vendor:<id>` with
    ids never reused in one test database) — plus a reset, for ids reused across runs.
    """
    ports = {name: sandbox.port(name) for name in ("smtp-primary", "smtp-fallback", "sms-primary", "sms-fallback")}
    installed = demo_vendors_install(host="127.0.0.1", ports=ports, timeout=1.0)
    Vendor.objects.update(
        breaker_window_size=10, breaker_minimum_calls=4, breaker_failure_rate=50, breaker_open_seconds=0.5,
        breaker_half_open_trials=2, breaker_slow_call_seconds=5,
    )
    by_name = {vendor.name: Vendor.objects.get(pk=vendor.pk) for vendor in installed}
    for vendor in by_name.values():
        vendor_circuit(vendor).reset()
    return by_name


@pytest.fixture
def templates(db) -> None:
    demo_templates_install()


@pytest.fixture
def worker_env(settings, vendors: dict, templates: None) -> dict[str, str]:
    """The environment of a worker process on this test's database, Redis, broker and cache namespace."""
    return stack_env(
        database_url=current_database_url(),
        redis_url=settings.REDIS_URL,
        broker_url=settings.CELERY_BROKER_URL,
        CACHE_KEY_PREFIX=settings.CACHES["default"]["KEY_PREFIX"],
        SECRET_KEY=settings.SECRET_KEY,  # vendor secrets are encrypted with a key derived from it
        NOTIFICATION_LEASE_MARGIN="1",
    )


@pytest.fixture
def start_worker(worker_env: dict[str, str], settings, tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """Starts real Celery workers (`start(**options)`, once ready) on an emptied broker; stops them after the test."""
    broker_purge(settings.CELERY_BROKER_URL)
    started: list[ManagedProcess] = []

    def start(**options: object) -> ManagedProcess:
        worker = celery_worker(worker_env, log_dir=tmp_path, **options).start()
        started.append(worker)
        wait_until(lambda: "ready." in worker.log_path.read_text(), timeout=30, what=f"worker ({worker.log_path})")
        return worker

    yield start
    for worker in started:
        worker.stop()
