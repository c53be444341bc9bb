"""A tiny stdlib client of the sandbox control API (see sandbox.control_api for the routes).

Imports nothing from Django or the rest of Beacon, so tests, the benchmark and the chaos suite
can all use it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

# Control calls are loopback round trips; anything slower than this is a wedged sandbox.
DEFAULT_TIMEOUT_SECONDS = 5.0
# How often wait_for_messages polls the inbox.
POLL_INTERVAL_SECONDS = 0.05


class SandboxControlError(RuntimeError):
    """The control API answered with an error status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"sandbox control API answered {status}: {body}")
        self.status = status
        self.body = body


class SandboxControl:
    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the URL is the sandbox's, http only
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload: Any = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            raise SandboxControlError(exc.code, payload) from None

    def healthy(self) -> bool:
        try:
            return self._call("GET", "/healthz").get("status") == "ok"
        except (OSError, SandboxControlError):
            return False

    def instances(self) -> list[dict[str, Any]]:
        """Each instance: name, kind, host, port, url, faults, counters, message_count."""
        return self._call("GET", "/instances")["instances"]

    def instance(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/instances/{_quote(name)}")

    def messages(self, name: str, to: str | None = None) -> list[dict[str, Any]]:
        query = "?" + urllib.parse.urlencode({"to": to}) if to is not None else ""
        return self._call("GET", f"/instances/{_quote(name)}/messages{query}")["messages"]

    def arrivals(self, name: str) -> dict[str, int]:
        """Idempotency key (one per notification) -> how many times it reached `name`."""
        return self._call("GET", f"/instances/{_quote(name)}/arrivals")["keys"]

    def clear(self, name: str) -> None:
        """Empty the inbox of `name` (and forget the idempotency keys it accepted)."""
        self._call("DELETE", f"/instances/{_quote(name)}/messages")

    def set_faults(self, name: str, **faults: Any) -> dict[str, Any]:
        """Merge `faults` into the instance's faults; returns the faults now in effect."""
        return self._call("PUT", f"/instances/{_quote(name)}/faults", faults)

    def clear_faults(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/instances/{_quote(name)}/faults")

    def inbound_sms(self, name: str, *, from_: str, body: str, url: str, **extra: str) -> dict[str, Any]:
        """Have instance `name` send an inbound SMS to the webhook at `url`, signed as Twilio
        signs it; returns {"status", "body"} of the webhook's answer."""
        return self._call("POST", f"/instances/{_quote(name)}/inbound", {"from": from_, "body": body, "url": url, **extra})

    def set_webhook(self, name: str, *, url: str | None, basic_auth: str | None = None) -> dict[str, Any]:
        """Where postmark instance `name` posts its delivery and bounce webhooks (None: nowhere)."""
        body = {"url": url, "basic_auth": basic_auth} if url else {}
        return self._call("PUT", f"/instances/{_quote(name)}/webhook", body)

    def receipts_posted(self, name: str) -> list[dict[str, Any]]:
        """The receipts `name` posted: [{"message_id", "status", "http_status"}], in order."""
        return self.instance(name)["receipts_posted"]

    def reset(self) -> None:
        """Empty every inbox, zero every counter and clear every fault."""
        self._call("POST", "/reset")

    def wait_for_messages(
        self, name: str, count: int, timeout: float = 10.0, *, to: str | None = None
    ) -> list[dict[str, Any]]:
        """Poll until the inbox of `name` holds at least `count` messages; return them.

        Raises TimeoutError (saying how many arrived) if that does not happen within `timeout`.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(name, to=to)
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{name}: expected {count} message(s), got {len(found)} after {timeout}s")
            time.sleep(POLL_INTERVAL_SECONDS)


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")
