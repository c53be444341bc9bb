"""A bounded open-loop load of checkouts: `rate` requests a second for `seconds`, each in its
own thread, whatever the server's speed (a slow server gets more requests in flight, not
fewer). Every request's status, body and latency is recorded; each checkout has its own
email address and phone number, so the sandbox inboxes can be counted per checkout.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A request that takes longer than this is recorded as status 0 (client timeout).
REQUEST_TIMEOUT_SECONDS = 30.0
# Hard cap on requests in flight, so a wedged server cannot exhaust the runner's threads.
MAX_IN_FLIGHT = 200

_serial = itertools.count(1)
_serial_lock = threading.Lock()


@dataclass
class Recipient:
    email: str
    phone: str


def recipient_new(tag: str) -> Recipient:
    """A unique email and a valid, unique E.164 UK mobile number (+447 and 9 digits)."""
    with _serial_lock:
        serial = next(_serial)
    return Recipient(email=f"chaos-{tag}-{serial}@shop.example", phone=f"+4479{serial:08d}")


def checkout_body(recipient: Recipient) -> dict[str, Any]:
    return {
        "customer": {"name": "Chaos Customer", "email": recipient.email, "phone": recipient.phone, "locale": "en"},
        "lines": [
            {"sku": "MUG", "name": "Mug", "quantity": 2, "unit_price": "7.50"},
            {"sku": "TEE", "name": "T-shirt", "quantity": 1, "unit_price": "19.90"},
        ],
        "currency": "EUR",
        "payment_token": "tok_ok",
    }


@dataclass
class Result:
    recipient: Recipient
    status: int
    latency: float
    started: float
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def checkout_post(base_url: str, api_key: str, body: dict[str, Any], *, idempotency_key: str | None = None) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    request = urllib.request.Request(  # noqa: S310 - loopback http, our own server
        f"{base_url}/api/v1/checkouts/", data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:  # noqa: S310
            return response.status, _json(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read()), dict(exc.headers)
    except OSError as exc:  # connection refused/reset, client timeout
        return 0, {"client_error": repr(exc)}, {}


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:500]


class LoadRun:
    """Open-loop load in a background thread; `join()` waits for every answer."""

    def __init__(self, *, base_url: str, api_key: str, tag: str, rate: float, seconds: float) -> None:
        self.base_url, self.api_key, self.tag = base_url, api_key, tag
        self.rate, self.seconds = rate, seconds
        self.results: list[Result] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._threads: list[threading.Thread] = []
        self._driver = threading.Thread(target=self._drive, name=f"load-{tag}", daemon=True)
        self.started = 0.0

    def start(self) -> LoadRun:
        self.started = time.monotonic()
        self._driver.start()
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _drive(self) -> None:
        total = int(self.rate * self.seconds)
        for n in range(total):
            delay = self.started + n / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._slots.acquire()
            thread = threading.Thread(target=self._one, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _one(self) -> None:
        try:
            recipient = recipient_new(self.tag)
            started = time.monotonic()
            status, body, headers = checkout_post(self.base_url, self.api_key, checkout_body(recipient))
            result = Result(recipient, status, time.monotonic() - started, started - self.started, body, headers)
            with self._lock:
                self.results.append(result)
        finally:
            self._slots.release()

    def join(self) -> list[Result]:
        self._driver.join(timeout=self.seconds + 60)
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_SECONDS + 5)
        return sorted(self.results, key=lambda r: r.started)


def run_concurrently(count: int, action: Callable[[], Any]) -> list[Any]:
    """Run `action` in `count` threads released at the same instant; returns their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def one(index: int) -> None:
        barrier.wait(timeout=30)
        results[index] = action()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT_SECONDS + 35)
    return results
