"""What every scenario uses: the load, inbox counting (the source of truth), checks, results.

Counting happens at the vendors: the sandbox dedupes nothing (as Twilio and SMTP relays), so
its inboxes hold every copy a customer would get. Each checkout has its own email address and
phone number, so the copies of one notification are the messages to its address.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from chaos.load import LoadRun, Recipient, Result
from chaos.stack import ChaosStack

CHANNEL_INSTANCES = {"email": ("smtp-primary", "smtp-fallback"), "sms": ("sms-primary", "sms-fallback")}
# After the last expected message arrives, wait this long for late duplicates before counting.
SETTLE_SECONDS = 4.0


@dataclass
class Check:
    what: str
    ok: bool
    detail: str = ""


@dataclass
class ChannelCount:
    """One channel's notifications in a scenario, counted at the vendors."""

    expected: int = 0
    once: int = 0
    # Delivered more than once, and Beacon flagged it possible_duplicate: a known duplicate.
    more_flagged: int = 0
    # Delivered more than once without the flag: a duplicate nobody knows about (fails the scenario).
    more_unflagged: int = 0

    @property
    def delivered(self) -> int:
        return self.once + self.more_flagged + self.more_unflagged


@dataclass
class ScenarioResult:
    number: int
    name: str
    checkouts: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    channels: dict[str, ChannelCount] = field(default_factory=dict)
    max_latency_ms: float = 0.0
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(what, bool(ok), detail))
        mark = "ok  " if ok else "FAIL"
        print(f"    [{mark}] {what}{' — ' + detail if detail else ''}", flush=True)
        return bool(ok)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"    note: {text}", flush=True)

    def record_load(self, results: list[Result]) -> None:
        self.checkouts += len(results)
        statuses = Counter(self.statuses)
        statuses.update(str(r.status) for r in results)
        self.statuses = dict(sorted(statuses.items()))
        if results:
            self.max_latency_ms = max(self.max_latency_ms, max(r.latency for r in results) * 1000)

    @property
    def expected(self) -> int:
        return sum(c.expected for c in self.channels.values())

    @property
    def delivered(self) -> int:
        return sum(c.delivered for c in self.channels.values())

    def channel(self, name: str) -> ChannelCount:
        return self.channels.setdefault(name, ChannelCount())

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


@dataclass
class InboxCount:
    expected: int
    delivered: int
    duplicated: int
    # recipient address -> instances that hold a message for it (one entry per message)
    where: dict[str, list[str]]
    missing: list[str]
    # recipient address -> its channel
    channel_of: dict[str, str] = field(default_factory=dict)


class Chaos:
    """A scenario's handle on the stack."""

    def __init__(self, stack: ChaosStack, api_key: str) -> None:
        self.stack = stack
        self.api_key = api_key

    def load(self, tag: str, *, rate: float, seconds: float) -> LoadRun:
        return LoadRun(base_url=self.stack.base_url, api_key=self.api_key, tag=tag, rate=rate, seconds=seconds).start()

    def inbox(self, recipients: list[Recipient], channels: tuple[str, ...] = ("email", "sms")) -> InboxCount:
        """Count, from the sandbox inboxes, each recipient's messages on each channel."""
        wanted = {}
        for recipient in recipients:
            if "email" in channels:
                wanted[recipient.email] = "email"
            if "sms" in channels:
                wanted[recipient.phone] = "sms"
        where: dict[str, list[str]] = {address: [] for address in wanted}
        for channel in channels:
            for instance in CHANNEL_INSTANCES[channel]:
                for message in self.stack.sandbox.messages(instance):
                    addresses = message["to"] if isinstance(message["to"], list) else [message["to"]]
                    for address in addresses:
                        if address in where:
                            where[address].append(instance)
        delivered = sum(1 for found in where.values() if found)
        duplicated = sum(1 for found in where.values() if len(found) > 1)
        missing = [address for address, found in where.items() if not found]
        return InboxCount(len(wanted), delivered, duplicated, where, missing, wanted)

    def wait_delivered(
        self, recipients: list[Recipient], *, timeout: float, channels: tuple[str, ...] = ("email", "sms")
    ) -> InboxCount:
        """Poll the inboxes until every expected message arrived (or `timeout`), then settle."""
        deadline = time.monotonic() + timeout
        count = self._inbox_read(recipients, channels, deadline)
        while count.missing and time.monotonic() < deadline:
            time.sleep(0.5)
            count = self._inbox_read(recipients, channels, deadline)
        time.sleep(SETTLE_SECONDS)
        return self._inbox_read(recipients, channels, time.monotonic() + SETTLE_SECONDS * 4)

    def _inbox_read(self, recipients: list[Recipient], channels: tuple[str, ...], deadline: float) -> InboxCount:
        """`inbox`, read again when the sandbox's control API is too busy to answer in time (the
        sandbox shares the machine with the load it counts); the last failure is raised."""
        while True:
            try:
                return self.inbox(recipients, channels)
            except OSError:  # a read timeout or a refused connection of the control API
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)


def record_inbox(result: ScenarioResult, count: InboxCount) -> None:
    """Add the inbox counts to the result, per channel, and check them: every notification
    delivered, and none delivered more than once without Beacon flagging it `possible_duplicate`
    (a flagged one is a known outcome of the delivery-first policy, counted and noted)."""
    from notifications.models import Notification

    result.check(
        "every notification delivered",
        not count.missing,
        f"{count.delivered}/{count.expected}" + (f"; missing e.g. {_mask(count.missing[:3])}" if count.missing else ""),
    )
    unflagged_total = 0
    for channel in sorted(set(count.channel_of.values())):
        addresses = [a for a, c in count.channel_of.items() if c == channel]
        copies = {a: len(count.where[a]) for a in addresses}
        duplicates = {a for a, n in copies.items() if n > 1}
        flagged = set(
            Notification.objects.filter(channel=channel, recipient__in=duplicates, possible_duplicate=True)
            .values_list("recipient", flat=True)
        )
        tally = result.channel(channel)
        tally.expected += len(addresses)
        tally.once += sum(1 for n in copies.values() if n == 1)
        tally.more_flagged += len(duplicates & flagged)
        tally.more_unflagged += len(duplicates - flagged)
        unflagged_total += len(duplicates - flagged)
        if duplicates & flagged:
            result.note(f"{channel}: {len(duplicates & flagged)} delivered more than once, each flagged "
                        "possible_duplicate (an unknown outcome, then a delivery)")
    result.check("no message delivered more than once without Beacon flagging it", unflagged_total == 0,
                 f"{unflagged_total} unflagged")


def successful(results: list[Result]) -> list[Recipient]:
    return [r.recipient for r in results if r.status == 201]


def _mask(addresses: list[str]) -> str:
    return ", ".join(a[:10] + "…" for a in addresses)


def committed(recipients: list[Recipient]) -> list[Recipient]:
    """The recipients whose checkout committed an order (whatever the client was answered)."""
    from checkout.models import Order

    emails = set(Order.objects.filter(customer_email__in=[r.email for r in recipients]).values_list("customer_email", flat=True))
    return [r for r in recipients if r.email in emails]


def all_recipients(results: list[Result]) -> list[Recipient]:
    return [r.recipient for r in results]
