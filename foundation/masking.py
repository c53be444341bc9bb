"""Masking of personal data: the one rule for showing an email address or a phone number
where it must not appear whole (admin lists, vendor error texts, log lines, error reports).

`address_mask` masks one address; `text_mask` finds the addresses (and `secret=...` values)
in free text and masks each of them with `address_mask`.
"""

from __future__ import annotations

import re

MASK = "•"
# Phone digits shown after the "+": country code and the start of the number, enough for an
# operator to tell two customers' numbers apart in a list.
PHONE_HEAD_DIGITS = 4
# In logs and error reports, where nobody needs to tell numbers apart: the country code at most.
TEXT_PHONE_HEAD_DIGITS = 3

_EMAIL = re.compile(r"^(.)[^@]*@(.+)$")
_EMAIL_IN_TEXT = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE_IN_TEXT = re.compile(r"\+\d{6,}\b")
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)((?:auth_token|password|secret|api_key|token|authorization)[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?)[^\s\"',}]+"
)


def address_mask(address: str, *, phone_head_digits: int = PHONE_HEAD_DIGITS) -> str:
    """`+447911123321` -> `+4479•••••321`, `john@example.com` -> `j•••@example.com`; anything
    else keeps its first character. A masked address masks to itself."""
    if MASK in address:  # already masked: masking it again would hide what was left
        return address
    match = _EMAIL.match(address)
    if match:
        return f"{match.group(1)}{MASK * 3}@{match.group(2)}"
    if address.startswith("+") and address[1:].isdigit():
        digits = address[1:]
        keep_head, keep_tail = min(phone_head_digits, max(0, len(digits) - 6)), 3 if len(digits) > 6 else 1
        hidden = len(digits) - keep_head - keep_tail
        return f"+{digits[:keep_head]}{MASK * hidden}{digits[len(digits) - keep_tail:]}"
    return address[:1] + MASK * 3 if address else ""


# The words _SECRET_ASSIGNMENT starts with: an ASCII text with none of them has nothing it matches.
_SECRET_WORDS = ("token", "password", "secret", "api_key", "authorization")


def text_mask(text: str) -> str:
    """`text` with emails (`j•••@example.com`), phone numbers (`+447••••••321`) and the values
    of `secret=...`-style assignments (`[redacted]`) masked.

    Every log line passes here (twice, through the log filter and the formatter), so a pattern
    runs only where it could match: an email needs an "@", a phone number a "+", an assignment
    one of its words (checked on the lowered text when it is ASCII; any other text goes to the
    case-insensitive pattern, whose Unicode case folding `lower()` does not repeat)."""
    if "@" in text:
        text = _EMAIL_IN_TEXT.sub(lambda m: address_mask(m.group(0)), text)
    if "+" in text:
        text = _PHONE_IN_TEXT.sub(lambda m: address_mask(m.group(0), phone_head_digits=TEXT_PHONE_HEAD_DIGITS), text)
    if text.isascii():
        lowered = text.lower()
        if not any(word in lowered for word in _SECRET_WORDS):
            return text
    return _SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + "[redacted]", text)
