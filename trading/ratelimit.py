"""A token bucket per exchange account, so every venue stays under its rate limit.

The bucket lives in the Django cache, which is Redis in production: every worker process on every
machine draws from the same bucket. On Redis one Lua script refills and takes a token atomically
(the clock is Redis's own ``TIME``, so workers' clocks do not matter). On any other cache (the
embedded default: local memory, one process) a process lock makes the read-refill-write atomic.

A refused take returns how long until a token is due; callers retry then (the placement task
retries with a Celery countdown), they never sleep holding a worker.

Rates per exchange: ``settings.VENUE_RATE_LIMITS = {"polymarket": (rate_per_second, burst), ...}``
overrides the defaults below (``"*"`` for every other exchange).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache, caches

__all__ = ["DEFAULT_RATES", "BucketRate", "TokenBucket", "rate_for", "take_token"]

#: Sustained orders+cancels per second and burst per account; conservative shares of the venues'
#: published limits (Polymarket CLOB ~ 50/s burst, Kalshi basic tier 10 writes/s, Betfair 1000
#: transactions/hour per market is the binding one there: about 0.27/s).
DEFAULT_RATES: dict[str, tuple[float, int]] = {
    "polymarket": (20.0, 40),
    "kalshi": (8.0, 10),
    "betfair": (5.0, 10),
    "*": (5.0, 10),
}


@dataclass(frozen=True)
class BucketRate:
    per_second: float
    burst: int


def rate_for(exchange: str) -> BucketRate:
    rates = {**DEFAULT_RATES, **getattr(settings, "VENUE_RATE_LIMITS", {})}
    per_second, burst = rates.get(exchange, rates["*"])
    return BucketRate(float(per_second), int(burst))


# KEYS[1] bucket hash; ARGV rate per second, burst, cost. Returns {allowed 0/1, wait in ms}.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1]) / 1000
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
if now > at then tokens = math.min(burst, tokens + (now - at) * rate) end
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = math.ceil((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(math.max(now, at)))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {allowed, wait}
"""

_local_lock = threading.Lock()


class TokenBucket:
    """``take()`` -> ``(allowed, retry_after_seconds)``. ``key`` names the bucket."""

    def __init__(self, key: str, rate: BucketRate):
        self.key = key
        self.rate = rate

    def take(self, cost: int = 1) -> tuple[bool, float]:
        client = _redis_client()
        if client is not None:
            allowed, wait_ms = client.eval(
                _LUA, 1, cache.make_and_validate_key(self.key), self.rate.per_second, self.rate.burst, cost
            )
            return bool(allowed), int(wait_ms) / 1000
        return self._take_local(cost)

    def _take_local(self, cost: int) -> tuple[bool, float]:
        with _local_lock:
            now = time.monotonic()
            tokens, at = cache.get(self.key) or (float(self.rate.burst), now)
            tokens = min(float(self.rate.burst), tokens + max(0.0, now - at) * self.rate.per_second)
            if tokens >= cost:
                cache.set(self.key, (tokens - cost, now), timeout=3600)
                return True, 0.0
            cache.set(self.key, (tokens, now), timeout=3600)
            return False, (cost - tokens) / self.rate.per_second


def _redis_client():
    """The raw redis client behind the default cache, or None when the cache is not Redis."""
    from django.core.cache.backends.redis import RedisCache

    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(write=True)
    return None


def take_token(*, account_id: int, exchange: str) -> tuple[bool, float]:
    """Take one venue call's token from exchange account ``account_id``'s bucket."""
    return TokenBucket(f"venue-rate:{account_id}", rate_for(exchange)).take()
