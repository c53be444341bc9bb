"""In-memory state of one sandbox vendor instance: its faults, counters and inbox.

Everything here is touched only from the sandbox's single asyncio event loop, so no locks are
needed: a check-then-store sequence without an `await` in between is atomic.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Protocol

InstanceKind = Literal["smtp", "twilio", "postmark"]
INSTANCE_KINDS: tuple[str, ...] = ("smtp", "twilio", "postmark")
# Instances that speak HTTP (the others speak SMTP).
HTTP_KINDS = ("twilio", "postmark")
# What a receipt fault may say happened to a message (Twilio MessageStatus, Postmark RecordType).
RECEIPT_STATUSES = ("delivered", "undelivered", "failed", "bounced", "complained", "none")

# Upper bound for injected latency: a typo like 50000 should not wedge a test run for hours.
MAX_LATENCY_MS = 120_000


# A stored message may hold, under this key, a function that returns its remaining fields;
# `InstanceState.inbox` calls it once, on the first read (see sandbox/smtp.py).
COMPLETE_KEY = "_complete"


class FaultError(ValueError):
    """A fault update that cannot be applied (unknown key, wrong type, out of range)."""


async def sockets_closed() -> None:
    """Let the loop run the callbacks that close aborted transports' sockets (asyncio closes
    them on its next iteration), so an outage is in force when the control API answers: a
    client's pooled connection is already closed, never reset after it was reused."""
    for _ in range(2):
        await asyncio.sleep(0)


class Listener(Protocol):
    """The listening socket of an instance; closed during an outage, reopened afterwards."""

    async def open(self, port: int) -> int:
        """Listen on `port` (0 = any free port) and return the bound port."""
        ...

    async def close(self) -> None:
        """Stop listening and abort live connections, as a crashed vendor would."""
        ...


@dataclass(frozen=True)
class Faults:
    """Faults injected into every request an instance receives. All off by default."""

    latency_ms: float = 0.0
    # Store the message, then wait this long before answering (Twilio: creates; SMTP: DATA): with
    # a client timeout below it, the vendor holds a message whose answer the client never gets.
    answer_delay_ms: float = 0.0
    failure_rate: float = 0.0
    # HTTP status of injected Twilio failures. For SMTP only `>= 500` matters, together with
    # `smtp_permanent` (see sandbox.smtp.injected_failure_reply).
    error_status: int = 500
    smtp_permanent: bool = False
    outage: bool = False
    hang: bool = False
    # Delivery receipts (Twilio status callbacks, Postmark webhooks) of accepted messages: what
    # they report ("none": no receipt at all), with which carrier ErrorCode (Twilio), how long
    # after the answer, sent twice each, and/or the final one before the intermediate one.
    receipt_status: str = "delivered"
    receipt_error_code: int = 0
    receipt_delay_ms: float = 100.0
    receipt_duplicates: bool = False
    receipt_out_of_order: bool = False

    def merged(self, changes: Mapping[str, Any]) -> Faults:
        """Return a copy with `changes` applied (a partial update); raise FaultError if invalid."""
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise FaultError(f"unknown fault(s): {', '.join(unknown)}")
        clean = {name: _coerce_fault(name, value) for name, value in changes.items()}
        return replace(self, **clean)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce_fault(name: str, value: Any) -> Any:
    """Validate one fault value. bool is checked first because bool is a subclass of int."""
    if name == "receipt_status":
        if value not in RECEIPT_STATUSES:
            raise FaultError(f"receipt_status must be one of {', '.join(RECEIPT_STATUSES)}")
        return value
    if name == "receipt_error_code":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 99999:
            raise FaultError("receipt_error_code must be an integer between 0 and 99999")
        return value
    if name in ("smtp_permanent", "outage", "hang", "receipt_duplicates", "receipt_out_of_order"):
        if not isinstance(value, bool):
            raise FaultError(f"{name} must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"{name} must be a number")
    if name in ("latency_ms", "answer_delay_ms", "receipt_delay_ms") and not 0 <= value <= MAX_LATENCY_MS:
        raise FaultError(f"{name} must be between 0 and {MAX_LATENCY_MS}")
    if name == "failure_rate" and not 0 <= value <= 1:
        raise FaultError("failure_rate must be between 0 and 1")
    if name == "error_status":
        if int(value) != value or not 400 <= value <= 599:
            raise FaultError("error_status must be an HTTP error status (400..599)")
        return int(value)
    return float(value)


@dataclass
class Counters:
    """What an instance saw since the last reset; read by the benchmark and chaos suite."""

    requests: int = 0
    connections: int = 0  # SMTP sessions opened
    accepted: int = 0
    # Messages stored although their idempotency key had reached this instance before: what a
    # real vendor (which does not dedupe) would deliver twice.
    duplicates_received: int = 0
    # Repeats answered without storing: only instances configured to dedupe (`dedupe=True`).
    duplicates_suppressed: int = 0
    failures_injected: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class InstanceState:
    """One fake vendor (e.g. `sms-primary`): configuration, faults, counters and inbox."""

    name: str
    kind: InstanceKind
    host: str
    port: int
    faults: Faults = field(default_factory=Faults)
    counters: Counters = field(default_factory=Counters)
    messages: list[dict[str, Any]] = field(default_factory=list)
    listener: Listener | None = None
    # Real vendors do not dedupe (Twilio documents no idempotency for creating a message, SMTP
    # relays ignore Message-ID), so by default neither does the sandbox; True makes this
    # instance stand for a vendor that does: a repeated key gets the first answer, stored once.
    dedupe: bool = False
    # SMTP with STARTTLS: {"mode": "trusted" | "untrusted", "ca_file": path or None}.
    tls: dict[str, Any] | None = None
    # Postmark: where its delivery and bounce webhooks go, {"url": ..., "basic_auth": "user:pass"}.
    webhook: dict[str, Any] | None = None
    # Receipts posted to Beacon: {"message_id", "status", "http_status"}, in posting order.
    receipts_posted: list[dict[str, Any]] = field(default_factory=list)
    # Idempotency key (Twilio token header or SMTP Message-ID) -> what was answered the first time.
    _accepted_keys: dict[str, Any] = field(default_factory=dict)
    # Idempotency key -> how many times a message with it was stored (reached the vendor).
    _arrivals: dict[str, int] = field(default_factory=dict)
    # Set while no hang is active; hung requests wait on it and are dropped when it is set.
    _hang_over: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._hang_over.set()

    @property
    def url(self) -> str:
        scheme = "http" if self.kind in HTTP_KINDS else "smtp"
        return f"{scheme}://{self.host}:{self.port}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "host": self.host,
            "port": self.port,
            "url": self.url,
            "dedupe": self.dedupe,
            "faults": self.faults.as_dict(),
            "counters": self.counters.as_dict(),
            "message_count": len(self.messages),
            "tls": self.tls,
            "webhook": {"url": self.webhook["url"]} if self.webhook else None,
            "receipts_posted": list(self.receipts_posted),
        }

    # -- faults -------------------------------------------------------------------------------

    async def update_faults(self, changes: Mapping[str, Any]) -> None:
        """Merge `changes` into the faults and apply them (outage closes/reopens the socket).

        Raises FaultError before changing anything when `changes` is invalid.
        """
        await self._apply_faults(self.faults.merged(changes))

    async def clear_faults(self) -> None:
        await self._apply_faults(Faults())

    async def _apply_faults(self, new: Faults) -> None:
        old, self.faults = self.faults, new
        if new.hang and not old.hang:
            self._hang_over.clear()
        elif not new.hang:
            self._hang_over.set()
        if self.listener is not None and new.outage != old.outage:
            if new.outage:
                await self.listener.close()
            else:
                try:
                    # Same port as before: senders are configured with it.
                    self.port = await self.listener.open(self.port)
                except OSError:
                    # Still down (e.g. someone took the port): say so instead of lying.
                    self.faults = replace(new, outage=True)
                    raise

    @property
    def hanging(self) -> bool:
        return self.faults.hang

    async def wait_until_hang_over(self) -> None:
        await self._hang_over.wait()

    def release_hangs(self) -> None:
        """Let hung requests finish (they are dropped); used on shutdown."""
        self._hang_over.set()

    def roll_failure(self) -> bool:
        """Decide whether this request gets the injected error, and count it if so."""
        rate = self.faults.failure_rate
        if rate > 0 and random.random() < rate:
            self.counters.failures_injected += 1
            return True
        return False

    # -- inbox --------------------------------------------------------------------------------

    def previous_answer(self, key: str | None) -> Any | None:
        """What was answered when `key` was first accepted, or None if it is new or this
        instance does not dedupe.

        A hit is counted as a suppressed duplicate: the caller answers it without storing.
        """
        if not self.dedupe or not key or key not in self._accepted_keys:
            return None
        self.counters.duplicates_suppressed += 1
        return self._accepted_keys[key]

    def store(self, message: dict[str, Any], *, key: str | None, answer: Any) -> None:
        """Keep an accepted message. Its `copy` says how many times its key has now reached this
        instance (1 = the first time; a message without a key is always 1)."""
        message.setdefault("received_at", time.time())
        copy = self._arrivals.get(key, 0) + 1 if key else 1
        if key:
            self._arrivals[key] = copy
            self._accepted_keys.setdefault(key, answer)
        if copy > 1:
            self.counters.duplicates_received += 1
        message["copy"] = copy
        self.messages.append(message)
        self.counters.accepted += 1

    def arrivals(self) -> dict[str, int]:
        """Idempotency key (one per notification) -> how many messages with it were stored."""
        return dict(self._arrivals)

    def inbox(self, *, to: str | None = None) -> list[dict[str, Any]]:
        for message in self.messages:
            complete = message.pop(COMPLETE_KEY, None)
            if complete is not None:  # parts left to parse until someone reads them
                message.update(complete())
        if to is None:
            return list(self.messages)
        return [m for m in self.messages if _addressed_to(m, to)]

    def clear_messages(self) -> None:
        self.messages.clear()
        self.receipts_posted.clear()
        self._accepted_keys.clear()
        self._arrivals.clear()

    async def reset(self) -> None:
        """Empty the inbox, zero the counters and clear all faults."""
        self.clear_messages()
        self.webhook = None
        self.counters = Counters()
        await self.clear_faults()


def _addressed_to(message: Mapping[str, Any], to: str) -> bool:
    recipients = message.get("to")
    if isinstance(recipients, list):
        return any(r.lower() == to.lower() for r in recipients)
    return recipients == to
