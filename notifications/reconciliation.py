"""Unknown outcomes: which attempts may have delivered, and asking the vendor before sending again.

An attempt whose outcome is unknown (a read timeout after the request went out, a worker killed
mid-call: `AttemptOutcome.TIMEOUT`) may have delivered the message. Policies, stated once here:

- **Ask before resending.** Before the next vendor call after such an attempt (the next vendor
  in the same run, or the first call of a later run), every vendor that holds one and can be asked
  (`VendorAdapter.accepted_lookup`, Twilio's message list) is asked whether it holds the message.
  If it does, the notification is recorded as sent through that vendor with the vendor's id, and
  nothing is sent again.
- **Flag what cannot be ruled out.** A delivery after any unknown outcome in the notification's
  history (any vendor, any round) is flagged `possible_duplicate`, unless the unknown outcome was
  at the delivering vendor itself and that vendor dedupes by the idempotency key
  (`supports_idempotency`). A lookup that finds nothing does not clear the flag: a slow vendor may
  store the message after it answered the lookup, and Twilio lists a message by DateSent only
  once it has left its queue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from notifications import metrics
from notifications.lifecycle import notification_lease_renew
from notifications.models import AttemptOutcome, DeliveryAttempt, Notification, Vendor
from notifications.routing import Route, route_for
from notifications.vendors.base import OutboundMessage, VendorAdapter, VendorError
from notifications.vendors.registry import adapter_class

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Uncertain:
    """One attempt whose outcome is unknown."""

    attempt_id: int
    vendor_id: int | None
    started_at: datetime
    duration_ms: float | None


@dataclass(frozen=True)
class Found:
    """A vendor holds the message of an attempt whose outcome was unknown."""

    attempt: DeliveryAttempt
    message_id: str
    copies: int


def uncertain_attempts(notification: Notification) -> list[Uncertain]:
    """Every attempt of the notification's history whose outcome is unknown, oldest first."""
    rows = DeliveryAttempt.objects.filter(notification=notification, outcome=AttemptOutcome.TIMEOUT).order_by(
        "started_at", "id"
    )
    return [Uncertain(a.pk, a.vendor_id, a.started_at, a.duration_ms) for a in rows]


def can_look_up(vendor: Vendor) -> bool:
    """Does this vendor's adapter answer `accepted_lookup` (without building the adapter)?"""
    try:
        cls = adapter_class(vendor.adapter)
    except (KeyError, TypeError, ImportError):
        return False
    return cls.accepted_lookup is not VendorAdapter.accepted_lookup


def lookup_before_resend(
    *, notification: Notification, vendors: list[Vendor], uncertain: list[Uncertain], message: OutboundMessage,
    lease: float,
) -> Found | None:
    """Before a run's first vendor call: ask the vendors of earlier unknown outcomes that can be
    asked (and are still among `vendors`). `lease` is what the run's vendor walk needs after it."""
    holding = {item.vendor_id for item in uncertain}
    routes = {}
    for vendor in vendors:
        if vendor.pk in holding and can_look_up(vendor):
            try:
                routes[vendor.pk] = route_for(vendor)
            except Exception:  # misconfigured: it cannot be asked; the send loop reports it
                logger.exception("vendor %s cannot be used", vendor.name)
    if not routes:
        return None
    # Held through the lookups (each bounded by its vendor's timeout) and a full walk of the
    # vendors after them, so no other run takes it over meanwhile; paid only after an unknown outcome.
    notification_lease_renew(notification=notification, seconds=lease + sum(r.vendor.timeout_seconds for r in routes.values()))
    return lookup_then_found(notification=notification, uncertain=uncertain, routes=routes, message=message)


def lookup_then_found(
    *, notification: Notification, uncertain: list[Uncertain], routes: dict[int, Route], message: OutboundMessage
) -> Found | None:
    """Ask each vendor that holds an unknown outcome of this notification and can be asked
    (its route in `routes`, by vendor id) whether it holds the message; the first that does
    answers. None when none does, none can be asked, or none could answer. Read-only at the
    vendors; writes nothing."""
    earliest: dict[int, Uncertain] = {}
    for item in uncertain:
        if item.vendor_id is not None and item.vendor_id in routes:
            earliest.setdefault(item.vendor_id, item)
    for vendor_id, first in earliest.items():
        route = routes[vendor_id]
        try:
            found = route.adapter.accepted_lookup(message, since=first.started_at)
        except VendorError as exc:
            metrics.RECONCILIATIONS.labels(vendor=route.vendor.name, result="no_answer").inc()
            logger.warning("lookup at %s failed: %s", route.vendor.name, exc,
                           extra={"notification_id": notification.pk, "vendor": route.vendor.name})
            continue
        except Exception:  # an adapter bug must not stop the send: the lookup just did not answer
            metrics.RECONCILIATIONS.labels(vendor=route.vendor.name, result="no_answer").inc()
            logger.exception("lookup at %s raised unexpectedly", route.vendor.name,
                             extra={"notification_id": notification.pk, "vendor": route.vendor.name})
            continue
        if found is None:
            continue
        if not found:
            metrics.RECONCILIATIONS.labels(vendor=route.vendor.name, result="not_found").inc()
            continue
        metrics.RECONCILIATIONS.labels(vendor=route.vendor.name, result="found").inc()
        logger.info("lookup at %s found the message an unknown outcome left (%d copies)", route.vendor.name, len(found),
                    extra={"notification_id": notification.pk, "vendor": route.vendor.name})
        # The last of them stands for the attempt: sids are listed newest first.
        attempt = DeliveryAttempt(pk=first.attempt_id, notification=notification, vendor=route.vendor,
                                  started_at=first.started_at, duration_ms=first.duration_ms)
        attempt._state.adding = False
        return Found(attempt=attempt, message_id=found[-1], copies=len(found))
    return None


def duplicate_possible(*, uncertain: list[Uncertain], delivered_by: Route) -> bool:
    """Could the message have reached the recipient before `delivered_by` delivered it?"""
    dedupes = delivered_by.adapter.supports_idempotency()
    return any(not (item.vendor_id == delivered_by.vendor.pk and dedupes) for item in uncertain)
