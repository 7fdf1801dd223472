"""Rate limits of the exchange API (seed 004), per trader tier, counted in the cache (Redis in production).

- public endpoints: ``public_per_minute`` per client IP (per trader when the caller authenticates);
- authenticated endpoints: ``authenticated_per_minute`` per trader;
- order placement: ``orders_per_second_per_pair`` per trader and pair and ``orders_per_minute`` per
  trader, counting every order of a batch.

Limits come from ``settings.EXCHANGE_RATE_LIMITS[tier]`` (missing keys: the ``standard`` tier's). Every
count is one atomic ``INCR`` on a fixed window's key (``mmsite.api.throttling``), so all processes share it.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache, caches
from rest_framework import exceptions

from exchanges.models import Trader
from mmsite.api.throttling import FixedWindowThrottle

DEFAULTS = {
    "public_per_minute": 30,
    "authenticated_per_minute": 60,
    "orders_per_second_per_pair": 10,
    "orders_per_minute": 30,
}


def limits_for(tier: str | None) -> dict[str, int]:
    table = getattr(settings, "EXCHANGE_RATE_LIMITS", {}) or {}
    out = dict(DEFAULTS)
    out.update(table.get("standard", {}))
    if tier and tier != "standard":
        out.update(table.get(tier, {}))
    return out


def _ttl(window: int) -> int:
    # Keys outlive their window comfortably (at least a minute): the key names the window, so a late
    # expiry costs a little memory and never a wrong count.
    return max(window + 5, 65)


def count_windows(items: list[tuple[str, int, int]]) -> list[int]:
    """Add ``n`` to each ``(key, n, window)`` counter; return the new counts. On Redis all of them in one
    round trip (``SET NX EX`` + ``INCRBY`` per key, pipelined); elsewhere through the cache API."""
    backend = caches["default"]
    if type(backend).__name__ == "RedisCache":
        client = backend._cache.get_client(write=True)
        pipe = client.pipeline(transaction=False)
        for key, n, window in items:
            k = backend.make_and_validate_key(key)
            pipe.set(k, 0, ex=_ttl(window), nx=True)
            pipe.incrby(k, n)
        res = pipe.execute()
        return [int(res[2 * i + 1]) for i in range(len(items))]
    out = []
    for key, n, window in items:
        cache.add(key, 0, timeout=_ttl(window))
        try:
            out.append(cache.incr(key, n))
        except ValueError:  # expired between add and incr
            cache.add(key, n, timeout=_ttl(window))
            out.append(n)
    return out


class _OneTripThrottle(FixedWindowThrottle):
    """``FixedWindowThrottle`` counted through :func:`count_windows` (one Redis round trip)."""

    def allow_request(self, request, view) -> bool:
        ident = self.get_ident(request, view)
        if ident is None:
            return True
        now = time.time()
        start = int(now // self.window) * self.window
        (count,) = count_windows([(f"throttle:{self.scope}:{ident}:{start}", 1, self.window)])
        self._wait = start + self.window - now
        return count <= self.get_rate()


def _trader(request) -> Trader | None:
    user = getattr(request, "user", None)
    return user if isinstance(user, Trader) else None


class PublicRateThrottle(_OneTripThrottle):
    scope = "xpub"

    def get_rate(self) -> int:
        return self._rate

    def get_ident(self, request, view) -> str | None:
        trader = _trader(request)
        self._rate = limits_for(trader.tier if trader else None)["public_per_minute"]
        if trader is not None:
            return f"t{trader.pk}"
        return f"ip{super(FixedWindowThrottle, self).get_ident(request)}"


class AuthenticatedRateThrottle(_OneTripThrottle):
    scope = "xauth"

    def get_rate(self) -> int:
        return self._rate

    def get_ident(self, request, view) -> str | None:
        trader = _trader(request)
        if trader is None:
            return None
        self._rate = limits_for(trader.tier)["authenticated_per_minute"]
        return str(trader.pk)


def orders_throttle(*, trader: Trader, symbol: str, count: int = 1) -> None:
    """Count ``count`` orders of ``trader`` on ``symbol``; raise ``Throttled`` (429) over either limit.

    Counts even when refused (a client hammering the limit keeps being refused until the window ends).
    """
    limits = limits_for(trader.tier)
    now = time.time()
    windows = (
        (1, limits["orders_per_second_per_pair"], f"xord:s:{trader.pk}:{symbol}"),
        (60, limits["orders_per_minute"], f"xord:m:{trader.pk}"),
    )
    starts = [int(now // w) * w for w, _, _ in windows]
    counts = count_windows(
        [(f"throttle:{key}:{start}", count, w) for (w, _, key), start in zip(windows, starts, strict=True)]
    )
    for (window, limit, _), start, n in zip(windows, starts, counts, strict=True):
        if n > limit:
            wait = max(start + window - now, 0.001)
            what = "per pair per second" if window == 1 else "per minute"
            raise exceptions.Throttled(wait=wait, detail=f"order rate limit: {limit} orders {what}")
