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
from django.core.cache import cache
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


def _trader(request) -> Trader | None:
    user = getattr(request, "user", None)
    return user if isinstance(user, Trader) else None


class PublicRateThrottle(FixedWindowThrottle):
    scope = "xpub"

    def get_rate(self) -> int:
        return self._rate

    def get_ident(self, request, view) -> str | None:
        trader = _trader(request)
        self._rate = limits_for(trader.tier if trader else None)["public_per_minute"]
        if trader is not None:
            return f"t{trader.pk}"
        return f"ip{super(FixedWindowThrottle, self).get_ident(request)}"


class AuthenticatedRateThrottle(FixedWindowThrottle):
    scope = "xauth"

    def get_rate(self) -> int:
        return self._rate

    def get_ident(self, request, view) -> str | None:
        trader = _trader(request)
        if trader is None:
            return None
        self._rate = limits_for(trader.tier)["authenticated_per_minute"]
        return str(trader.pk)


def _count(key: str, n: int, window: int) -> int:
    # Keys outlive their window comfortably (at least a minute): the key names the window, so a late
    # expiry costs a little memory and never a wrong count.
    ttl = max(window + 5, 65)
    cache.add(key, 0, timeout=ttl)
    try:
        return cache.incr(key, n)
    except ValueError:  # expired between add and incr
        cache.add(key, n, timeout=ttl)
        return n


def orders_throttle(*, trader: Trader, symbol: str, count: int = 1) -> None:
    """Count ``count`` orders of ``trader`` on ``symbol``; raise ``Throttled`` (429) over either limit.

    Counts even when refused (a client hammering the limit keeps being refused until the window ends).
    """
    limits = limits_for(trader.tier)
    now = time.time()
    for window, limit, key in (
        (1, limits["orders_per_second_per_pair"], f"xord:s:{trader.pk}:{symbol}"),
        (60, limits["orders_per_minute"], f"xord:m:{trader.pk}"),
    ):
        start = int(now // window) * window
        if _count(f"throttle:{key}:{start}", count, window) > limit:
            wait = max(start + window - now, 0.001)
            what = "per pair per second" if window == 1 else "per minute"
            raise exceptions.Throttled(wait=wait, detail=f"order rate limit: {limit} orders {what}")
