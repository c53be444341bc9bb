"""Per-client request throttling: a fixed one-minute window counted in Redis.

One round trip per request (INCR + EXPIRE in a pipeline) on the cache's Redis. DRF's SimpleRateThrottle keeps a
list of timestamps per client, which costs O(rate) per request at thousands per minute.
If Redis is unavailable the request is allowed: throttling must never take checkout down.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

from django_redis import get_redis_connection

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


class ApiClientRateThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: APIView) -> bool:
        client = request.user
        if client is None or not getattr(client, "pk", None):
            return True
        limit = client.rate_limit_per_minute or settings.API_DEFAULT_RATE_PER_MINUTE
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = cache.make_key(f"throttle:{client.pk}:{window}")
        try:
            pipe = get_redis_connection("default").pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS + 5)
            count, _ = pipe.execute()
        except Exception as exc:  # Redis down: fail open, never fail the checkout
            logger.warning("throttle unavailable, allowing request: %s", type(exc).__name__)
            return True
        self._wait = (window + 1) * WINDOW_SECONDS - now
        return int(count) <= limit

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
