"""The adapter interface: the message, the result, the error and the adapter base class.

Contract shared by every adapter:

1. `send()` makes ONE attempt, returns a `VendorResult` when the vendor accepted the message and
   raises `VendorError` otherwise. It never retries and never falls back.
2. It returns or raises within roughly `timeout` seconds (no call without a timeout).
3. A failure is classified by its cause: `permanent` (the recipient or the message is at
   fault: retrying anywhere cannot help), `misconfigured` (the vendor refused because of how
   it is configured at Beacon or at the vendor: bad credentials, a sender or service id it
   does not know, a callback URL it refuses; another vendor may be configured right),
   `outcome_unknown` (the request went out but no answer came back: the vendor may have
   accepted it) or plain transient (definitely not accepted; retrying later or elsewhere is
   safe). Everything but `permanent` counts against the vendor and fails over.
4. Secrets never appear in exception messages, log lines or reprs; recipients appear masked.
5. `accepted_lookup()` asks the vendor which messages it already holds for this message, for a
   vendor that can be asked (Twilio's message list); the others return None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar

from foundation.masking import address_mask
from notifications.egress import Destination


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered message for one recipient. Rendered once, before a vendor is chosen."""

    channel: str  # "email" | "sms"
    to: str  # email address or E.164 number
    subject: str  # "" for sms
    text: str
    html: str  # "" when none
    idempotency_key: str  # stable per notification: the same on every retry and every vendor
    request_id: str = "-"  # sent to the vendor as X-Request-ID where the protocol allows
    headers: tuple[tuple[str, str], ...] = ()  # email only: extra headers (List-Unsubscribe)


@dataclass(frozen=True)
class VendorResult:
    """The vendor accepted the message."""

    message_id: str  # the vendor's id (Twilio sid, SMTP Message-ID, ...)
    status_code: int | None = None


class VendorError(Exception):
    """One attempt failed.

    - `permanent`: the recipient or the message is at fault, so no vendor can deliver it
      (invalid or unsubscribed number, bounced address, body too long).
    - `misconfigured`: the vendor's own configuration is at fault (credentials rejected,
      unknown sender or messaging service, refused callback URL, TLS/AUTH required): not
      accepted; another vendor may deliver it, and the vendor's breaker counts it.
    - `outcome_unknown`: the request was sent but no answer came (read timeout, reset while
      waiting): the vendor MAY have accepted it. Never permanent.
    - neither: transient, and the vendor definitely did not accept it (connection refused,
      connect timeout, 429, 5xx).

    The message is safe to log and store: it names no secret and no full recipient.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status_code: int | None = None,
        vendor_code: str | None = None,
        outcome_unknown: bool = False,
        misconfigured: bool = False,
    ) -> None:
        if sum((permanent, outcome_unknown, misconfigured)) > 1:
            raise ValueError("a VendorError is at most one of permanent, misconfigured, of unknown outcome")
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        self.vendor_code = vendor_code
        self.outcome_unknown = outcome_unknown
        self.misconfigured = misconfigured

    @property
    def kind(self) -> str:
        """Short label for logs: "permanent", "misconfigured", "unknown" or "transient"."""
        if self.permanent:
            return "permanent"
        if self.misconfigured:
            return "misconfigured"
        return "unknown" if self.outcome_unknown else "transient"

    def __repr__(self) -> str:
        return (
            f"VendorError({self.message!r}, kind={self.kind}, status_code={self.status_code}, "
            f"vendor_code={self.vendor_code!r})"
        )


class VendorAdapter(ABC):
    """Base class of all adapters. Subclasses set the class attributes and implement `send`.

    Instances are cheap, hold no connection of their own and may be built per send. The
    constructor never raises on bad configuration; `send` raises a `misconfigured` `VendorError`
    naming the faulty fields instead (see `ensure_configured`).
    """

    key: ClassVar[str]  # registry key, stored in Vendor.adapter
    channel: ClassVar[str]  # "email" | "sms"
    label: ClassVar[str]  # human name for the admin
    settings_fields: ClassVar[dict[str, str]] = {}  # non-secret setting name -> help text
    secret_fields: ClassVar[dict[str, str]] = {}  # secret name -> help text
    # Settings that say where the secrets are sent (host, port, URL, account): changing any of
    # them without re-entering the secrets is refused (notifications/vendor_secrets.py).
    destination_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, settings: Mapping[str, Any], secrets: Mapping[str, str], timeout: float) -> None:
        self.settings: Mapping[str, Any] = MappingProxyType(dict(settings))
        # Kept private and out of __repr__; adapters read them only to authenticate or sign.
        self._secrets: Mapping[str, str] = MappingProxyType(dict(secrets))
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} key={self.key} timeout={self.timeout}>"

    @classmethod
    def validate_config(cls, settings: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
        """Return {field: error} for a configuration this adapter cannot work with; {} when fine.

        Pure (no network). Error texts never repeat a secret's value.
        """
        return {}

    @classmethod
    def destination(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The destination the secrets are entered for: `destination_fields` from `settings`,
        normalised so that spelling a default out is not a change."""
        return {name: settings.get(name) for name in cls.destination_fields}

    @classmethod
    def destinations(cls, settings: Mapping[str, Any]) -> dict[str, Destination]:
        """Setting name -> where the adapter connects, for the egress policy's check on save
        (notifications/egress.py). Raises EgressRefused for a destination that cannot be parsed."""
        return {}

    @abstractmethod
    def send(self, message: OutboundMessage) -> VendorResult:
        """Make one delivery attempt; return the vendor's id or raise a classified `VendorError`."""

    def supports_idempotency(self) -> bool:
        """True when resending with the same `idempotency_key` cannot deliver twice at this vendor:
        only for a vendor that documents deduplication by that key (not Twilio, not SMTP relays).
        The send flow does not flag a delivery after an unknown outcome at the same such vendor."""
        return False

    def accepted_lookup(self, message: OutboundMessage, *, since: datetime) -> list[str] | None:
        """The vendor's ids of the messages it holds that match `message` (same recipient, same
        rendered text) and arrived at or after `since`; None when this vendor cannot be asked.

        Read-only, safe to call any number of times. Raises `VendorError` when the vendor could
        not answer (the caller then knows nothing more than before).
        """
        return None

    # Helpers for subclasses.

    def ensure_configured(self, message: OutboundMessage) -> None:
        """Raise a `misconfigured` `VendorError` if the configuration or the message's channel is
        wrong: the vendor row is at fault, not the message, so another vendor may send it."""
        if self.timeout <= 0:
            raise VendorError(f"{self.label}: timeout must be positive", misconfigured=True)
        if message.channel != self.channel:
            raise VendorError(
                f"{self.label}: cannot send a {message.channel!r} message (adapter channel is {self.channel!r})",
                misconfigured=True,
            )
        errors = self.validate_config(self.settings, self._secrets)
        if errors:
            fields = ", ".join(f"{name}: {error}" for name, error in sorted(errors.items()))
            raise VendorError(f"{self.label}: misconfigured ({fields})", misconfigured=True)


def require(values: Mapping[str, Any], names: list[str] | tuple[str, ...], errors: dict[str, str]) -> None:
    """Add "required" to `errors` for every name whose value in `values` is missing or blank."""
    for name in names:
        value = values.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors[name] = "required"


def scrub(text: str, *values: str) -> str:
    """`text` with every non-empty value in `values` replaced by its masked form (vendor replies
    often echo the recipient)."""
    for value in values:
        if value:
            text = text.replace(value, address_mask(value))
    return text
