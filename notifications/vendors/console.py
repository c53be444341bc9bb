"""Console adapters: log the message instead of sending it. Development only.

Nothing is delivered, so they never fail. The log line shows the subject, the text's size and a
masked recipient, not the body (it may hold personal data).
"""

from __future__ import annotations

import logging
import uuid

from foundation.masking import address_mask
from notifications.vendors.base import OutboundMessage, VendorAdapter, VendorResult

logger = logging.getLogger(__name__)


class ConsoleAdapter(VendorAdapter):
    """Base of the two console adapters; only `key`, `channel` and `label` differ."""

    def send(self, message: OutboundMessage) -> VendorResult:
        """Log the message; return a fresh id "console-<hex>"."""
        self.ensure_configured(message)
        message_id = f"console-{uuid.uuid4().hex}"
        logger.info(
            "console vendor: %s message to %s (%d chars): %s",
            message.channel,
            address_mask(message.to),
            len(message.text),
            message.subject or "-",
            extra={
                "message_id": message_id,
                "idempotency_key": message.idempotency_key,
                "request_id": message.request_id,
            },
        )
        return VendorResult(message_id=message_id)


class ConsoleEmailAdapter(ConsoleAdapter):
    key = "console_email"
    channel = "email"
    label = "Console (email, development)"


class ConsoleSmsAdapter(ConsoleAdapter):
    key = "console_sms"
    channel = "sms"
    label = "Console (SMS, development)"
