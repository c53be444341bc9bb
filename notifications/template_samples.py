"""Sample data for templates: what the admin previews with, and what a save is rendered with
(under the render budget) before it is accepted. It is the event type's own sample
(`EventType.sample_payload`, registered in the admin), shown in the previewed locale's
currency when it names one with cents like its own (BRL for pt-BR)."""

from __future__ import annotations

from typing import Any

from money.currencies import currency_minor_units
from money.formatting import locale_currency
from notifications.models import EventType


def sample_payload(event_type: str, locale: str = "en") -> dict[str, Any]:
    """The registered event type's sample payload (a fresh object: callers may change it), or {}
    for a name no event type has. A sample `currency` with two minor units becomes the
    locale's country's currency when that has two as well (its amounts stay valid)."""
    sample = EventType.objects.filter(name=event_type).values_list("sample_payload", flat=True).first()
    if not isinstance(sample, dict):
        return {}
    own = sample.get("currency")
    local = locale_currency(locale)
    if isinstance(own, str) and local and _minor_units(own) == 2 and currency_minor_units(local) == 2:
        sample["currency"] = local
    return sample


def _minor_units(currency: str) -> int | None:
    try:
        return currency_minor_units(currency)
    except (KeyError, ValueError):
        return None
