"""Email over SMTP, through Django's email machinery (`EmailMultiAlternatives` + SMTP backend).

- Message-ID is `<{idempotency_key}@{domain}>` (the key is hashed if it is not a valid msg-id
  left part), stable across retries; the domain is `EMAIL_MESSAGE_ID_DOMAIN`, else the
  sender's. Real relays do NOT dedupe by Message-ID, so `supports_idempotency()` is False
  unless the `dedupes_by_message_id` setting says the relay does.
- EHLO names `SMTP_EHLO_HOSTNAME`, else the sender's domain (never whatever getfqdn() says).
- 8-bit bodies go with `BODY=8BITMIME` when the server advertises it, else quoted-printable
  (7-bit safe). Internal headers (the request id) are not sent to recipients: the request id
  stays in the logs.
- STARTTLS/SSL check the server's certificate against `SMTP_CA_BUNDLE`, else the system's CAs.
- Sessions are reused: after a successful send the open session (connected, EHLO, STARTTLS,
  AUTH done) goes back to a per-process pool, keyed by relay and login, and the next send to
  that relay skips the handshake. A session idle longer than `SMTP_SESSION_IDLE_SECONDS`
  (0: one session per send, QUIT after it) or used for `SESSION_MAX_MESSAGES` messages is
  closed; a session that saw any error is closed, never pooled.
- A pooled session the server has closed meanwhile (its idle timeout, a restart) fails at MAIL
  FROM, before anything was sent: that send goes again at once on a fresh session, within the
  same time budget. Nothing else is retried here.
- `timeout` is one budget for each send: every socket operation gets only what is left
  (`smtp_connection.py`, the connection itself).

Failures are classified by cause in `smtp_errors.py`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import smtplib
import threading
import time
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend
from django.core.validators import validate_email

from notifications.egress import Destination
from notifications.vendors.base import OutboundMessage, VendorAdapter, VendorResult, require
from notifications.vendors.smtp_connection import BudgetedSMTPBackend
from notifications.vendors.smtp_errors import smtp_error_classify

logger = logging.getLogger(__name__)

# RFC 5322 dot-atom-text: what may stand left of "@" in a Message-ID without quoting.
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
# A DNS name (RFC 1123 labels): what EHLO and a Message-ID's right part may be.
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def message_id_for(idempotency_key: str, domain: str) -> str:
    """The Message-ID of every attempt for `idempotency_key`: `<key@domain>`, or
    `<sha256@domain>` when the key has characters a Message-ID cannot carry."""
    left = idempotency_key if _DOT_ATOM.match(idempotency_key) else hashlib.sha256(idempotency_key.encode()).hexdigest()
    return f"<{left}@{domain}>"


def sender_domain(from_email: str) -> str:
    """The domain of a sender such as "Shop <no-reply@shop.example>" (lower-cased, IDNA)."""
    domain = parseaddr(from_email)[1].rpartition("@")[2].strip().lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


SESSION_MAX_MESSAGES = 100  # then QUIT and open a new session (relays cap messages per session)
SESSIONS_IDLE_PER_RELAY = 32  # idle sessions kept per relay; more are closed
QUIT_SECONDS = 0.5  # the budget of the QUIT that ends a session after its last message


class SessionPool:
    """Open SMTP sessions (`BudgetedSMTPBackend`s) waiting for their next message, per relay key.

    Thread-safe; a session is used by one send at a time (taken out, then put back). The
    newest idle session is reused first, so the oldest ones age out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple, list[tuple[float, BudgetedSMTPBackend]]] = {}

    def take(self, key: tuple, *, idle_seconds: float) -> BudgetedSMTPBackend | None:
        now = time.monotonic()
        stale: list[BudgetedSMTPBackend] = []
        found = None
        with self._lock:
            for other_key, sessions in list(self._idle.items()):
                fresh = [(since, backend) for since, backend in sessions if now - since <= idle_seconds]
                stale.extend(backend for since, backend in sessions if now - since > idle_seconds)
                if fresh:
                    self._idle[other_key] = fresh
                else:
                    del self._idle[other_key]
            sessions = self._idle.get(key)
            if sessions:
                found = sessions.pop()[1]
        for backend in stale:  # no QUIT: a send must not wait on sessions it is not using
            if backend.smtp is not None:
                backend.smtp.close()
        return found

    def give_back(self, key: tuple, backend: BudgetedSMTPBackend) -> None:
        smtp = backend.smtp
        if smtp is None or backend.connection is None or smtp.messages_sent >= SESSION_MAX_MESSAGES:
            _session_close(backend)
            return
        with self._lock:
            sessions = self._idle.setdefault(key, [])
            if len(sessions) < SESSIONS_IDLE_PER_RELAY:
                sessions.append((time.monotonic(), backend))
                return
        _session_close(backend)

    def close_all(self) -> None:
        with self._lock:
            sessions = [backend for idle in self._idle.values() for _, backend in idle]
            self._idle.clear()
        for backend in sessions:
            _session_close(backend)


smtp_sessions = SessionPool()


class SmtpAdapter(VendorAdapter):
    """Email through an SMTP relay, reusing open sessions (see the module's notes)."""

    key = "smtp"
    channel = "email"
    label = "SMTP"
    settings_fields = {
        "host": "SMTP server host name.",
        "port": "SMTP port (587 with use_tls, 465 with use_ssl, 25 plain).",
        "use_tls": "Upgrade the connection with STARTTLS (true/false).",
        "use_ssl": "Connect over implicit TLS (true/false); exclusive with use_tls.",
        "from_email": 'Sender, e.g. "Beacon <no-reply@example.com>".',
        "dedupes_by_message_id": "The relay is known to drop a second message with the same Message-ID (few do; the sandbox only with --dedupe).",
    }
    secret_fields = {"username": "SMTP login (leave empty for no authentication).", "password": "SMTP password."}
    # TLS flags too: turning TLS off would send the same password in clear text.
    destination_fields = ("host", "port", "use_tls", "use_ssl")

    @classmethod
    def destination(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "host": str(settings.get("host") or "").strip().lower(),
            "port": settings.get("port"),
            "use_tls": settings.get("use_tls") is True,
            "use_ssl": settings.get("use_ssl") is True,
        }

    @classmethod
    def validate_config(cls, settings: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
        errors: dict[str, str] = {}
        require(settings, ["host", "port", "from_email"], errors)
        port = settings.get("port")
        if "port" not in errors and not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
            errors["port"] = "must be an integer between 1 and 65535"
        for flag in ("use_tls", "use_ssl", "dedupes_by_message_id"):
            if not isinstance(settings.get(flag, False), bool):
                errors[flag] = "must be true or false"
        if settings.get("use_tls") is True and settings.get("use_ssl") is True:
            errors["use_ssl"] = "use_tls and use_ssl are mutually exclusive"
        if bool(secrets.get("username")) != bool(secrets.get("password")):
            errors["username"] = "username and password go together"
        if "host" not in errors and not _is_host(str(settings["host"])):
            errors["host"] = "must be a host name or IP address, without scheme or port"
        if "from_email" not in errors:
            try:
                validate_email(parseaddr(str(settings["from_email"]))[1])
            except ValidationError:
                errors["from_email"] = 'must be an email address, e.g. "Shop <no-reply@shop.example>"'
        return errors

    @classmethod
    def destinations(cls, settings: Mapping[str, Any]) -> dict[str, Destination]:
        port = settings.get("port")
        return {"host": Destination(scheme="smtp", host=str(settings.get("host") or ""), port=port if isinstance(port, int) else 25)}

    def supports_idempotency(self) -> bool:
        return self.settings.get("dedupes_by_message_id") is True

    def send(self, message: OutboundMessage) -> VendorResult:
        """Send one email, on a pooled session when one is open; return its Message-ID."""
        self.ensure_configured(message)
        email = self._build(message)
        idle_seconds = float(django_settings.SMTP_SESSION_IDLE_SECONDS)
        key = self._session_key()
        deadline = time.monotonic() + self.timeout
        backend = smtp_sessions.take(key, idle_seconds=idle_seconds) if idle_seconds > 0 else None
        if backend is not None:
            try:
                self._send_on(backend, email, timeout=self.timeout)
            except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                # Most likely closed by the server while it sat idle. Before the body went
                # out nothing was accepted: send again on a fresh session. After it, the
                # outcome is unknown and the message is never sent again here.
                if backend.smtp is not None and backend.smtp.body_sent:
                    _close_quietly(backend)
                    raise smtp_error_classify(exc, label=self.label, recipient=message.to, body_sent=True) from exc
                _close_quietly(backend)
                backend = None
            except (smtplib.SMTPException, OSError, ValueError) as exc:
                _close_quietly(backend)
                raise smtp_error_classify(
                    exc, label=self.label, recipient=message.to, body_sent=_body_sent(backend)
                ) from exc
        if backend is None:
            backend = self._backend(timeout=max(deadline - time.monotonic(), 0.001))
            try:
                self._send_on(backend, email, timeout=None)
            except (smtplib.SMTPException, OSError, ValueError) as exc:
                _close_quietly(backend)
                raise smtp_error_classify(
                    exc, label=self.label, recipient=message.to, body_sent=_body_sent(backend)
                ) from exc
        if idle_seconds > 0:
            smtp_sessions.give_back(key, backend)
        else:
            _close_quietly(backend)
        return VendorResult(message_id=email.extra_headers["Message-ID"])

    def _session_key(self) -> tuple:
        """Sessions are shared only between sends to the same relay with the same login."""
        password = self._secrets.get("password", "")
        return (
            str(self.settings["host"]),
            int(self.settings["port"]),
            self.settings.get("use_tls") is True,
            self.settings.get("use_ssl") is True,
            self._secrets.get("username", ""),
            hashlib.sha256(password.encode()).hexdigest() if password else "",
        )

    def _backend(self, *, timeout: float) -> BudgetedSMTPBackend:
        backend: BudgetedSMTPBackend = get_connection(
            f"{BudgetedSMTPBackend.__module__}.BudgetedSMTPBackend",
            fail_silently=False,
            host=str(self.settings["host"]),
            port=int(self.settings["port"]),
            # "" rather than None: None would fall back to the global EMAIL_* settings.
            username=self._secrets.get("username", ""),
            password=self._secrets.get("password", ""),
            use_tls=self.settings.get("use_tls") is True,
            use_ssl=self.settings.get("use_ssl") is True,
            timeout=timeout,
        )
        backend.ehlo_hostname = str(django_settings.SMTP_EHLO_HOSTNAME or "") or self._sender_domain()
        return backend

    def _sender_domain(self) -> str:
        return sender_domain(str(self.settings["from_email"]))

    @staticmethod
    def _send_on(backend: BudgetedSMTPBackend, email: EmailMultiAlternatives, *, timeout: float | None) -> None:
        """One message on `backend`: a pooled session (`timeout`: its new budget) or a new one
        (`timeout` None: the budget it was opened with)."""
        if backend.smtp is not None and timeout is not None:
            backend.smtp.budget_start(timeout)
        backend.open()
        backend.send_messages([email])
        assert backend.smtp is not None
        backend.smtp.messages_sent += 1

    def _build(self, message: OutboundMessage) -> EmailMultiAlternatives:
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=str(self.settings["from_email"]),
            to=[message.to],
            # No X-Request-ID: internal ids do not go to recipients (it is in the attempt's log line).
            headers={"Message-ID": message_id_for(message.idempotency_key, self._message_id_domain()), **dict(message.headers)},
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return email

    def _message_id_domain(self) -> str:
        return str(django_settings.EMAIL_MESSAGE_ID_DOMAIN or "") or self._sender_domain()


def _is_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return bool(_DOMAIN.match(value))
    return True


def _body_sent(backend: BudgetedSMTPBackend) -> bool:
    return backend.smtp is not None and backend.smtp.body_sent


def _session_close(backend: BudgetedSMTPBackend) -> None:
    """QUIT a session that finished its work (message cap, pool full): a short budget of its own."""
    if backend.smtp is not None:
        backend.smtp.budget_start(QUIT_SECONDS)
    _close_quietly(backend)


def _close_quietly(backend: EmailBackend) -> None:
    """QUIT and close; a failure here must not turn a sent message into an error."""
    smtp = getattr(backend, "smtp", None)
    try:
        backend.close()
    except (smtplib.SMTPException, OSError):
        logger.debug("SMTP close failed", exc_info=True)
    finally:
        if smtp is not None:
            smtp.close()  # type: ignore[attr-defined]
