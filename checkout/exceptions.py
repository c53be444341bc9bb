"""The checkout API's one error type and the DRF exception handler that renders every error.

Every error body has the same shape:
`{"error": {"code": "<stable code>", "message": "<for people>", "fields": {...}?}}`; the codes
and their statuses are listed in `foundation.api_errors.API_ERROR_CODES`.
"""

from __future__ import annotations

from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from foundation.api_errors import api_error_body, retry_after_seconds
from foundation.middleware import database_unavailable_response


class ApplicationError(Exception):
    def __init__(self, message: str, *, code: str, status_code: int = 400, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.extra = extra or {}


# DRF turns Django's Http404 into its own NotFound; the exception is matched as raised.
_DRF_CODES: dict[type[Exception], str] = {
    Http404: "not_found",
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "authentication_required",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "invalid_request",
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        retry_after = retry_after_seconds(exc.code)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return Response(api_error_body(exc.code, exc.message, **exc.extra), status=exc.status_code, headers=headers)
    if isinstance(exc, (OperationalError, InterfaceError)):
        legacy = database_unavailable_response()
        return Response(_json(legacy.content), status=legacy.status_code, headers={"Retry-After": "2"})
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for kind, c in _DRF_CODES.items() if isinstance(exc, kind)), None)
    if code is None:  # an APIException subclass nobody registered: a bug, but still the one shape
        code = "internal_error" if response.status_code >= 500 else "invalid_request"
    if isinstance(exc, exceptions.ValidationError):
        body = api_error_body(code, "The request has invalid fields.", fields=response.data)
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        body = api_error_body(code, str(detail))
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        body["error"]["retry_after"] = int(exc.wait) + 1
    response.data = body
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _json(content: bytes) -> Any:
    import json

    return json.loads(content)
