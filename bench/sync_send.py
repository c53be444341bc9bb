"""The case study's "before" architecture: send inside the checkout request.

The benchmark's hand-off (settings.TRIGGER_HANDOFF when BEACON_SYNC_SEND is set), only so it
can measure what Beacon removes. It runs the very same dispatch and send services, in the
request thread.
"""

from __future__ import annotations

from notifications.dispatch import trigger_dispatch_create
from notifications.sending import notification_send


def trigger_deliver_inline(*, trigger_id: int) -> None:
    for notification_id in trigger_dispatch_create(trigger_id=trigger_id):
        notification_send(notification_id=notification_id)
