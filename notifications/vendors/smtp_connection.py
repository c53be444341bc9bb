"""One SMTP connection under a time budget, as Django's email backend: the transport under the
SMTP adapter (smtp.py), which pools these sessions and classifies their failures.

- Every socket operation of a send gets only what is left of one budget (`timeout`), so a
  slow relay cannot hold a worker longer than the vendor's timeout.
- The socket connects only to an address the egress policy has just checked.
- The connection notes when the body went out (after the 354 answer to DATA): from then on the
  relay may have accepted the message, so a lost answer is an unknown outcome, not a failure.
- 8-bit messages go with `BODY=8BITMIME` when the relay offers it, else quoted-printable.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from django.conf import settings as django_settings
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend
from django.core.mail.message import sanitize_address, utf8_charset_qp

from notifications.egress import egress_resolve


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
    """Django's SMTP backend on the budgeted connection classes; keeps the last one in `.smtp`.

    Set `ehlo_hostname` before opening. Sends with `BODY=8BITMIME` when the server offers it
    and the message is 8-bit, and re-encodes the message as quoted-printable otherwise.
    """

    smtp: _BudgetedSMTPMixin | None = None
    ehlo_hostname: str = ""

    @property
    def connection_class(self) -> Callable[..., smtplib.SMTP]:
        cls = _BudgetedSMTPSSL if self.use_ssl else _BudgetedSMTP

        def connect(*args: Any, **kwargs: Any) -> smtplib.SMTP:
            if self.ehlo_hostname:  # instead of Django's getfqdn(), often "localhost"
                kwargs["local_hostname"] = self.ehlo_hostname
            self.smtp = cls(*args, **kwargs)
            return self.smtp

        return connect

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        """Certificates checked against SMTP_CA_BUNDLE when set, else the system's CAs."""
        bundle = str(django_settings.SMTP_CA_BUNDLE or "")
        return ssl.create_default_context(cafile=bundle or None)

    def _send(self, email_message: EmailMessage) -> bool:
        """Django's `_send` plus the right MAIL FROM parameters and a 7-bit fallback."""
        if not email_message.recipients():
            return False
        encoding = email_message.encoding or django_settings.DEFAULT_CHARSET
        from_email = sanitize_address(email_message.from_email, encoding)
        recipients = [sanitize_address(address, encoding) for address in email_message.recipients()]
        connection = self.connection
        connection.ehlo_or_helo_if_needed()
        raw = email_message.message().as_bytes(linesep="\r\n")
        mail_options: list[str] = []
        if not raw.isascii():
            if connection.has_extn("8bitmime"):
                mail_options.append("BODY=8BITMIME")
            else:  # RFC 6152: no 8-bit data to a server that did not offer it
                email_message.encoding = utf8_charset_qp
                raw = email_message.message().as_bytes(linesep="\r\n")
        connection.sendmail(from_email, recipients, raw, mail_options=mail_options)
        return True
