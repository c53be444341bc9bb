"""The fault suite counts at the vendors: per channel, delivered once, more than once and flagged,
more than once unflagged; an unflagged duplicate fails its scenario."""

from __future__ import annotations

import pytest

from chaos.run import table
from chaos.scenarios.common import InboxCount, ScenarioResult, record_inbox
from notifications.models import Notification
from notifications.services import trigger_publish

EMAILS = ("once@shop.example", "twice-flagged@shop.example", "twice-unflagged@shop.example")


def inbox(where: dict[str, list[str]], channel: str = "email") -> InboxCount:
    delivered = sum(1 for found in where.values() if found)
    duplicated = sum(1 for found in where.values() if len(found) > 1)
    missing = [a for a, found in where.items() if not found]
    return InboxCount(len(where), delivered, duplicated, where, missing, {a: channel for a in where})


@pytest.fixture
def notifications(db) -> None:
    for address in EMAILS:
        trigger = trigger_publish(event_type="order_confirmed", locale="en", payload={},
                                  recipients={"email": address}, subject_ref="order:x")
        Notification.objects.create(trigger=trigger, event_type="order_confirmed", channel="email", recipient=address,
                                    locale="en", status="sent", possible_duplicate=address.startswith("twice-flagged"))


def test_duplicates_are_counted_per_channel_and_an_unflagged_one_fails(notifications: None) -> None:
    result = ScenarioResult(9, "example")
    where = {
        "once@shop.example": ["smtp-primary"],
        "twice-flagged@shop.example": ["smtp-primary", "smtp-fallback"],
        "twice-unflagged@shop.example": ["smtp-primary", "smtp-primary"],
    }

    record_inbox(result, inbox(where))

    email = result.channels["email"]
    assert (email.expected, email.once, email.more_flagged, email.more_unflagged) == (3, 1, 1, 1)
    assert result.passed is False
    assert "| email | 3 | 1 | 1 | 1 |" in table([result])
    assert "more than once, unflagged" in table([result]).splitlines()[0]


def test_flagged_duplicates_alone_pass(notifications: None) -> None:
    result = ScenarioResult(9, "example")

    record_inbox(result, inbox({"once@shop.example": ["smtp-primary"],
                                "twice-flagged@shop.example": ["smtp-primary", "smtp-fallback"]}))

    assert result.passed is True
    assert (result.expected, result.delivered) == (2, 2)


def test_a_missing_message_fails(notifications: None) -> None:
    result = ScenarioResult(9, "example")

    record_inbox(result, inbox({"once@shop.example": []}))

    assert result.passed is False
    assert result.channels["email"].once == 0
