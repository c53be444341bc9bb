"""How each vendor's status words map onto Beacon's delivery states (receipts.py).

Twilio: the `MessageStatus` of a status callback (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values).
ESPs: the normalised `event_type` of django-anymail's tracking events, the same for every ESP.
A status that says nothing about delivery (an open's cousin `unsubscribed`, `unknown`) maps to None.
"""

from __future__ import annotations

from notifications.models import DeliveryState

TWILIO_MESSAGE_STATUS: dict[str, str] = {
    "accepted": DeliveryState.ACCEPTED,
    "scheduled": DeliveryState.ACCEPTED,
    "queued": DeliveryState.ACCEPTED,
    "sending": DeliveryState.ACCEPTED,
    "sent": DeliveryState.ACCEPTED,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.DELIVERED,
    "undelivered": DeliveryState.UNDELIVERED,
    "failed": DeliveryState.UNDELIVERED,
    "canceled": DeliveryState.UNDELIVERED,
}

ANYMAIL_EVENT_TYPE: dict[str, str] = {
    "queued": DeliveryState.ACCEPTED,
    "sent": DeliveryState.ACCEPTED,
    # A soft failure the ESP keeps retrying: still on its way.
    "deferred": DeliveryState.ACCEPTED,
    "delivered": DeliveryState.DELIVERED,
    # Opened or clicked: it certainly arrived.
    "opened": DeliveryState.DELIVERED,
    "clicked": DeliveryState.DELIVERED,
    "bounced": DeliveryState.BOUNCED,
    # The ESP refused to send it (a suppressed or invalid address): it will never arrive.
    "rejected": DeliveryState.BOUNCED,
    "failed": DeliveryState.UNDELIVERED,
    "complained": DeliveryState.COMPLAINED,
}

# Twilio ErrorCodes of an undelivered SMS that blame the recipient, not the carrier route: a
# second vendor would fail the same way, so no delivery fallback (delivery_fallback.py).
TWILIO_RECIPIENT_FAULT_CODES: dict[str, str] = {
    "30003": "unreachable destination handset",
    "30004": "message blocked by the recipient",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered as spam by the carrier",  # the content, not the route: the next carrier filters it too
    "21610": "recipient unsubscribed (STOP)",
    "21211": "invalid 'To' number",
    "21614": "'To' is not a mobile number",
}
