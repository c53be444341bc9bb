"""The case study's "before" architecture: send inside the checkout request.

Enabled only by BEACON_SYNC_SEND, only so the benchmark can measure what Beacon removes.
It runs the very same dispatch and send services, in the request thread.
"""

from __future__ import annotations

from notifications.dispatch import trigger_dispatch_create
from notifications.sending import notification_send


def trigger_deliver_inline(*, trigger_id: int) -> None:
    for notification_id in trigger_dispatch_create(trigger_id=trigger_id):
        notification_send(notification_id=notification_id)
