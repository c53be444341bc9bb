"""Routing a send among the channel's vendors: unreadable secrets, and vendors disabled or
changed (the vendor list's cache, in this process and from another)."""

from __future__ import annotations

import pytest

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
