"""Middleware that every request passes through: a request id, and API error shaping."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, InterfaceError
from django.http import HttpRequest, HttpResponse, JsonResponse

from foundation.api_errors import api_error_response, is_api_request
from foundation.request_context import request_id_new, request_id_var

logger = logging.getLogger(__name__)

# A client's request id is accepted when it looks like one (no log injection).
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Give every request an id (the client's `X-Request-ID` if sane), echo it back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _CLIENT_REQUEST_ID.match(incoming) else request_id_new()
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


class ApiErrorMiddleware:
    """For `/api/`: refuse oversized bodies (413), turn a lost database into a clean 503, and
    answer every other error Django itself renders (an unknown route, a DEBUG error page, a
    server error) as JSON in the API's error shape.

    The body limit is checked on Content-Length before anything reads the body, so a large
    upload costs nothing. A database outage answers a JSON error, never a stack trace.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_request(request):
            return self.get_response(request)
        if request.method in ("POST", "PUT", "PATCH"):
            try:
                length = int(request.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
            if length > settings.API_MAX_BODY_BYTES:
                return api_error_response(
                    "payload_too_large", f"Request body exceeds {settings.API_MAX_BODY_BYTES} bytes."
                )
        return _as_api_error(self.get_response(request))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (DatabaseError, InterfaceError)) and _looks_like_outage(exception):
            logger.error("database unavailable: %s", type(exception).__name__)
            return database_unavailable_response()
        return None


# Django's own error pages (HTML, or DEBUG's technical pages) -> the API's code for the status.
_CODES_FOR_DJANGO_ERRORS = {
    400: ("malformed_request", "The request could not be understood."),
    404: ("not_found", "No such API resource."),
    405: ("method_not_allowed", "This method is not allowed here."),
    500: ("internal_error", "The server failed to answer; the error was logged."),
}


def _as_api_error(response: HttpResponse) -> HttpResponse:
    """An error answered by Django rather than by the API (whose errors are already JSON)."""
    if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
        return response
    known = _CODES_FOR_DJANGO_ERRORS.get(response.status_code)
    if known is None:
        return response
    code, message = known
    replacement = api_error_response(code, message, status=response.status_code)
    if response.has_header("Allow"):
        replacement["Allow"] = response["Allow"]
    return replacement


def _looks_like_outage(exception: Exception) -> bool:
    from django.db import OperationalError

    return isinstance(exception, (OperationalError, InterfaceError))


def database_unavailable_response() -> JsonResponse:
    return api_error_response("database_unavailable", "The database is unavailable; try again shortly.")
