"""Running the delivery engine in the test's own process, as a worker would.

Not a test module: tests import it instead of each other (tests/test_test_modules_stand_alone.py).
"""

from __future__ import annotations

import base64
import json

import redis

from notifications.dispatch import trigger_dispatch_create
from notifications.models import Notification, NotificationStatus, NotificationTrigger, Vendor
from notifications.sending import notification_send
from notifications.vendor_secrets import secrets_resolve


def run_until_settled(notification_id: int, *, max_runs: int = 20) -> Notification:
    """Run the send service as the worker would, ignoring retry delays, until it settles."""
    for _ in range(max_runs):
        Notification.objects.filter(pk=notification_id, status=NotificationStatus.RETRYING).update(next_attempt_at=None)
        outcome = notification_send(notification_id=notification_id)
        if outcome.retry_in is None:
            break
    return Notification.objects.get(pk=notification_id)


def dispatch(trigger: NotificationTrigger) -> dict[str, Notification]:
    """The trigger's notifications by channel, created as the dispatch task would."""
    ids = trigger_dispatch_create(trigger_id=trigger.pk)
    return {n.channel: n for n in Notification.objects.filter(pk__in=ids)}


def vendor_webhook_secret(vendor: Vendor) -> str:
    """The `user:password` an ESP vendor's tracking webhook must present (its stored secret)."""
    return secrets_resolve(vendor.secrets_encrypted)["webhook_secret"]


def queued_sends(broker_url: str) -> list[tuple[str, int, bool]]:
    """(queue, notification id, has a countdown) of every send message waiting on the broker."""
    client = redis.Redis.from_url(broker_url)
    queued = []
    for queue in ("email", "sms"):
        for raw in client.lrange(queue, 0, -1):
            message = json.loads(raw)
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            queued.append((queue, args[0], message["headers"].get("eta") is not None))
    return sorted(queued)
