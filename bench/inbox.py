"""Counting at the vendors: each expected address's messages in the sandbox inboxes.

The sandbox dedupes nothing (as Twilio and SMTP relays), so an inbox holds every copy a customer
would get. With one address per checkout, an address's messages are its notification's copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

# Sandbox instances of each channel (primary and fallback), as bench/stack.py seeds them.
CHANNEL_INSTANCES = {"email": ("smtp-primary", "smtp-fallback"), "sms": ("sms-primary", "sms-fallback")}


@dataclass
class ChannelTally:
    expected: int = 0
    once: int = 0
    more_than_once: int = 0  # a customer got it twice or more
    missing: int = 0  # a committed order's notification that never arrived
    extra_copies: int = 0  # copies beyond the first, summed

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def inbox_tally(expected: Mapping[str, str], messages: Iterable[Mapping[str, Any]]) -> dict[str, ChannelTally]:
    """Per channel, how many of the `expected` addresses (address -> channel) got their message
    once, more than once, or never. Messages to other addresses are ignored; a message's `to`
    is a string (Twilio) or a list of envelope recipients (SMTP)."""
    copies = dict.fromkeys(expected, 0)
    for message in messages:
        recipients = message.get("to") or []
        for address in [recipients] if isinstance(recipients, str) else recipients:
            if address in copies:
                copies[address] += 1
    tallies: dict[str, ChannelTally] = {}
    for address, channel in expected.items():
        tally = tallies.setdefault(channel, ChannelTally())
        count = copies[address]
        tally.expected += 1
        tally.once += count == 1
        tally.more_than_once += count > 1
        tally.missing += count == 0
        tally.extra_copies += max(0, count - 1)
    return tallies


def sandbox_messages(control, channels: Iterable[str] = CHANNEL_INSTANCES) -> list[dict[str, Any]]:
    """Every message the sandbox holds for `channels`, primary and fallback instances."""
    return [message for channel in channels for name in CHANNEL_INSTANCES[channel]
            for message in control.messages(name)]
