"""Routing a send among the channel's vendors: unreadable secrets, and vendors disabled or
changed (the vendor list's cache, in this process and from another)."""

from __future__ import annotations

import threading
import time

import pytest

from notifications import routing
from notifications.models import AttemptOutcome, DeliveryAttempt, Vendor
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from sandbox.testing import SandboxHandle

pytestmark = pytest.mark.django_db


def test_a_vendor_whose_secrets_cannot_be_read_is_skipped_for_the_fallback(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    Vendor.objects.filter(name="sms-primary").update(secrets_encrypted="not-a-fernet-token")

    final = run_until_settled(dispatch(make_trigger())["sms"].pk)

    assert final.status == "sent"
    assert final.vendor.name == "sms-fallback"
    attempt = DeliveryAttempt.objects.get(notification=final, vendor__name="sms-primary")
    assert attempt.outcome == AttemptOutcome.TRANSIENT_ERROR
    assert "misconfigured" in attempt.error


def test_a_vendor_disabled_in_this_process_is_skipped_by_the_very_next_send(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    run_until_settled(dispatch(make_trigger())["sms"].pk)  # the vendor list is cached now
    primary = Vendor.objects.get(name="sms-primary")
    primary.enabled = False
    primary.save()

    final = run_until_settled(dispatch(make_trigger())["sms"].pk)

    assert final.vendor.name == "sms-fallback"


def test_a_vendor_change_made_by_another_process_arrives_within_the_cache_time(
    vendors: dict, templates: None, sandbox: SandboxHandle, settings
) -> None:
    settings.NOTIFICATION_VENDOR_CACHE_SECONDS = 3600
    run_until_settled(dispatch(make_trigger())["sms"].pk)
    Vendor.objects.filter(name="sms-primary").update(enabled=False)  # no signal here: as from another process

    assert run_until_settled(dispatch(make_trigger())["sms"].pk).vendor.name == "sms-primary"  # still cached
    settings.NOTIFICATION_VENDOR_CACHE_SECONDS = 0
    assert run_until_settled(dispatch(make_trigger())["sms"].pk).vendor.name == "sms-fallback"


def test_when_the_vendor_list_runs_out_one_thread_reads_it_again_and_the_others_keep_theirs(
    monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    """16 threads of a worker find the list out of date at once: one SELECT, not 16."""
    reads = []
    release = threading.Event()
    old, new = [Vendor(name="old")], [Vendor(name="new")]

    def slow_read(channel: str) -> list[Vendor]:
        reads.append(channel)
        release.wait(5)
        return new

    routing._vendors_by_channel["sms"] = (time.monotonic() - 3600, old)
    settings.NOTIFICATION_VENDOR_CACHE_SECONDS = 2
    monkeypatch.setattr(routing, "_channel_vendors_read", slow_read)
    seen: list[list[Vendor]] = []
    reader = threading.Thread(target=lambda: seen.append(routing.channel_vendors(channel="sms")))
    reader.start()
    while not reads:
        time.sleep(0.001)
    others = [routing.channel_vendors(channel="sms") for _ in range(15)]  # while the read is under way
    release.set()
    reader.join(5)

    assert reads == ["sms"]
    assert all(vendors is old for vendors in others)
    assert seen == [new] and routing.channel_vendors(channel="sms") is new
