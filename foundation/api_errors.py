"""Every error code the API answers, and the one function that renders an API error.

Every error under `/api/` has the same JSON shape, DEBUG on or off:
`{"error": {"code": "<stable code>", "message": "<for people>", ...}}`.
A new error code is added to API_ERROR_CODES (a test holds the README's table equal to it) and
rendered with `api_error_response`, whether it comes from a middleware, a Django error handler
or DRF's exception handler (`checkout.exceptions.api_exception_handler`).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

# code -> HTTP status. The codes are a contract with API clients: never rename one.
API_ERROR_CODES: dict[str, int] = {
    "malformed_request": 400,
    "invalid_request": 400,
    "invalid_idempotency_key": 400,
    "authentication_required": 401,
    "authentication_failed": 401,
    "payment_declined": 402,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "idempotency_conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "idempotency_key_reused": 422,
    "template_missing": 422,
    "rate_limited": 429,
    "internal_error": 500,
    "payment_gateway_error": 502,
    "database_unavailable": 503,
}

# Codes whose answer says when to try again (seconds), as a Retry-After header.
# idempotency_conflict: the first request with the key is still running (or died: then the key
# is free again after IDEMPOTENCY_IN_FLIGHT_TIMEOUT); asking again each second is the way through.
_RETRY_AFTER_SECONDS = {"database_unavailable": 2, "idempotency_conflict": 1}


def retry_after_seconds(code: str) -> int | None:
    """When to try again after an answer with `code` (the Retry-After header), if it says."""
    return _RETRY_AFTER_SECONDS.get(code)


def api_error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The error's JSON body; raises KeyError for a code missing from API_ERROR_CODES."""
    if code not in API_ERROR_CODES:
        raise KeyError(f"API error code {code!r} is not registered in foundation.api_errors.API_ERROR_CODES")
    return {"error": {"code": code, "message": message, **extra}}


def api_error_response(code: str, message: str, *, status: int | None = None, **extra: Any) -> JsonResponse:
    """A JsonResponse for `code`, with its registered status unless `status` is given."""
    response = JsonResponse(api_error_body(code, message, **extra), status=status or API_ERROR_CODES[code])
    if retry_after_seconds(code) is not None:
        response["Retry-After"] = str(retry_after_seconds(code))
    return response


def is_api_request(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")
