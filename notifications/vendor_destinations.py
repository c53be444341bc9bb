"""Where a vendor sends: secrets bound to the destination they were entered for.

A vendor's secrets (auth token, SMTP password, signing secret) are write-only: the admin never
shows them and a blank field keeps the stored value. That alone would let anyone who may edit
a vendor read them back by repointing it (a new base URL, host or account) at a listener and
pressing "send a test message". So a change of destination must come with the secrets typed
again; otherwise the save is refused, naming what changed and what to re-enter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifications.egress import EgressRefused, egress_check
from notifications.vendors.registry import VENDOR_ADAPTERS, adapter_class


def vendor_egress_errors(*, adapter: str, settings: Mapping[str, Any]) -> dict[str, str]:
    """{setting: why} for each destination of the vendor that the egress policy refuses
    (resolving host names now; the adapter checks again as it connects). {} when all pass."""
    if adapter not in VENDOR_ADAPTERS:
        return {}
    try:
        destinations = adapter_class(adapter).destinations(settings)
    except EgressRefused as exc:
        return {"destination": str(exc)}
    errors = {}
    for name, destination in destinations.items():
        if not destination.host:
            continue  # "required" is the configuration check's to say
        try:
            egress_check(destination)
        except EgressRefused as exc:
            errors[name] = f"refused by the egress policy: {exc}"
    return errors


def vendor_destination_changes(
    *, adapter_before: str, settings_before: Mapping[str, Any], adapter_after: str, settings_after: Mapping[str, Any]
) -> list[str]:
    """The names of what moved the vendor's destination ("adapter" or destination settings); []
    when it still sends where it did."""
    if adapter_before != adapter_after:
        return ["adapter"]
    if adapter_after not in VENDOR_ADAPTERS:
        return []
    cls = adapter_class(adapter_after)
    before, after = cls.destination(settings_before), cls.destination(settings_after)
    return [name for name in cls.destination_fields if before.get(name) != after.get(name)]


def vendor_secrets_rebind_errors(
    *,
    adapter_before: str,
    settings_before: Mapping[str, Any],
    adapter_after: str,
    settings_after: Mapping[str, Any],
    stored: Mapping[str, str],
    entered: Mapping[str, str],
) -> dict[str, str]:
    """{secret name: why} for each stored secret that would follow the vendor to a new
    destination without having been typed again; {} when the save may go ahead.

    `stored` holds the names (values unused) of the secrets already saved, `entered` the ones
    typed in this change (blank ones left out). Pure: no database, no network.
    """
    changes = vendor_destination_changes(
        adapter_before=adapter_before,
        settings_before=settings_before,
        adapter_after=adapter_after,
        settings_after=settings_after,
    )
    # Only the secrets the adapter will send: a different adapter never reads the old one's.
    used = adapter_class(adapter_after).secret_fields if adapter_after in VENDOR_ADAPTERS else stored
    left_behind = sorted(name for name, value in stored.items() if value and name in used and not entered.get(name))
    if not changes or not left_behind:
        return {}
    moved = ", ".join(changes)
    return {
        name: (
            f"{moved} changed: re-enter {name} (a stored secret is only ever sent to the destination it was "
            "entered for), or keep the old destination."
        )
        for name in left_behind
    }
