"""The request id of the work in progress, shared by logs, Celery task headers and vendor calls."""

from __future__ import annotations

import contextvars
import uuid

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def request_id_get() -> str:
    return request_id_var.get()


def request_id_new() -> str:
    return uuid.uuid4().hex
