"""How a failed SMTP session is classified, by cause, with the server's own words.

| failure                                              | VendorError                   |
|------------------------------------------------------|-------------------------------|
| recipient / data refused with 5xx                    | permanent                     |
| the same with 4xx                                    | transient                     |
| invalid address or header                            | permanent                     |
| authentication rejected (535), AUTH needs TLS (538), | misconfigured (fails over,    |
| STARTTLS/AUTH required (530), sender refused,        | counts against the vendor)    |
| STARTTLS/AUTH not supported by the server, EHLO      |                               |
| refused                                              |                               |
| TLS handshake or certificate failure                 | transient (not accepted)      |
| refused, connect timeout, timeout or drop before the |                               |
| message body was sent                                | transient (not accepted)      |
| timeout or drop after the body was sent              | outcome_unknown               |
| relay address refused by the egress policy           | misconfigured                 |

Every error text carries the server's own reply code and words.
"""

from __future__ import annotations

import smtplib
import ssl

from notifications.egress import EgressRefused
from notifications.vendors.base import VendorError, scrub

# SMTP replies that blame the vendor's configuration at Beacon (not the message): 530 STARTTLS
# or AUTH required, 534/538 a mechanism or TLS required for AUTH, 535 credentials rejected.
MISCONFIGURED_REPLY_CODES = frozenset({530, 534, 535, 538})


def smtp_error_classify(exc: Exception, *, label: str, recipient: str, body_sent: bool) -> VendorError:
    """Map one exception of an SMTP session to a `VendorError` by cause (the module's table).
    `body_sent`: the message body had gone out (so a lost answer is an unknown outcome)."""
    if isinstance(exc, EgressRefused):  # before ValueError: the relay's address, not the message
        return VendorError(f"{label}: egress policy refused the connection ({exc})", misconfigured=True)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        hint = "AUTH needs TLS: enable use_tls" if exc.smtp_code in (534, 538) else "username/password rejected"
        return _reply_error(f"{label}: authentication failed ({hint})", exc.smtp_code, exc.smtp_error, recipient,
                            misconfigured=True)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values()) or [(0, b"")]
        code, text = replies[0]
        if code in MISCONFIGURED_REPLY_CODES:
            return _reply_error(f"{label}: recipient refused", code, text, recipient, misconfigured=True)
        return _reply_error(f"{label}: recipient refused", code, text, recipient, all(c >= 500 for c, _ in replies))
    if isinstance(exc, smtplib.SMTPSenderRefused):
        # MAIL FROM refused: the sender (from_email) or a missing STARTTLS/AUTH, never the recipient.
        what = "STARTTLS or AUTH required" if exc.smtp_code == 530 else "sender refused (check from_email)"
        transient = 400 <= exc.smtp_code < 500
        return _reply_error(f"{label}: {what}", exc.smtp_code, exc.smtp_error, recipient,
                            permanent=False, misconfigured=not transient)
    if isinstance(exc, smtplib.SMTPHeloError):
        return _reply_error(f"{label}: EHLO refused (check SMTP_EHLO_HOSTNAME)", exc.smtp_code, exc.smtp_error,
                            recipient, permanent=False, misconfigured=True)
    if isinstance(exc, smtplib.SMTPConnectError):  # the greeting was negative: the server's state
        return _reply_error(f"{label}: connection refused by the server", exc.smtp_code, exc.smtp_error, recipient,
                            permanent=False)
    if isinstance(exc, smtplib.SMTPResponseException):  # SMTPDataError and the like
        if exc.smtp_code in MISCONFIGURED_REPLY_CODES:
            return _reply_error(f"{label}: {type(exc).__name__}", exc.smtp_code, exc.smtp_error, recipient,
                                misconfigured=True)
        return _reply_error(f"{label}: {type(exc).__name__}", exc.smtp_code, exc.smtp_error, recipient)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return VendorError(f"{label}: {exc} (configuration fault)", misconfigured=True)
    if isinstance(exc, ssl.SSLError) and not body_sent:
        # The relay's TLS (handshake, certificate) is at fault, not the message: the next vendor
        # may take it, and the breaker counts it.
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or type(exc).__name__
        return VendorError(f"{label}: TLS failure before the message was sent ({reason})")
    # A certificate that does not verify is also a ValueError: not an invalid address.
    if isinstance(exc, ValueError) and not isinstance(exc, ssl.SSLError):
        return VendorError(f"{label}: invalid address or header ({type(exc).__name__})", permanent=True)
    # OSError: refused, reset, timeout (TimeoutError), SMTPServerDisconnected...
    if body_sent:
        return VendorError(
            f"{label}: no final answer after the message was sent ({type(exc).__name__}); "
            "the server may have accepted it",
            outcome_unknown=True,
        )
    return VendorError(f"{label}: {type(exc).__name__} before the message was sent")


def _reply_error(
    what: str,
    code: int,
    text: bytes | str,
    recipient: str,
    permanent: bool | None = None,
    *,
    misconfigured: bool = False,
) -> VendorError:
    """A VendorError quoting the server's reply: 5xx permanent, anything else transient, unless
    told otherwise (`misconfigured` is never permanent)."""
    reply = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    reply = scrub(" ".join(reply.split()), recipient)[:200]
    is_permanent = False if misconfigured else (code >= 500 if permanent is None else permanent)
    return VendorError(
        f"{what}: the server said {code} {reply}".rstrip(),
        permanent=is_permanent,
        misconfigured=misconfigured,
        status_code=code,
    )
