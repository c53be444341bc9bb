"""Unknown outcomes: every possible duplicate is flagged, and Twilio is asked before sending again.

The sandbox dedupes nothing (as Twilio and SMTP relays), so its inboxes hold every copy a
recipient would get.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from notifications.models import AttemptOutcome, DeliveryAttempt, Notification, Vendor
from notifications.routing import route_for
from notifications.selectors import notifications_for_subject
from notifications.tests.factories import make_trigger
from notifications.tests.helpers import dispatch, run_until_settled
from notifications.vendors.base import OutboundMessage, VendorError
from sandbox.testing import SandboxHandle

# Above the test vendors' 1 s timeout: the vendor stores the message, the client's read timeout fires.
ANSWER_LOST_MS = 1500


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def attempts(notification: Notification) -> list[tuple[str, str]]:
    rows = DeliveryAttempt.objects.filter(notification=notification).order_by("started_at", "id")
    return list(rows.values_list("vendor__name", "outcome"))


def sms_message(to: str = "+447911123456", text: str = "Your order AB12 is confirmed") -> OutboundMessage:
    return OutboundMessage(channel="sms", to=to, subject="", text=text, html="", idempotency_key="beacon-test")


def test_a_lost_sms_answer_is_found_at_twilio_and_the_sms_is_not_sent_again(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    sandbox.control.set_faults("sms-primary", answer_delay_ms=ANSWER_LOST_MS)
    found_before = metric("beacon_reconciliations_total", vendor="sms-primary", result="found")

    final = run_until_settled(dispatch(make_trigger())["sms"].pk)

    held = sandbox.control.messages("sms-primary")
    assert len(held) == 1 and sandbox.control.messages("sms-fallback") == []
    assert (final.status, final.vendor.name, final.vendor_message_id) == ("sent", "sms-primary", held[0]["sid"])
    assert final.possible_duplicate is False
    assert attempts(final) == [("sms-primary", AttemptOutcome.SENT)]
    assert "message list shows it accepted" in DeliveryAttempt.objects.get(notification=final).error
    assert metric("beacon_reconciliations_total", vendor="sms-primary", result="found") == found_before + 1


def test_an_earlier_rounds_unknown_outcome_is_looked_up_before_the_next_round_sends(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    # State an earlier round left: its call to sms-primary timed out, and Twilio holds the SMS.
    notification = dispatch(make_trigger())["sms"]
    Notification.objects.filter(pk=notification.pk).update(status="retrying", attempt_count=1)
    notification.refresh_from_db()
    route = route_for(vendors["sms-primary"])
    DeliveryAttempt.objects.create(notification=notification, vendor=vendors["sms-primary"],
                                   started_at=timezone.now(), outcome=AttemptOutcome.TIMEOUT, duration_ms=1000)
    held = route.adapter.send(sms_message(to=notification.recipient, text=notification.rendered_text))

    final = run_until_settled(notification.pk)

    assert len(sandbox.control.messages("sms-primary")) == 1 and sandbox.control.messages("sms-fallback") == []
    assert (final.status, final.vendor_message_id, final.possible_duplicate) == ("sent", held.message_id, False)
    assert attempts(final) == [("sms-primary", AttemptOutcome.SENT)]


def test_an_sms_the_lookup_cannot_find_is_sent_again_and_flagged(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    # The vendor never stored it (hang: the connection is dropped unanswered), so Twilio's list
    # is empty; the resend is right, but Beacon cannot know the first try did not land later.
    Vendor.objects.filter(name="sms-fallback").update(enabled=False, updated_at=timezone.now())
    sandbox.control.set_faults("sms-primary", hang=True)
    notification = dispatch(make_trigger())["sms"]
    assert run_until_settled(notification.pk, max_runs=1).status == "retrying"
    sandbox.control.clear_faults("sms-primary")
    flagged_before = metric("beacon_possible_duplicates_total", channel="sms", vendor="sms-primary")

    final = run_until_settled(notification.pk)

    assert len(sandbox.control.messages("sms-primary")) == 1
    assert (final.status, final.vendor.name, final.possible_duplicate) == ("sent", "sms-primary", True)
    assert attempts(final) == [("sms-primary", AttemptOutcome.TIMEOUT), ("sms-primary", AttemptOutcome.SENT)]
    assert metric("beacon_possible_duplicates_total", channel="sms", vendor="sms-primary") == flagged_before + 1


def test_a_lost_email_answer_fails_over_and_both_copies_are_known(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    # SMTP relays cannot be asked: the fallback delivers, and the flag says the primary may have too.
    sandbox.control.set_faults("smtp-primary", answer_delay_ms=ANSWER_LOST_MS)

    final = run_until_settled(dispatch(make_trigger())["email"].pk)

    assert len(sandbox.control.messages("smtp-primary")) == len(sandbox.control.messages("smtp-fallback")) == 1
    assert (final.status, final.vendor.name, final.possible_duplicate) == ("sent", "smtp-fallback", True)
    assert attempts(final) == [("smtp-primary", AttemptOutcome.TIMEOUT), ("smtp-fallback", AttemptOutcome.SENT)]


def test_an_unknown_outcome_in_an_earlier_round_at_the_same_vendor_flags_the_delivery(
    vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    # The case: one vendor slow once, two messages reached it, the delivery was not flagged.
    Vendor.objects.filter(name="smtp-fallback").update(enabled=False, updated_at=timezone.now())
    sandbox.control.set_faults("smtp-primary", answer_delay_ms=ANSWER_LOST_MS)
    notification = dispatch(make_trigger())["email"]
    assert run_until_settled(notification.pk, max_runs=1).status == "retrying"
    sandbox.control.wait_for_messages("smtp-primary", 1, timeout=5)
    sandbox.control.clear_faults("smtp-primary")

    final = run_until_settled(notification.pk)

    assert len(sandbox.control.messages("smtp-primary")) == 2
    assert (final.status, final.possible_duplicate) == ("sent", True)


def test_a_delivery_with_no_unknown_outcome_is_not_flagged(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("sms-primary", outage=True)  # refused: definitely not accepted

    final = run_until_settled(dispatch(make_trigger())["sms"].pk)

    assert (final.vendor.name, final.possible_duplicate) == ("sms-fallback", False)


def test_the_order_api_shows_the_flag(vendors: dict, templates: None, sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("smtp-primary", answer_delay_ms=ANSWER_LOST_MS)
    trigger = make_trigger()
    run_until_settled(dispatch(trigger)["email"].pk)

    shown = {n["channel"]: n["possible_duplicate"] for n in notifications_for_subject(subject_ref=trigger.subject_ref)}

    assert shown["email"] is True


# -- the Twilio adapter's lookup, against the sandbox's Twilio list ---------------------------


def test_the_twilio_lookup_matches_recipient_body_and_time(vendors: dict, sandbox: SandboxHandle) -> None:
    adapter = route_for(vendors["sms-primary"]).adapter
    since = timezone.now()
    adapter.send(sms_message())
    adapter.send(sms_message(text="another message"))
    adapter.send(sms_message(to="+447911000001"))

    found = adapter.accepted_lookup(sms_message(), since=since)

    assert found == [m["sid"] for m in sandbox.control.messages("sms-primary") if m["body"] == sms_message().text
                     and m["to"] == sms_message().to]
    assert adapter.accepted_lookup(sms_message(), since=since + timedelta(minutes=10)) == []


def test_the_twilio_lookup_follows_page_tokens(vendors: dict, sandbox: SandboxHandle, monkeypatch) -> None:
    from notifications.vendors import twilio

    monkeypatch.setattr(twilio, "LOOKUP_PAGE_SIZE", 2)
    adapter = route_for(vendors["sms-primary"]).adapter
    since = timezone.now()
    for _ in range(5):
        adapter.send(sms_message())

    assert len(adapter.accepted_lookup(sms_message(), since=since)) == 5


def test_the_twilio_lookup_raises_when_twilio_does_not_answer(vendors: dict, sandbox: SandboxHandle) -> None:
    sandbox.control.set_faults("sms-primary", outage=True)
    adapter = route_for(vendors["sms-primary"]).adapter

    started = time.monotonic()
    with pytest.raises(VendorError):
        adapter.accepted_lookup(sms_message(), since=timezone.now())
    assert time.monotonic() - started < 2


def test_smtp_cannot_be_asked(vendors: dict) -> None:
    message = OutboundMessage(channel="email", to="a@example.com", subject="s", text="t", html="", idempotency_key="k")

    assert route_for(vendors["smtp-primary"]).adapter.accepted_lookup(message, since=timezone.now()) is None


def test_the_admin_lists_and_filters_possible_duplicates(
    admin_client, vendors: dict, templates: None, sandbox: SandboxHandle
) -> None:
    from django.urls import reverse

    sandbox.control.set_faults("smtp-primary", answer_delay_ms=ANSWER_LOST_MS)
    flagged = run_until_settled(dispatch(make_trigger())["email"].pk)
    sandbox.control.clear_faults("smtp-primary")
    clean = run_until_settled(dispatch(make_trigger())["email"].pk)
    changelist = reverse("admin:notifications_notification_changelist")

    filtered = admin_client.get(changelist + "?possible_duplicate__exact=1").content.decode()
    detail = admin_client.get(reverse("admin:notifications_notification_change", args=[flagged.pk])).content.decode()

    assert f"/{flagged.pk}/change/" in filtered and f"/{clean.pk}/change/" not in filtered
    assert "Possible duplicate" in filtered  # the list's column
    assert "field-possible_duplicate" in detail


def test_a_relay_that_dedupes_by_message_id_is_trusted_to_keep_one_copy(
    vendors: dict, templates: None
) -> None:
    # `supports_idempotency()`: an operator states the relay dedupes (`dedupes_by_message_id`), and
    # it does (a sandbox instance configured to): a resend to it after an unknown outcome is not flagged.
    from sandbox.server import InstanceConfig
    from sandbox.testing import start_sandbox

    with start_sandbox(instances=(InstanceConfig("smtp-dedupe", "smtp", dedupe=True),)) as deduping:
        primary = vendors["smtp-primary"]
        primary.settings = {**primary.settings, "port": deduping.port("smtp-dedupe"), "dedupes_by_message_id": True}
        primary.save()
        Vendor.objects.filter(name="smtp-fallback").update(enabled=False, updated_at=timezone.now())
        deduping.control.set_faults("smtp-dedupe", answer_delay_ms=ANSWER_LOST_MS)
        notification = dispatch(make_trigger())["email"]
        assert run_until_settled(notification.pk, max_runs=1).status == "retrying"
        deduping.control.clear_faults("smtp-dedupe")

        final = run_until_settled(notification.pk)

        assert len(deduping.control.messages("smtp-dedupe")) == 1
        assert deduping.control.instance("smtp-dedupe")["counters"]["duplicates_suppressed"] == 1
        assert (final.status, final.possible_duplicate) == ("sent", False)


def test_the_lookup_keeps_to_the_egress_policy(vendors: dict, sandbox: SandboxHandle, settings) -> None:
    settings.VENDOR_EGRESS_ALLOWED_NETWORKS = []  # loopback (the sandbox) no longer allowed
    adapter = route_for(vendors["sms-primary"]).adapter
    before = sandbox.control.instance("sms-primary")["counters"]["requests"]

    with pytest.raises(VendorError, match="egress policy refused"):
        adapter.accepted_lookup(sms_message(), since=timezone.now())
    assert sandbox.control.instance("sms-primary")["counters"]["requests"] == before
