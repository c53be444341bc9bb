"""Notification data: event types, triggers (the outbox), vendors, templates, notifications, attempts.

The database is the source of truth for every state; Redis only holds the queue, the
breakers, the rate limiters and the template cache.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"


class EventCategory(models.TextChoices):
    TRANSACTIONAL = "transactional", "Transactional"
    MARKETING = "marketing", "Marketing"


EVENT_TYPE_NAME = RegexValidator(
    r"^[a-z][a-z0-9_]{0,63}$", "Lower-case letters, digits and underscores, starting with a letter (e.g. shipment_sent)."
)


class EventType(models.Model):
    """Something a system tells its customers about, registered as data (not named in code).

    `payload_schema` (JSON Schema, checked on save: notifications/event_types.py) is what the
    events API validates each event's data against; `sample_payload` must satisfy it and is what
    the admin previews templates with and renders them with before saving. Templates and
    triggers refer to an event type by `name` (a plain column: the checkout's hot path writes
    its trigger without looking the event type up).
    """

    name = models.CharField(max_length=64, unique=True, validators=[EVENT_TYPE_NAME])
    description = models.TextField(blank=True)
    category = models.CharField(max_length=16, choices=EventCategory.choices, default=EventCategory.TRANSACTIONAL)
    sample_payload = models.JSONField(default=dict, blank=True, help_text="Data templates are previewed and checked with.")
    payload_schema = models.JSONField(
        default=dict, blank=True, help_text="JSON Schema every event's data must satisfy ({} accepts any object)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from notifications.event_types import event_type_definition_errors

        errors = event_type_definition_errors(schema=self.payload_schema, sample=self.sample_payload)
        if errors:
            raise ValidationError(errors)


class NotificationTrigger(models.Model):
    """An event to notify about, written atomically with the business change (in the same
    statement, or the same transaction).

    It carries everything its templates need (`payload`) and the recipients' addresses, so
    `notifications` never reads another app's tables. `dispatched_at` is set once the
    trigger's notifications exist; until then the relay keeps handing it to Celery, unless it
    is dead: a trigger whose dispatch was tried TRIGGER_MAX_DISPATCH_ATTEMPTS times after
    relay hand-overs without succeeding waits for an operator (`dead_at`, `last_error`).
    """

    event_type = models.CharField(max_length=64)
    locale = models.CharField(max_length=16, default="en")
    payload = models.JSONField(default=dict)
    # channel -> address, e.g. {"email": "ana@example.com", "sms": "+447911123456"}
    recipients = models.JSONField(default=dict)
    # What the trigger is about, for search and support ("order:<uuid>").
    subject_ref = models.CharField(max_length=80, db_index=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The relay publishes a trigger once this time has passed and it is still undispatched.
    relay_after = models.DateTimeField()
    publish_count = models.PositiveIntegerField(default=0)
    # When a worker's trigger listener claimed the trigger to publish it (notify hand-off), so
    # that of several listening workers one publishes it; the relay does not look at it.
    handed_over_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Dispatches started after a relay hand-over (the web's own hand-off is not counted: the
    # hot path stays one statement), and why the last one failed.
    dispatch_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # Set when the trigger kept failing to dispatch: the relay leaves it alone from then on.
    dead_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["relay_after"],
                name="trigger_undispatched_idx",
                condition=Q(dispatched_at__isnull=True, dead_at__isnull=True),
            ),
            models.Index(fields=["dead_at"], name="trigger_dead_idx", condition=Q(dead_at__isnull=False)),
            models.Index(fields=["created_at"], name="trigger_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.pk}"


class Vendor(models.Model):
    """A third-party sender for one channel; tried in `priority` order (lowest first)."""

    name = models.CharField(max_length=80, unique=True)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    adapter = models.CharField(max_length=32, help_text="Which adapter speaks to this vendor.")
    priority = models.PositiveIntegerField(default=100, help_text="Lower is tried first.")
    enabled = models.BooleanField(default=True)
    settings = models.JSONField(default=dict, blank=True, help_text="Non-secret settings (host, sender, ...).")
    # Fernet-encrypted JSON of the secrets; never rendered back or logged (see vendor_secrets.py).
    secrets_encrypted = models.TextField(blank=True, default="")
    timeout_seconds = models.FloatField(default=5.0)
    # Circuit breaker (Resilience4j semantics; see circuit_breaker.py).
    breaker_window_size = models.PositiveIntegerField(default=20)
    breaker_minimum_calls = models.PositiveIntegerField(default=10)
    breaker_failure_rate = models.FloatField(default=50.0, help_text="Percent of failed calls that opens the circuit.")
    breaker_slow_call_seconds = models.FloatField(default=4.0)
    breaker_slow_call_rate = models.FloatField(default=100.0, help_text="Percent of slow calls that opens the circuit.")
    breaker_open_seconds = models.FloatField(default=30.0)
    breaker_half_open_trials = models.PositiveIntegerField(default=3)
    # Global send rate across all workers; 0 means unlimited.
    rate_limit_per_second = models.FloatField(default=0.0)
    rate_limit_burst = models.PositiveIntegerField(default=0, help_text="0: one second's worth of the rate.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["channel", "priority", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(timeout_seconds__gt=0), name="vendor_timeout_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.channel})"

    @property
    def circuit_name(self) -> str:
        """The breaker's key in Redis: stable across renames."""
        return f"vendor:{self.pk}"


class NotificationTemplate(models.Model):
    """What one event says on one channel in one locale. One active template per triple."""

    event_type = models.CharField(max_length=64)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    locale = models.CharField(max_length=16, help_text="e.g. en, pt, pt-BR")
    subject = models.CharField(max_length=255, blank=True, help_text="Email only.")
    body_text = models.TextField()
    body_html = models.TextField(blank=True, help_text="Email only.")
    version = models.PositiveIntegerField(default=1)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["event_type", "channel", "locale"]
        constraints = [
            models.UniqueConstraint(
                fields=["event_type", "channel", "locale"],
                condition=Q(is_active=True),
                name="one_active_template_per_event_channel_locale",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type}/{self.channel}/{self.locale} v{self.version}"


class NotificationTemplateVersion(models.Model):
    """A snapshot of a template as saved, for history and "restore this version"."""

    template = models.ForeignKey(NotificationTemplate, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    subject = models.CharField(max_length=255, blank=True)
    body_text = models.TextField()
    body_html = models.TextField(blank=True)
    saved_by = models.CharField(max_length=150, blank=True)
    saved_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [models.UniqueConstraint(fields=["template", "version"], name="template_version_unique")]

    def __str__(self) -> str:
        return f"{self.template} @v{self.version}"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    RETRYING = "retrying", "Retrying"
    FAILED = "failed", "Failed"
    DEAD = "dead", "Dead"
    # The recipient is on the suppression list for this message (consent.py): no vendor called.
    SUPPRESSED = "suppressed", "Suppressed"


class DeliveryState(models.TextChoices):
    """What a vendor's receipts say became of a message after it accepted it (receipts.py)."""

    ACCEPTED = "accepted", "Accepted by the vendor"
    DELIVERED = "delivered", "Delivered"
    UNDELIVERED = "undelivered", "Undelivered"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained (spam)"


class Notification(models.Model):
    """One message to one recipient on one channel for one trigger.

    State machine: pending -> sending -> sent | retrying | failed; retrying -> sending | dead;
    failed | dead -> pending (operator resend). `sent` is final. A dispatch that sends at once
    inserts its rows already `sending` (claimed and leased, see `trigger_dispatch_claim`).
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    trigger = models.ForeignKey(NotificationTrigger, on_delete=models.CASCADE, related_name="notifications")
    event_type = models.CharField(max_length=64)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    recipient = models.CharField(max_length=254)
    # Set when `recipient` is erased (retention.py): consent.address_hash of it, so counts per
    # recipient and suppression matches still work without the address.
    recipient_hash = models.CharField(max_length=64, blank=True)
    locale = models.CharField(max_length=16)
    status = models.CharField(max_length=10, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    # Rounds through the vendor list (a round tries every available vendor once).
    attempt_count = models.PositiveIntegerField(default=0)
    # Times a worker claimed it; a task that keeps dying is stopped by this (poison message).
    delivery_count = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Rendered once, at dispatch (or on the first claim of a row stored without content), so
    # every vendor and retry sends identical content.
    template_version = models.CharField(max_length=32, blank=True)
    rendered_subject = models.CharField(max_length=255, blank=True)
    rendered_text = models.TextField(blank=True)
    rendered_html = models.TextField(blank=True)
    vendor = models.ForeignKey(Vendor, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    vendor_message_id = models.CharField(max_length=255, blank=True)
    # A vendor may have accepted an earlier attempt whose outcome stayed unknown (timeout).
    possible_duplicate = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # After `sent`: what the receipts of its current vendor message say ("" until it is sent).
    delivery_state = models.CharField(max_length=12, choices=DeliveryState.choices, blank=True)
    delivery_state_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["trigger", "channel", "recipient"], name="notification_unique_per_trigger"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="notification_due_idx"),
            models.Index(fields=["status", "updated_at"], name="notification_status_idx"),
            models.Index(fields=["created_at"], name="notification_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.event_type} #{self.pk} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        """Sent to every vendor on every try: a vendor that honours it accepts the message once."""
        return f"beacon-{self.public_id}"


class AttemptOutcome(models.TextChoices):
    SENT = "sent", "Sent"
    TRANSIENT_ERROR = "transient_error", "Transient error"
    PERMANENT_ERROR = "permanent_error", "Permanent error"
    TIMEOUT = "timeout", "Timeout (outcome unknown)"
    SKIPPED_CIRCUIT_OPEN = "skipped_circuit_open", "Skipped: circuit open"
    RATE_LIMITED = "rate_limited", "Skipped: rate limited"


class DeliveryAttempt(models.Model):
    """One try of one vendor: written before the call (outcome empty), completed after it."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempts")
    vendor = models.ForeignKey(Vendor, null=True, on_delete=models.SET_NULL, related_name="attempts")
    started_at = models.DateTimeField()
    duration_ms = models.FloatField(null=True, blank=True)
    outcome = models.CharField(max_length=24, choices=AttemptOutcome.choices, blank=True)
    status_code = models.IntegerField(null=True, blank=True)
    vendor_code = models.CharField(max_length=32, blank=True)
    vendor_message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    # After `sent`: the delivery state its receipts reached, and the vendor's code for it
    # (Twilio ErrorCode, the ESP's bounce type). Only ever moves forward (receipts.py).
    delivery_state = models.CharField(max_length=12, choices=DeliveryState.choices, blank=True)
    delivery_code = models.CharField(max_length=32, blank=True)
    # Set once when this attempt's undelivered receipt started a delivery fallback
    # (delivery_fallback.py): a second receipt saying the same starts nothing.
    fallback_started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [
            models.Index(fields=["vendor", "started_at"], name="attempt_vendor_time_idx"),
            models.Index(fields=["vendor", "vendor_message_id"], name="attempt_vendor_message_idx",
                         condition=~Q(vendor_message_id="")),
        ]

    def __str__(self) -> str:
        return f"attempt #{self.pk} {self.outcome or 'in flight'}"


class DeliveryReceipt(models.Model):
    """One status report of a vendor about a message it accepted (Twilio status callback, ESP
    tracking webhook), stored once per (attempt, vendor status, code) however often it comes."""

    attempt = models.ForeignKey(DeliveryAttempt, on_delete=models.CASCADE, related_name="receipts")
    vendor_status = models.CharField(max_length=32, help_text="As the vendor names it (MessageStatus, event type).")
    state = models.CharField(max_length=12, choices=DeliveryState.choices)
    vendor_code = models.CharField(max_length=32, blank=True)
    description = models.CharField(max_length=200, blank=True)
    # When the vendor says it happened (None when it does not say), and when it reached Beacon.
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["received_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["attempt", "vendor_status", "vendor_code"], name="receipt_once_per_status"),
        ]

    def __str__(self) -> str:
        return f"receipt {self.vendor_status} ({self.state})"


class ReceiptRequestToken(models.Model):
    """The idempotency token of a vendor's receipt request (Twilio's `I-Twilio-Idempotency-Token`),
    kept so that the same request seen again (a replay of a captured callback) is refused."""

    token = models.CharField(max_length=128, unique=True)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"receipt request {self.token[:16]}"


class SuppressionScope(models.TextChoices):
    ALL = "all", "Every message on this channel"
    MARKETING = "marketing", "Marketing messages only"


class SuppressionSource(models.TextChoices):
    SMS_STOP = "sms_stop", "SMS STOP"
    UNSUBSCRIBE = "unsubscribe", "One-click unsubscribe"
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    CARRIER_OPT_OUT = "carrier_opt_out", "Twilio 21610 (unsubscribed)"
    OPERATOR = "operator", "Operator"


class Suppression(models.Model):
    """A recipient who must not get messages on one channel (or only no marketing), with why
    and since when. Matched by `address_hash` (consent.address_hash), so it survives the
    erasure of `address` (retention.py): a STOP outlives the person's data.

    The rule for transactional events (consent.py): scope `all` (SMS STOP, carrier opt-out,
    hard bounce) stops every message on the channel; scope `marketing` (one-click unsubscribe)
    stops marketing events only.
    """

    channel = models.CharField(max_length=8, choices=Channel.choices)
    address = models.CharField(max_length=254, blank=True, help_text="Empty once erased; the hash still matches.")
    address_hash = models.CharField(max_length=64, editable=False)
    scope = models.CharField(max_length=16, choices=SuppressionScope.choices, default=SuppressionScope.ALL)
    source = models.CharField(max_length=16, choices=SuppressionSource.choices, default=SuppressionSource.OPERATOR)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "address_hash", "scope"], name="suppression_unique_per_scope"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} suppression ({self.get_scope_display()}, {self.get_source_display()})"
