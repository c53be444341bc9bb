"""`Authorization: Bearer <key>` authentication for the REST API.

A wrong key is counted per client address (foundation/trusted_proxies.py), for
API_AUTH_FAILURE_WINDOW seconds from the first one. Once API_AUTH_FAILURE_LIMIT are counted the
address is blocked: further wrong keys get 429 instead of 401, and checkout/throttling.py
refuses its right keys too, until the window ends.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django_redis import get_redis_connection
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from prometheus_client import Counter
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from checkout.api_keys import api_client_authenticate
from checkout.models import ApiClient
from checkout.throttling import BLOCKED_ADDRESS_MESSAGE, auth_failures_key
from foundation.trusted_proxies import client_address_or_peer

logger = logging.getLogger(__name__)

API_AUTH_FAILURES = Counter(
    "beacon_api_auth_failures_total",
    "API requests with a wrong key, by whether the address was then blocked (throttled) or not (rejected).",
    ["outcome"],
)


def auth_failure_record(*, address: str) -> tuple[int, int]:
    """Count one failed key from `address`; return its failures in the current window and the
    seconds left of that window, in one round trip ((0, 0) when Redis is unavailable: fail
    open, as the rate limit does)."""
    key = auth_failures_key(address)
    try:
        connection = get_redis_connection("default")
        count, seconds_left = connection.pipeline(transaction=False).incr(key).ttl(key).execute()
        count = int(count)
        if count == 1 or seconds_left < 0:  # the window starts (or a key lost its expiry)
            connection.expire(key, settings.API_AUTH_FAILURE_WINDOW)
            seconds_left = settings.API_AUTH_FAILURE_WINDOW
    except Exception as exc:
        logger.warning("failed-key counter unavailable: %s", type(exc).__name__)
        return 0, 0
    return count, int(seconds_left)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiClient, None] | None:
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        scheme, _, key = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <API key>'.")
        client = api_client_authenticate(key=key.strip())
        if client is None:
            address = client_address_or_peer(request)
            failures, seconds_left = auth_failure_record(address=address)
            if failures > settings.API_AUTH_FAILURE_LIMIT:
                API_AUTH_FAILURES.labels("throttled").inc()
                if failures == settings.API_AUTH_FAILURE_LIMIT + 1:  # once, when the block starts
                    logger.warning("failed API keys: address %s blocked for %ss", address, settings.API_AUTH_FAILURE_WINDOW)
                raise exceptions.Throttled(wait=seconds_left, detail=BLOCKED_ADDRESS_MESSAGE)
            API_AUTH_FAILURES.labels("rejected").inc()
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return client, None

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated requests.
        return 'Bearer realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Declares the API key in the OpenAPI schema (a bearer token), so clients and fuzzers know it."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: object) -> dict:
        return {"type": "http", "scheme": "bearer", "description": "An API client key: `Authorization: Bearer bk_...`."}
