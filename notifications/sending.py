"""Sending one notification: claim, render once, walk the vendors, record every attempt.

Policies (each stated once, here):
- A claim is a conditional UPDATE with a lease; no row lock is held across a vendor call.
- Transient failure (connection error, 429, 5xx): try the next vendor at once.
- Permanent failure (the recipient or the message: invalid number or address, unsubscribed,
  bounced): `failed` at once. A vendor's own configuration fault (credentials, sender,
  messaging service, callback URL, TLS) is not permanent: it counts against that vendor and
  the next one is tried.
- Unknown outcome (a timeout after the request was sent, or a worker lost mid-call): the
  vendor may have accepted. Policy: keep the attempt as `timeout`; before the next vendor call
  ask the vendors that can be asked whether they hold the message (a message found is recorded
  as sent, never sent again); otherwise fail over at once (delivery first) and flag the
  notification `possible_duplicate` when it is delivered (notifications/reconciliation.py).
- Before failing over, and before any call that could outlast its lease, a run renews its
  lease; if another run took the notification over meanwhile (this one was stuck past its
  lease, e.g. cut off the network), it stops there. Should both runs deliver anyway (one was
  held up mid-call), the one settling second flags the notification `possible_duplicate`, and
  a later run takes a delivery recorded by a run that had lost its claim as the delivery.
- Every vendor failed: retry later (exponential backoff, full jitter with a floor, capped),
  up to NOTIFICATION_MAX_ATTEMPTS rounds or NOTIFICATION_MAX_AGE, then `dead`.
- Every vendor rate-limited: delay until a permit is free; never failed, never dropped, and
  the round does not count against the retry budget.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from foundation.request_context import request_id_get
from notifications import metrics
from notifications.consent import notification_suppressed, suppression_from_vendor_refusal, unsubscribe_headers
from notifications.email_document import email_html_document
from notifications.lifecycle import (
    Accepted,
    SendOutcome,
    lease_seconds,
    notification_claim,
    notification_lease_renew,
    notification_settle_dead,
    notification_settle_failed,
    notification_settle_rate_limited,
    notification_settle_retry,
    notification_settle_sent,
)
from notifications.models import (
    AttemptOutcome,
    Channel,
    DeliveryAttempt,
    Notification,
    NotificationStatus,
    Vendor,
)
from notifications.reconciliation import (
    Found,
    Uncertain,
    can_look_up,
    duplicate_possible,
    lookup_before_resend,
    lookup_then_found,
    uncertain_attempts,
)
from notifications.rendering import TemplateRenderError, template_render
from notifications.routing import Route, channel_vendors, route_for
from notifications.statements import attempt_insert
from notifications.template_cache import template_resolve
from notifications.vendors.base import OutboundMessage, VendorError, VendorResult

logger = logging.getLogger(__name__)

_CLAIMABLE = (NotificationStatus.PENDING, NotificationStatus.RETRYING)


def notification_send(*, notification_id: int, channel: str | None = None) -> SendOutcome:
    """Try to deliver one notification now. Safe to call any number of times, concurrently.

    1. Claim it (only one caller wins; a `sent` notification is never sent again).
    2. Stop a poison message: too many deliveries -> `dead`.
    3. Close attempts left open by a worker that died mid-call (outcome unknown).
    4. Render once (dispatch stored the content with the row, so every vendor and retry
       sends the same content; only a row stored without content is rendered here).
    5. Walk the channel's vendors by priority; record each attempt.
    6. Settle: sent, failed, retrying (with a delay) or dead.
    """
    vendors = channel_vendors(channel=channel or _channel_of(notification_id))
    notification, refused = notification_claim(notification_id=notification_id, vendors=vendors)
    if notification is None:
        return refused
    return notification_send_claimed(
        notification=notification, vendors=vendors, has_history=notification.had_unknown_outcome
    )


def notification_send_claimed(
    *, notification: Notification, vendors: list[Vendor], has_history: bool = False
) -> SendOutcome:
    """Steps 2 to 6 of `notification_send`, for a notification this run holds: claimed by
    `notification_claim`, or inserted claimed by the dispatch (`trigger_dispatch_claim`). `vendors` are its
    channel's, the ones its lease was computed for; it carries its trigger's `created_at` as
    `trigger_created_at`. `has_history`: earlier attempts of it ended with an unknown outcome
    or never ended (the claim says so), so they are read first; a row the dispatch has just
    inserted has none unless a worker was lost with it."""
    if notification.delivery_count > settings.NOTIFICATION_MAX_DELIVERIES:
        return notification_settle_dead(
            notification=notification,
            error=f"Delivered to workers {notification.delivery_count} times; stopped as poison.",
        )
    if notification.delivery_count > 1:
        _close_orphan_attempts(notification)
    if notification_suppressed(notification=notification):  # consent: the one check before any vendor call
        return SendOutcome(status=NotificationStatus.SUPPRESSED)
    looked_back = has_history or notification.delivery_count > 1
    if notification.delivery_count > 1 and (delivered := _delivered_by_an_earlier_run(notification)):
        return notification_settle_sent(notification=notification, accepted=delivered,
                                        possible_duplicate=bool(uncertain_attempts(notification)))
    uncertain = uncertain_attempts(notification) if looked_back else []
    if not notification.rendered_text:
        try:
            _render(notification)
        except TemplateRenderError as exc:
            return notification_settle_failed(notification=notification, error=str(exc))
    return _deliver(notification, vendors, uncertain)


def _channel_of(notification_id: int) -> str:
    return Notification.objects.filter(pk=notification_id).values_list("channel", flat=True).first() or ""


def _close_orphan_attempts(notification: Notification) -> None:
    """Attempts begun by a run that never finished (worker killed): the vendor may have accepted."""
    DeliveryAttempt.objects.filter(notification=notification, outcome="").update(
        outcome=AttemptOutcome.TIMEOUT, error="Worker lost during the call; outcome unknown."
    )


def notification_render(*, notification: Notification, payload: dict, template=None) -> None:
    """Fill the notification's rendered_* fields from its active template (in memory only).

    `template` is the resolved template when the caller has it at hand. Raises
    TemplateRenderError when there is none or it fails to render.
    """
    if template is None:
        template = template_resolve(event_type=notification.event_type, channel=notification.channel, locale=notification.locale)
    if template is None:
        raise TemplateRenderError(f"No active template for {notification.event_type}/{notification.channel}.")
    rendered = template_render(
        subject=template.subject,
        body_text=template.body_text,
        body_html=template.body_html,
        context=dict(payload),
        locale=notification.locale,
    )
    notification.rendered_subject = rendered.subject[:255]
    notification.rendered_text = sms_spaces_plain(rendered.text) if notification.channel == Channel.SMS else rendered.text
    notification.rendered_html = email_html_document(
        body_html=rendered.html, subject=rendered.subject, locale=notification.locale
    )
    notification.template_version = template.version_tag


def _render(notification: Notification) -> None:
    """Render a notification created without content (an operator's resend after a template
    error): dispatch renders every other one before it is stored."""
    notification_render(notification=notification, payload=notification.trigger.payload)
    Notification.objects.filter(pk=notification.pk).update(
        rendered_subject=notification.rendered_subject,
        rendered_text=notification.rendered_text,
        rendered_html=notification.rendered_html,
        template_version=notification.template_version,
    )


def outbound_message(notification: Notification) -> OutboundMessage:
    """The message every vendor of the notification is sent: its stored content, its headers."""
    return OutboundMessage(
        channel=notification.channel,
        to=notification.recipient,
        subject=notification.rendered_subject,
        text=notification.rendered_text,
        html=notification.rendered_html,
        idempotency_key=notification.idempotency_key,
        request_id=request_id_get() if request_id_get() != "-" else notification.request_id or "-",
        headers=unsubscribe_headers(notification=notification),
    )


def _deliver(notification: Notification, vendors: list[Vendor], uncertain: list[Uncertain]) -> SendOutcome:
    message = outbound_message(notification)
    if uncertain and (found := lookup_before_resend(notification=notification, vendors=vendors, uncertain=uncertain,
                                                    message=message, lease=lease_seconds(vendors))):
        return _settle_found(notification, found, uncertain)
    skipped: list[DeliveryAttempt] = []
    rate_limit_waits: list[float] = []
    tried_any = False
    last_error = "No enabled vendor for this channel."
    for index, vendor in enumerate(vendors):
        # Before failing over, or before a call that could outlast the lease (a run held up since
        # its claim): stretch the lease over the vendors still to try (one UPDATE, only then), if
        # the notification is still this run's.
        if (tried_any or _lease_running_out(notification, vendor)) and not notification_lease_renew(
                notification=notification, seconds=lease_seconds(vendors[index:])):
            # Stuck past the lease (cut off the network mid-call, say): another run holds the
            # notification now, and sending to the next vendor too would be an unflagged copy.
            logger.warning("send stopped before %s: another run took the notification over", vendor.name,
                           extra={"notification_id": notification.pk, "vendor": vendor.name})
            return SendOutcome(status="taken_over")
        try:
            route = route_for(vendor)
        except Exception as exc:  # a misconfigured vendor is skipped like a failing one
            logger.exception("vendor %s cannot be used", vendor.name)
            last_error = f"{vendor.name}: misconfigured ({type(exc).__name__})"
            skipped.append(_skip(notification, vendor, AttemptOutcome.TRANSIENT_ERROR, last_error))
            continue
        # The circuit first, so an open circuit does not spend a rate-limit permit; a denied
        # rate limit gives back the circuit's (half-open trial) permit.
        if not route.circuit.try_acquire():
            skipped.append(_skip(notification, vendor, AttemptOutcome.SKIPPED_CIRCUIT_OPEN, "Circuit open."))
            continue
        decision = route.limiter.try_acquire()
        if not decision.allowed:
            route.circuit.release()
            rate_limit_waits.append(decision.retry_after)
            skipped.append(_skip(notification, vendor, AttemptOutcome.RATE_LIMITED, "Send-rate limit spent."))
            continue
        tried_any = True
        tried = vendor_attempt(notification, route, message)
        if isinstance(tried, Accepted):
            if skipped:
                DeliveryAttempt.objects.bulk_create(skipped)
            return notification_settle_sent(
                notification=notification, accepted=tried,
                possible_duplicate=duplicate_possible(uncertain=uncertain, delivered_by=route),
            )
        outcome, error, attempt = tried
        if outcome == AttemptOutcome.PERMANENT_ERROR:
            if skipped:
                DeliveryAttempt.objects.bulk_create(skipped)
            return notification_settle_failed(notification=notification, error=error)
        if outcome == AttemptOutcome.TIMEOUT:
            uncertain.append(Uncertain(attempt.pk, vendor.pk, attempt.started_at, attempt.duration_ms))
            if found := _ask_after_timeout(notification, route, uncertain[-1], vendors, message):
                if skipped:
                    DeliveryAttempt.objects.bulk_create(skipped)
                return _settle_found(notification, found, uncertain)
        last_error = error
    if skipped:
        DeliveryAttempt.objects.bulk_create(skipped)
    if rate_limit_waits and not tried_any:
        return notification_settle_rate_limited(notification=notification, wait=min(rate_limit_waits))
    if not tried_any and skipped:
        last_error = "Every vendor was skipped (circuit open or rate limited)."
    return notification_settle_retry(notification=notification, error=last_error)


def _lease_running_out(notification: Notification, vendor: Vendor) -> bool:
    """Could a call to `vendor` outlast this run's lease? Only for a run held up since its claim
    (cut off the network, say): once its lease has run out, another run may hold the
    notification, and a call now would be a second, unflagged copy."""
    if notification.lease_until is None:
        return True
    return timezone.now() + timedelta(seconds=vendor.timeout_seconds) > notification.lease_until


def _delivered_by_an_earlier_run(notification: Notification) -> Accepted | None:
    """An attempt of an earlier run that a vendor accepted, though that run could no longer
    settle the notification (it had lost its claim while its call was in flight): that is the
    delivery, and it is recorded as such instead of being sent again."""
    attempt = (DeliveryAttempt.objects.filter(notification=notification, outcome=AttemptOutcome.SENT)
               .select_related("vendor").order_by("started_at", "id").first())
    if attempt is None:
        return None
    return Accepted(attempt=attempt, duration=(attempt.duration_ms or 0) / 1000,
                    result=VendorResult(message_id=attempt.vendor_message_id, status_code=attempt.status_code))


def _ask_after_timeout(
    notification: Notification, route: Route, timed_out: Uncertain, vendors: list[Vendor], message: OutboundMessage
) -> Found | None:
    """Right after an unknown outcome, before the next vendor: does this vendor hold the message?"""
    if not can_look_up(route.vendor):
        return None
    notification_lease_renew(notification=notification, seconds=lease_seconds(vendors) + route.vendor.timeout_seconds)
    return lookup_then_found(notification=notification, uncertain=[timed_out], routes={route.vendor.pk: route},
                             message=message)


def _settle_found(notification: Notification, found: Found, uncertain: list[Uncertain]) -> SendOutcome:
    """A vendor holds the message of an unknown outcome: that attempt delivered it. Record it as
    sent with the vendor's id; flag it when the vendor holds copies or another vendor may too."""
    vendor = found.attempt.vendor
    DeliveryAttempt.objects.filter(pk=found.attempt.pk).update(
        error=f"Outcome was unknown; the vendor's message list shows it accepted ({found.copies} matching)."
    )
    others = any(item.vendor_id != vendor.pk for item in uncertain)
    accepted = Accepted(
        attempt=found.attempt,
        duration=(found.attempt.duration_ms or 0) / 1000,
        result=VendorResult(message_id=found.message_id),
    )
    return notification_settle_sent(notification=notification, accepted=accepted, possible_duplicate=found.copies > 1 or others)


def _skip(notification: Notification, vendor: Vendor, outcome: str, error: str) -> DeliveryAttempt:
    metrics.DELIVERY_ATTEMPTS.labels(vendor=vendor.name, channel=notification.channel, outcome=outcome).inc()
    return DeliveryAttempt(
        notification=notification, vendor=vendor, started_at=timezone.now(), duration_ms=0, outcome=outcome, error=error
    )


def vendor_attempt(
    notification: Notification, route: Route, message: OutboundMessage
) -> Accepted | tuple[str, str, DeliveryAttempt]:
    """One vendor call, written before and completed after (a failure here, a success together
    with the notification in `notification_settle_sent`). Returns Accepted, else (outcome, error text, the
    attempt row). Also the delivery fallback's one call (delivery_fallback.py)."""
    vendor = route.vendor
    attempt = _attempt_begin(notification, vendor)
    started = time.perf_counter()
    try:
        result = route.adapter.send(message)
    except VendorError as exc:
        duration = time.perf_counter() - started
        if exc.outcome_unknown:
            outcome = AttemptOutcome.TIMEOUT
        elif exc.permanent:
            outcome = AttemptOutcome.PERMANENT_ERROR
        else:
            outcome = AttemptOutcome.TRANSIENT_ERROR
        # Classified by cause: a recipient or message the vendor refuses (permanent) is not the
        # vendor failing; everything else, its own misconfiguration included, trips its breaker.
        route.circuit.record(success=exc.permanent, duration=duration)
        _attempt_finish(attempt, outcome, duration, status_code=exc.status_code, vendor_code=exc.vendor_code or "", error=str(exc))
        suppression_from_vendor_refusal(channel=notification.channel, address=notification.recipient, error=exc)
        logger.warning(
            "delivery attempt %s via %s: %s",
            outcome,
            vendor.name,
            exc,
            extra={"notification_id": notification.pk, "vendor": vendor.name, "outcome": outcome},
        )
        attempt.duration_ms = duration * 1000
        return outcome, f"{vendor.name}: {exc}", attempt
    except Exception as exc:  # an adapter bug must not lose the notification: count it transient
        duration = time.perf_counter() - started
        route.circuit.record(success=False, duration=duration)
        _attempt_finish(attempt, AttemptOutcome.TRANSIENT_ERROR, duration, error=f"{type(exc).__name__}: {exc}")
        logger.exception("adapter %s raised unexpectedly", vendor.adapter, extra={"notification_id": notification.pk})
        return AttemptOutcome.TRANSIENT_ERROR, f"{vendor.name}: {type(exc).__name__}", attempt
    duration = time.perf_counter() - started
    route.circuit.record(success=True, duration=duration)
    _attempt_metrics(vendor, AttemptOutcome.SENT, duration)
    logger.info(
        "delivery attempt sent via %s in %.0f ms",
        vendor.name,
        duration * 1000,
        extra={"notification_id": notification.pk, "vendor": vendor.name, "outcome": "sent"},
    )
    return Accepted(attempt=attempt, duration=duration, result=result)


def _attempt_begin(notification: Notification, vendor: Vendor) -> DeliveryAttempt:
    """Insert the attempt row (outcome empty: in flight) before the call."""
    return attempt_insert(DeliveryAttempt(notification=notification, vendor=vendor, started_at=timezone.now()))


def _attempt_finish(attempt: DeliveryAttempt, outcome: str, duration: float, **fields: object) -> None:
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(outcome=outcome, duration_ms=duration * 1000, **fields)
    _attempt_metrics(attempt.vendor, outcome, duration)


def _attempt_metrics(vendor: Vendor, outcome: str, duration: float) -> None:
    metrics.DELIVERY_ATTEMPTS.labels(vendor=vendor.name, channel=vendor.channel, outcome=outcome).inc()
    metrics.VENDOR_CALL_SECONDS.labels(vendor=vendor.name, outcome=outcome).observe(duration)


# Spaces GSM-7 cannot encode, which the locales' number and money formats use (CLDR: "R$ 19,00"
# has a no-break space in pt-BR, "19,00 €" a narrow one in fr). One such character turns a whole
# SMS into UCS-2: 70 characters a segment instead of 160, twice the price of a short pt-BR text.
_SPACES_OUTSIDE_GSM7 = str.maketrans(dict.fromkeys("\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000", " "))


def sms_spaces_plain(text: str) -> str:
    """`text` with every space GSM-7 cannot encode written as a plain space."""
    return text.translate(_SPACES_OUTSIDE_GSM7)
