"""Cache invalidation hooks, and nothing else: a template change invalidates its cache key
once the change has committed, so the very next send reads the new text; a vendor change
drops this process's cached vendor lists (other processes reload within
NOTIFICATION_VENDOR_CACHE_SECONDS)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from notifications.models import NotificationTemplate, Vendor
from notifications.routing import vendors_forget
from notifications.template_cache import template_cache_invalidate


@receiver(post_save, sender=NotificationTemplate)
@receiver(post_delete, sender=NotificationTemplate)
def template_changed(sender: type, instance: NotificationTemplate, **kwargs: Any) -> None:
    event_type, channel = instance.event_type, instance.channel
    transaction.on_commit(lambda: template_cache_invalidate(event_type=event_type, channel=channel))


@receiver(post_save, sender=Vendor)
@receiver(post_delete, sender=Vendor)
def vendor_changed(sender: type, instance: Vendor, **kwargs: Any) -> None:
    vendors_forget()
    transaction.on_commit(vendors_forget)
