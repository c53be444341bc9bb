from __future__ import annotations

from rest_framework.authentication import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """DRF's token authentication (one SELECT per request), with the `Bearer` keyword the
    bench's load tools send to Beacon as well."""

    keyword = "Bearer"
