"""What every scenario uses: the load, inbox counting (the source of truth), checks, results."""

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
class ScenarioResult:
    number: int
    name: str
    checkouts: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    expected: int = 0
    delivered: int = 0
    duplicated: int = 0
    # Duplicates Beacon knew about: flagged possible_duplicate by the unknown-outcome policy.
    flagged: int = 0
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
        return InboxCount(len(wanted), delivered, duplicated, where, missing)

    def wait_delivered(
        self, recipients: list[Recipient], *, timeout: float, channels: tuple[str, ...] = ("email", "sms")
    ) -> InboxCount:
        """Poll the inboxes until every expected message arrived (or `timeout`), then settle."""
        deadline = time.monotonic() + timeout
        count = self.inbox(recipients, channels)
        while count.missing and time.monotonic() < deadline:
            time.sleep(0.5)
            count = self.inbox(recipients, channels)
        time.sleep(SETTLE_SECONDS)
        return self.inbox(recipients, channels)


def record_inbox(result: ScenarioResult, count: InboxCount, *, allow_flagged_duplicates: bool = False) -> None:
    """Add the inbox counts to the result and check them: all delivered, none twice (or, where
    unknown outcomes are part of the scenario, none twice without Beacon flagging it)."""
    from notifications.models import Notification

    result.expected += count.expected
    result.delivered += count.delivered
    result.duplicated += count.duplicated
    result.check(
        "every notification delivered",
        not count.missing,
        f"{count.delivered}/{count.expected}" + (f"; missing e.g. {_mask(count.missing[:3])}" if count.missing else ""),
    )
    duplicates = {address for address, found in count.where.items() if len(found) > 1}
    flagged = set(
        Notification.objects.filter(recipient__in=duplicates, possible_duplicate=True).values_list("recipient", flat=True)
    )
    result.flagged += len(flagged)
    if not allow_flagged_duplicates:
        result.check("none delivered twice", not duplicates, f"{len(duplicates)} duplicated")
        return
    result.check(
        "no duplicate Beacon did not know about (each is flagged possible_duplicate)",
        duplicates <= flagged,
        f"{len(duplicates)} duplicated, {len(duplicates - flagged)} unflagged",
    )
    if duplicates:
        result.note(
            f"{len(duplicates)} message(s) reached two vendors: a call timed out, Beacon failed over at once "
            "(policy: delivery first) and the first vendor had accepted it after all; each is flagged possible_duplicate"
        )


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
