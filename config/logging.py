"""Log filters: attach the request id, and mask phone numbers, emails and secrets."""

from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from foundation.masking import text_mask
from foundation.request_context import request_id_get


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_get()
        return True


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class RedactingFilter(logging.Filter):
    """Rewrites each record's message and `extra=` string fields with personal data and secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, text_mask(value))
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the line
            return True
        masked = text_mask(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


class RedactingTextFormatter(logging.Formatter):
    """The text format, masked once more as a whole: tracebacks carry exception messages."""

    def format(self, record: logging.LogRecord) -> str:
        return text_mask(super().format(record))


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per line (production), masked as a whole, tracebacks included.

    Non-ASCII stays as is (UTF-8), so an already masked `a•••@example.com` is not turned into
    `a\\u2022...` escapes that the email pattern would mask again, breaking the JSON.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        return text_mask(super().format(record))
