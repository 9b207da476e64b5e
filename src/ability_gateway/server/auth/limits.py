"""Per-token request rate limits, with the ``limits`` library.

In memory by default (one node); on Redis (``GATEWAY_REDIS_URL``) the limit holds across
every node sharing it. A moving window of one minute per token.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from ability_gateway.server.errors import GatewayError


class RateLimited(GatewayError):
    status_code = 429
    default_message = "Too many requests"


class RequestLimiter:
    def __init__(self, redis_url: str | None) -> None:
        storage: Storage
        if redis_url:
            url = redis_url.replace("redis://", "async+redis://", 1)
            url = url.replace("rediss://", "async+rediss://", 1)
            found = storage_from_string(url)
            assert isinstance(found, Storage)
            storage = found
        else:
            storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)

    @property
    def limiter(self) -> MovingWindowRateLimiter:
        """The shared limiter (also paces executors' QPS caps)."""
        return self._limiter

    async def hit(self, token_id: str, per_minute: int) -> dict[str, str]:
        """Count one request; the X-RateLimit-* headers, or RateLimited (429) when over."""
        item = RateLimitItemPerMinute(per_minute)
        allowed = await self._limiter.hit(item, "token", token_id)
        stats = await self._limiter.get_window_stats(item, "token", token_id)
        reset_in = max(1, math.ceil(stats.reset_time - time.time()))
        headers = {
            "X-RateLimit-Limit": str(per_minute),
            "X-RateLimit-Remaining": str(max(0, stats.remaining)),
            "X-RateLimit-Reset": str(reset_in),
        }
        if not allowed:
            raise RateLimited(
                f"More than {per_minute} requests a minute for this token",
                headers={**headers, "Retry-After": str(reset_in)},
            )
        return headers
