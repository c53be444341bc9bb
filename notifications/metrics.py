"""Prometheus metrics of the notifications app: a flat list of metric definitions, nothing else."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CIRCUIT_TRANSITIONS = Counter(
    "beacon_circuit_transitions_total",
    "Vendor circuit breaker state transitions seen by this process.",
    ["vendor", "from_state", "to_state"],
)

CIRCUIT_STATE = Gauge(
    "beacon_circuit_state",
    "Vendor circuit breaker state last seen by this process: 0 closed, 1 half_open, 2 open.",
    ["vendor"],
    multiprocess_mode="mostrecent",
)

# --- Delivery (written by the send flow) -------------------------------------------------------
# Buckets span a fast vendor (tens of ms) to a retried delivery (minutes).
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)

DELIVERY_ATTEMPTS = Counter(
    "beacon_delivery_attempts_total",
    "Delivery attempts by vendor, channel and outcome (including skips for open circuits and rate limits).",
    ["vendor", "channel", "outcome"],
)
VENDOR_CALL_SECONDS = Histogram(
    "beacon_vendor_call_seconds",
    "Duration of vendor calls.",
    ["vendor", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
NOTIFICATIONS_FINISHED = Counter(
    "beacon_notifications_total",
    "Notifications reaching a final state (sent, failed, dead), by channel and delivering vendor.",
    ["channel", "vendor", "status"],
)
POSSIBLE_DUPLICATES = Counter(
    "beacon_possible_duplicates_total",
    "Notifications delivered after an unknown outcome that may have delivered them too (flagged possible_duplicate).",
    ["channel", "vendor"],
)
RECONCILIATIONS = Counter(
    "beacon_reconciliations_total",
    "Lookups at a vendor after an unknown outcome, by result: found (recorded as sent, not resent), not_found, no_answer.",
    ["vendor", "result"],
)
NOTIFICATION_RETRIES = Counter(
    "beacon_notification_retries_total", "Notifications scheduled for another round after every vendor failed.", ["channel"]
)
DELIVERY_LATENCY = Histogram(
    "beacon_delivery_latency_seconds",
    "From trigger creation (checkout commit) to vendor acceptance.",
    ["channel"],
    buckets=_LATENCY_BUCKETS,
)
TEMPLATE_CACHE_REQUESTS = Counter(
    "beacon_template_cache_requests_total", "Template cache lookups by result (hit, miss).", ["result"]
)

# --- Outbox (web writes triggers, workers dispatch them) -----------------------------------------
TRIGGERS_CREATED = Counter(
    "beacon_triggers_created_total", "Notification triggers committed to the outbox, by event type.", ["event_type"]
)
TRIGGER_LISTENER_HANDOVERS = Counter(
    "beacon_trigger_listener_handovers_total",
    "Triggers a worker's listener claimed, by result: dispatched_here (in its own threads), published, "
    "or left to the relay (broker refused).",
    ["result"],
)
TRIGGER_DISPATCHES_HERE = Counter(
    "beacon_trigger_dispatches_here_total",
    "Trigger dispatches run by a worker's listener threads (not a Celery task), by result (ok, failed).",
    ["result"],
)
TRIGGER_DISPATCH_HERE_SECONDS = Histogram(
    "beacon_trigger_dispatch_here_duration_seconds",
    "Duration of the trigger dispatches run by a worker's listener threads (first sends included).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)
TRIGGER_LISTENER_CONNECTS = Counter(
    "beacon_trigger_listener_connects_total",
    "Connections (first and re-) of a worker's trigger listener to PostgreSQL, by result (ok, failed).",
    ["result"],
)
TRIGGERS_DISPATCHED = Counter(
    "beacon_triggers_dispatched_total",
    "Notification triggers turned into notifications (first dispatch only), by event type.",
    ["event_type"],
)
TRIGGERS_DEAD = Counter(
    "beacon_triggers_dead_total",
    "Notification triggers given up after failing to dispatch TRIGGER_MAX_DISPATCH_ATTEMPTS times, by event type.",
    ["event_type"],
)
# Scrape-time gauges (oldest undispatched trigger, dead letters) come from notifications/collectors.py.

# --- After `sent` (vendor receipts, notifications/receipts.py) --------------------------------------
DELIVERY_RECEIPTS = Counter(
    "beacon_delivery_receipts_total",
    "Messages whose vendor receipts reached a final delivery state (delivered, undelivered, bounced, complained), "
    "counted once per message and state, by vendor and channel: the delivered rate is delivered over all of them.",
    ["vendor", "channel", "state"],
)
DELIVERY_FALLBACKS = Counter(
    "beacon_delivery_fallbacks_total",
    "Undelivered messages sent once more through the next vendor, by channel and result (sent, no_vendor, failed).",
    ["channel", "result"],
)
