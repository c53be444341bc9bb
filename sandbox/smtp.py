"""An SMTP server (aiosmtpd) for one sandbox instance: stores what it accepts, injects faults.

Protocol behaviour:
- `RCPT TO` at domain `bounce.example` -> `550 5.1.1` (permanent, per recipient).
- A message whose Message-ID this instance already accepted -> `250`, not stored again.
- Faults, per transaction (counted at `MAIL FROM`): latency before the final reply to DATA;
  an injected failure answers DATA with `451 4.3.0` (transient) or, when `smtp_permanent` is
  true and `error_status >= 500`, with `554 5.3.0` (permanent); hang withholds every reply
  (including the greeting of new connections) and drops the connection when the hang ends.
- Optional AUTH PLAIN/LOGIN with a configured username/password, allowed without TLS because
  the sandbox only listens on loopback, unless the instance has TLS.
- Optional STARTTLS (`tls` = "trusted" or "untrusted", see sandbox/tls.py) on a certificate
  generated at start: then every command but EHLO/NOOP/QUIT needs STARTTLS first (530), and
  AUTH is offered only after it (AUTH without TLS: 538), as submission relays do.
- EHLO advertises 8BITMIME and SMTPUTF8. Each stored message records its EHLO name, its MAIL
  FROM parameters (e.g. BODY=8BITMIME) and whether it came over TLS.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import warnings
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from sandbox.state import COMPLETE_KEY, InstanceState, sockets_closed
from sandbox.tls import CertificateFiles

logger = logging.getLogger(__name__)

BOUNCE_DOMAIN = "bounce.example"
# A fixed hostname: aiosmtpd would otherwise call socket.getfqdn() (a DNS lookup) per connection.
SERVER_HOSTNAME = "sandbox.localhost"
TRANSIENT_FAILURE_REPLY = "451 4.3.0 Temporary failure injected by sandbox"
PERMANENT_FAILURE_REPLY = "554 5.3.0 Permanent failure injected by sandbox"


def injected_failure_reply(instance: InstanceState) -> str:
    faults = instance.faults
    if faults.smtp_permanent and faults.error_status >= 500:
        return PERMANENT_FAILURE_REPLY
    return TRANSIENT_FAILURE_REPLY


async def drop_after_hang(instance: InstanceState, protocol: SMTP) -> None:
    """Wait out a hang, then reset the connection without answering (never returns)."""
    await instance.wait_until_hang_over()
    if protocol.transport is not None:
        protocol.transport.abort()
    # Ends aiosmtpd's per-connection task quietly; it expects cancellation on connection loss.
    raise asyncio.CancelledError


def parse_message(raw: bytes) -> dict[str, Any]:
    """The parts of a MIME message the inbox API shows."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    return {
        "subject": msg.get("Subject"),
        "message_id": msg.get("Message-ID"),
        "header_from": msg.get("From"),
        "header_to": msg.get("To"),
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
        "headers": [[name, str(value)] for name, value in msg.items()],
    }


def message_id_of(raw: bytes) -> str | None:
    """The Message-ID header, read from the headers alone with the fast compat32 parser.

    Full MIME parsing (email.policy.default) costs milliseconds per message; the sandbox
    needs only the Message-ID when a message arrives and parses the rest when the inbox is
    read (`parse_message`), so it takes little CPU from the system it stands beside.
    """
    value = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw).get("Message-ID")
    if value is None:
        return None
    return str(value).strip() or None


class InboxHandler:
    """aiosmtpd handler hooks of one instance."""

    def __init__(self, instance: InstanceState, credentials: tuple[str, str] | None = None) -> None:
        self.instance = instance
        self.credentials = credentials

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        self.instance.counters.requests += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.rpartition("@")[2].lower() == BOUNCE_DOMAIN:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        instance = self.instance
        if instance.hanging:
            await drop_after_hang(instance, server)
        if instance.faults.latency_ms:
            await asyncio.sleep(instance.faults.latency_ms / 1000)
        if instance.roll_failure():
            return injected_failure_reply(instance)
        raw = envelope.original_content or b""
        assert isinstance(raw, bytes)
        key = message_id_of(raw)
        if instance.previous_answer(key) is not None:
            return "250 2.0.0 OK: duplicate Message-ID, already accepted"
        record = self._inbox_record(envelope, raw, key)
        record.update(ehlo=session.host_name, mail_options=list(envelope.mail_options), tls=session.ssl is not None)
        instance.store(record, key=key, answer=record["id"])
        logger.debug("sandbox %s accepted a message for %d recipient(s)", instance.name, len(envelope.rcpt_tos))
        return f"250 2.0.0 OK: queued as {record['id']}"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            self.credentials is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials
        )
        return AuthResult(success=ok, handled=False)

    def _inbox_record(self, envelope: Envelope, raw: bytes, message_id: str | None) -> dict[str, Any]:
        """The stored message; its parsed parts (subject, text, html, headers, body) are filled
        in when the inbox is first read (InstanceState.inbox calls `complete`)."""
        message_number = self.instance.counters.accepted + 1

        def complete() -> dict[str, Any]:
            parsed = parse_message(raw)
            return {"body": parsed["text"], **parsed}

        return {
            "instance": self.instance.name,
            "kind": "smtp",
            "id": message_id or f"<sandbox-{self.instance.name}-{message_number}>",
            "to": list(envelope.rcpt_tos),
            "from": envelope.mail_from,
            "idempotency_key": message_id,
            "message_id": message_id,
            COMPLETE_KEY: complete,
        }


class SandboxSMTP(SMTP):
    """aiosmtpd's protocol plus hang support and tracking of live connections (for outages)."""

    def __init__(self, handler: InboxHandler, *, live: set[SandboxSMTP], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._instance = handler.instance
        self._live = live

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._live.add(self)
        self._instance.counters.connections += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._live.discard(self)
        super().connection_lost(error)

    async def push(self, status: Any) -> None:
        # A hanging vendor accepts the TCP connection but never says anything.
        if self._instance.hanging:
            await drop_after_hang(self._instance, self)
        await super().push(status)


class SmtpListener:
    """Opens/closes the listening socket of an SMTP instance (see sandbox.state.Listener)."""

    def __init__(
        self,
        instance: InstanceState,
        *,
        credentials: tuple[str, str] | None = None,
        certificate: CertificateFiles | None = None,
    ) -> None:
        self.instance = instance
        self.handler = InboxHandler(instance, credentials)
        self.auth_required = credentials is not None
        self.certificate = certificate
        self._tls_context = certificate.server_context() if certificate is not None else None
        self._server: asyncio.Server | None = None
        self._live: set[SandboxSMTP] = set()

    def _make_protocol(self) -> SandboxSMTP:
        with warnings.catch_warnings():
            # AUTH without TLS is deliberate: the sandbox listens on loopback only.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return self._new_protocol()

    def _new_protocol(self) -> SandboxSMTP:
        return SandboxSMTP(
            self.handler,
            live=self._live,
            hostname=SERVER_HOSTNAME,
            enable_SMTPUTF8=True,
            auth_required=self.auth_required,
            tls_context=self._tls_context,
            require_starttls=self._tls_context is not None,
            auth_require_tls=self._tls_context is not None,
            authenticator=self.handler.authenticate if self.auth_required else None,
            loop=asyncio.get_running_loop(),
        )

    async def open(self, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._make_protocol, self.instance.host, port, reuse_address=True)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for protocol in list(self._live):
            if protocol.transport is not None:
                protocol.transport.abort()
        await sockets_closed()
