"""Email over SMTP, through Django's email machinery (`EmailMultiAlternatives` + SMTP backend).

- Message-ID is `<{idempotency_key}@beacon>` (the key is hashed if it is not a valid msg-id
  left part), stable across retries. The sandbox SMTP server dedupes by Message-ID; real relays
  do NOT, so `supports_idempotency()` is False unless the `dedupes_by_message_id` setting says
  the relay does. `X-Request-ID` is sent as a header.
- Sessions are reused: after a successful send the open session (connected, EHLO, STARTTLS,
  AUTH done) goes back to a per-process pool, keyed by relay and login, and the next send to
  that relay skips the handshake. A session idle longer than `SMTP_SESSION_IDLE_SECONDS`
  (0: one session per send, QUIT after it) or used for `SESSION_MAX_MESSAGES` messages is
  closed; a session that saw any error is closed, never pooled.
- A pooled session the server has closed meanwhile (its idle timeout, a restart) fails at MAIL
  FROM, before anything was sent: that send goes again at once on a fresh session, within the
  same time budget. Nothing else is retried here.
- `timeout` is one budget for each send: every socket operation gets only what is left.

Failure classification:

| failure                                              | VendorError                   |
|------------------------------------------------------|-------------------------------|
| authentication rejected                              | permanent (configuration)     |
| recipient / sender / data refused with 5xx           | permanent                     |
| the same with 4xx                                    | transient                     |
| invalid address or header                            | permanent                     |
| STARTTLS/AUTH not supported by the server            | permanent (configuration)     |
| refused, connect timeout, timeout or drop before the |                               |
| message body was sent                                | transient (not accepted)      |
| timeout or drop after the body was sent              | outcome_unknown               |
"""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend

from notifications.egress import Destination, EgressRefused, egress_resolve
from notifications.vendors.base import OutboundMessage, VendorAdapter, VendorError, VendorResult, require, scrub

logger = logging.getLogger(__name__)

MESSAGE_ID_DOMAIN = "beacon"
# RFC 5322 dot-atom-text: what may stand left of "@" in a Message-ID without quoting.
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def message_id_for(idempotency_key: str) -> str:
    """The Message-ID of every attempt for `idempotency_key`: `<key@beacon>`, or `<sha256@beacon>`
    when the key has characters a Message-ID cannot carry."""
    left = idempotency_key if _DOT_ATOM.match(idempotency_key) else hashlib.sha256(idempotency_key.encode()).hexdigest()
    return f"<{left}@{MESSAGE_ID_DOMAIN}>"


class _BudgetedSMTPMixin:
    """An `smtplib.SMTP` whose socket operations share one time budget, and which notes when the
    message body has been handed to the socket (after the server's 354 answer to DATA): from
    then on the server may accept the message even if its final answer never arrives."""

    sock: Any

    def __init__(self, *args: Any, timeout: float, **kwargs: Any) -> None:
        self.messages_sent = 0
        self.budget_start(timeout)
        super().__init__(*args, timeout=timeout, **kwargs)  # type: ignore[call-arg]

    def budget_start(self, timeout: float) -> None:
        """A new send on this session: a fresh time budget, no body handed over yet."""
        self.deadline = time.monotonic() + timeout
        self.body_sent = False
        self._expecting_body = False

    def _get_socket(self, host: str, port: int, timeout: float) -> Any:
        """Connect to an address the egress policy has just checked (never a second lookup of
        `host`, so a DNS answer that changes in between cannot redirect us); smtplib keeps
        `self._host` for TLS, so certificates are still checked against the host name."""
        last_error: OSError | None = None
        for _, address in egress_resolve(host, port):
            try:
                return super()._get_socket(address, port, timeout)  # type: ignore[misc]
            except OSError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    def _shrink_timeout(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("SMTP time budget exhausted")
        if self.sock is not None:
            self.sock.settimeout(remaining)

    def send(self, s: str | bytes) -> None:
        self._shrink_timeout()
        super().send(s)  # type: ignore[misc]
        if self._expecting_body:
            self.body_sent, self._expecting_body = True, False

    def getreply(self) -> tuple[int, bytes]:
        self._shrink_timeout()
        code, text = super().getreply()  # type: ignore[misc]
        self._expecting_body = code == 354  # 354 only ever answers DATA: the body goes next
        return code, text


class _BudgetedSMTP(_BudgetedSMTPMixin, smtplib.SMTP):
    pass


class _BudgetedSMTPSSL(_BudgetedSMTPMixin, smtplib.SMTP_SSL):
    pass


class BudgetedSMTPBackend(EmailBackend):
    """Django's SMTP backend on the budgeted connection classes; keeps the last one in `.smtp`."""

    smtp: _BudgetedSMTPMixin | None = None

    @property
    def connection_class(self) -> Callable[..., smtplib.SMTP]:
        cls = _BudgetedSMTPSSL if self.use_ssl else _BudgetedSMTP

        def connect(*args: Any, **kwargs: Any) -> smtplib.SMTP:
            self.smtp = cls(*args, **kwargs)
            return self.smtp

        return connect


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
        "dedupes_by_message_id": "The relay drops a second message with the same Message-ID (sandbox only).",
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
                    raise self._classify(exc, message, body_sent=True) from exc
                _close_quietly(backend)
                backend = None
            except (smtplib.SMTPException, OSError, ValueError) as exc:
                _close_quietly(backend)
                raise self._classify(exc, message, body_sent=_body_sent(backend)) from exc
        if backend is None:
            backend = self._backend(timeout=max(deadline - time.monotonic(), 0.001))
            try:
                self._send_on(backend, email, timeout=None)
            except (smtplib.SMTPException, OSError, ValueError) as exc:
                _close_quietly(backend)
                raise self._classify(exc, message, body_sent=_body_sent(backend)) from exc
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
        return get_connection(
            f"{__name__}.BudgetedSMTPBackend",
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
            headers={"Message-ID": message_id_for(message.idempotency_key), "X-Request-ID": message.request_id},
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        return email

    def _classify(self, exc: Exception, message: OutboundMessage, *, body_sent: bool) -> VendorError:
        """Map one exception of an SMTP session to a `VendorError` (see the module's table)."""
        label = self.label
        if isinstance(exc, EgressRefused):  # before ValueError: the destination, not the message
            return VendorError(f"{label}: egress policy refused the connection ({exc})")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return VendorError(
                f"{label}: authentication failed ({exc.smtp_code}): username/password rejected (configuration fault)",
                permanent=True,
                status_code=exc.smtp_code,
            )
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            replies = list(exc.recipients.values()) or [(0, b"")]
            code, text = replies[0]
            return _reply_error(f"{label}: recipient refused", code, text, message, all(c >= 500 for c, _ in replies))
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return _reply_error(f"{label}: sender refused (check from_email)", exc.smtp_code, exc.smtp_error, message)
        if isinstance(exc, smtplib.SMTPResponseException):  # SMTPDataError, SMTPHeloError, SMTPConnectError
            return _reply_error(f"{label}: {type(exc).__name__}", exc.smtp_code, exc.smtp_error, message)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return VendorError(
                f"{label}: server does not support a required extension (configuration fault)", permanent=True
            )
        if isinstance(exc, ValueError):
            return VendorError(f"{label}: invalid address or header ({type(exc).__name__})", permanent=True)
        # OSError: refused, reset, timeout (TimeoutError), TLS failure, SMTPServerDisconnected...
        if body_sent:
            return VendorError(
                f"{label}: no final answer after the message was sent ({type(exc).__name__}); "
                "the server may have accepted it",
                outcome_unknown=True,
            )
        return VendorError(f"{label}: {type(exc).__name__} before the message was sent")


def _reply_error(
    what: str, code: int, text: bytes | str, message: OutboundMessage, permanent: bool | None = None
) -> VendorError:
    """A VendorError for a negative SMTP reply: 5xx permanent, anything else transient."""
    reply = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    reply = scrub(reply, message.to)[:200]
    is_permanent = code >= 500 if permanent is None else permanent
    return VendorError(f"{what}: {code} {reply}".rstrip(), permanent=is_permanent, status_code=code)


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
