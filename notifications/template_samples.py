"""Sample data for templates: what the admin previews with, and what a save is rendered with
(under the render budget) before it is accepted. It is the event type's own sample
(`EventType.sample_payload`, registered in the admin)."""

from __future__ import annotations

from typing import Any

from notifications.models import EventType


def sample_payload(event_type: str, locale: str = "en") -> dict[str, Any]:
    """The registered event type's sample payload (a fresh object: callers may change it), or {} for a
    name no event type has. `locale` is the locale being previewed (the sample is the same for
    every locale)."""
    sample = EventType.objects.filter(name=event_type).values_list("sample_payload", flat=True).first()
    return sample if isinstance(sample, dict) else {}
