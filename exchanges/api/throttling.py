"""Rate limits of the exchange API (seed 004), per trader tier, counted in the cache (Redis in production).

- public endpoints: ``public_per_minute`` per client IP (per trader when the caller authenticates);
- authenticated endpoints: ``authenticated_per_minute`` per trader;
- order placement: ``orders_per_second_per_pair`` per trader and pair and ``orders_per_minute`` per
  trader, counting every order of a batch.

Limits come from ``settings.EXCHANGE_RATE_LIMITS[tier]`` (missing keys: the ``standard`` tier's). Every
count is one atomic ``INCR`` on a fixed window's key (``mmsite.api.throttling``), so all processes share it.
"""

from __future__ import annotations

import hashlib
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


#: Every counter of a request in one Redis call: ``KEYS`` the counters, ``ARGV`` each one's increment, TTL
#: and stop limit. ``SET NX EX`` + ``INCRBY`` per key, as a pipeline would, but one ``EVALSHA`` (no
#: pipeline object to build per request); a counter over its stop limit (> 0) leaves the rest uncounted.
_COUNT_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, 0, 'EX', ARGV[3 * i - 1], 'NX')
  out[i] = redis.call('INCRBY', key, ARGV[3 * i - 2])
  local stop = tonumber(ARGV[3 * i])
  if stop > 0 and out[i] > stop then
    return out
  end
end
return out
"""


def _count_script(backend):
    """The count script bound to one Redis client of ``backend``'s write pool, kept on the backend's
    client object (Django's ``get_client`` builds a new ``Redis`` object per call; this one is built once
    per cache backend, and ``EVALSHA`` falls back to ``EVAL`` if the server lost the script)."""
    holder = backend._cache
    script = getattr(holder, "_xthrottle_count_script", None)
    if script is None:
        script = holder.get_client(write=True).register_script(_COUNT_LUA)
        holder._xthrottle_count_script = script
    return script


def count_windows(items: list[tuple[str, int, int]], *, stop_over: int = 0) -> list[int]:
    """Add ``n`` to each ``(key, n, window)`` counter; return the new counts. On Redis all of them in one
    round trip (one Lua script: ``SET NX EX`` + ``INCRBY`` per key); elsewhere through the cache API.

    ``stop_over`` > 0: when the **first** counter comes out above it, the others are not counted (the
    result is then shorter): a request refused by its first limit never reaches the next ones."""
    backend = caches["default"]
    if type(backend).__name__ == "RedisCache":
        keys = [backend.make_and_validate_key(key) for key, _, _ in items]
        args: list[int] = []
        for i, (_, n, window) in enumerate(items):
            args += [n, _ttl(window), stop_over if i == 0 else 0]
        return [int(c) for c in _count_script(backend)(keys=keys, args=args)]
    out = []
    for i, (key, n, window) in enumerate(items):
        cache.add(key, 0, timeout=_ttl(window))
        try:
            out.append(cache.incr(key, n))
        except ValueError:  # expired between add and incr
            cache.add(key, n, timeout=_ttl(window))
            out.append(n)
        if i == 0 and stop_over > 0 and out[0] > stop_over:
            break
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

    def deferred(self, request, view) -> RequestWindow | None:
        """This request's count, not counted yet: for a view that counts it together with the order
        limits in one round trip (:func:`orders_throttle`, :func:`request_window_count`)."""
        ident = self.get_ident(request, view)
        if ident is None:
            return None
        return RequestWindow(scope=self.scope, ident=ident, window=self.window, limit=self.get_rate())


class RequestWindow:
    """One request's per-trader count (``AuthenticatedRateThrottle``), counted later with other windows."""

    def __init__(self, *, scope: str, ident: str, window: int, limit: int):
        self.scope, self.ident, self.window, self.limit = scope, ident, window, limit
        self.counted = False

    def item(self, now: float) -> tuple[str, int, int, int]:
        start = int(now // self.window) * self.window
        return f"throttle:{self.scope}:{self.ident}:{start}", 1, self.window, start

    def check(self, n: int, start: int, now: float) -> None:
        """DRF's refusal for a throttled request (429 with ``Retry-After``) when over the limit."""
        self.counted = True
        if n > self.limit:
            raise exceptions.Throttled(wait=max(start + self.window - now, 0.0))


def request_window_count(pending: RequestWindow | None) -> None:
    """Count a deferred request window on its own (the request failed before its orders were counted)."""
    if pending is None or pending.counted:
        return
    now = time.time()
    key, n, window, start = pending.item(now)
    (count,) = count_windows([(key, n, window)])
    pending.check(count, start, now)


def _pair_key(symbol: str) -> str:
    """``symbol`` as a cache-key part: as is when it looks like a symbol, else a short hash (the path's
    symbol is counted before it is validated, and may be anything a client sends)."""
    if len(symbol) <= 32 and symbol.isascii() and symbol.replace("-", "").replace("_", "").isalnum():
        return symbol
    return "h" + hashlib.sha256(symbol.encode()).hexdigest()[:16]


def orders_throttle(*, trader: Trader, symbol: str, count: int = 1, request: RequestWindow | None = None) -> None:
    """Count ``count`` orders of ``trader`` on ``symbol``; raise ``Throttled`` (429) over either limit.

    ``request``: the request's own per-trader count deferred by the view, counted in the same round trip
    and checked first (as DRF's throttle check would have refused the request before its orders).
    Counts even when refused (a client hammering the limit keeps being refused until the window ends).
    """
    limits = limits_for(trader.tier)
    now = time.time()
    windows = (
        (1, limits["orders_per_second_per_pair"], f"xord:s:{trader.pk}:{_pair_key(symbol)}"),
        (60, limits["orders_per_minute"], f"xord:m:{trader.pk}"),
    )
    starts = [int(now // w) * w for w, _, _ in windows]
    items = [(f"throttle:{key}:{start}", count, w) for (w, _, key), start in zip(windows, starts, strict=True)]
    pending = request if request is not None and not request.counted else None
    if pending is not None:  # counted first; over its limit, the orders are not counted (as before)
        key, n, window, request_start = pending.item(now)
        counts = count_windows([(key, n, window), *items], stop_over=pending.limit)
        pending.check(counts[0], request_start, now)
        counts = counts[1:]
    else:
        counts = count_windows(items)
    for (window, limit, _), start, n in zip(windows, starts, counts, strict=True):
        if n > limit:
            wait = max(start + window - now, 0.001)
            what = "per pair per second" if window == 1 else "per minute"
            raise exceptions.Throttled(wait=wait, detail=f"order rate limit: {limit} orders {what}")


def request_window(trader: Trader) -> RequestWindow:
    """``AuthenticatedRateThrottle``'s count of one request of ``trader``, not counted yet."""
    return RequestWindow(
        scope=AuthenticatedRateThrottle.scope,
        ident=str(trader.pk),
        window=AuthenticatedRateThrottle.window,
        limit=limits_for(trader.tier)["authenticated_per_minute"],
    )


def throttle_many(
    requests: list[tuple[Trader, str | None]], counts: list[int] | None = None
) -> list[exceptions.Throttled | None]:
    """The order gateway's rate limits for a batch of requests, in one Redis round trip (a pipeline of the
    count script): each ``(trader, symbol)`` is counted exactly as the regular views count it, a
    placement of ``counts[i]`` orders (default 1) on ``symbol`` as ``OrdersView.post`` and
    ``BatchOrdersView.post`` (its request window, then its orders; over the request limit, the orders are
    not counted) and ``symbol=None`` as any other authenticated request (a cancel, a batch cancel).
    Returns each one's refusal or None."""
    counts = counts or [1] * len(requests)
    backend = caches["default"]
    if type(backend).__name__ != "RedisCache":
        out: list[exceptions.Throttled | None] = []
        for (trader, symbol), count in zip(requests, counts, strict=True):
            try:
                if symbol is None:
                    request_window_count(request_window(trader))
                else:
                    orders_throttle(trader=trader, symbol=symbol, count=count, request=request_window(trader))
                out.append(None)
            except exceptions.Throttled as exc:
                out.append(exc)
        return out
    script = _count_script(backend)
    pipe = script.registered_client.pipeline(transaction=False)
    now = time.time()
    plans = []
    for (trader, symbol), count in zip(requests, counts, strict=True):
        pending = request_window(trader)
        key, n, window, request_start = pending.item(now)
        items = [(key, n, window)]
        windows: tuple = ()
        starts: list[int] = []
        if symbol is not None:
            limits = limits_for(trader.tier)
            windows = (
                (1, limits["orders_per_second_per_pair"], f"xord:s:{trader.pk}:{_pair_key(symbol)}"),
                (60, limits["orders_per_minute"], f"xord:m:{trader.pk}"),
            )
            starts = [int(now // w) * w for w, _, _ in windows]
            items += [(f"throttle:{k}:{start}", count, w) for (w, _, k), start in zip(windows, starts, strict=True)]
        keys = [backend.make_and_validate_key(k) for k, _, _ in items]
        args: list[int] = []
        for i, (_, n_, window_) in enumerate(items):
            args += [n_, _ttl(window_), pending.limit if i == 0 else 0]
        script(keys=keys, args=args, client=pipe)
        plans.append((pending, request_start, windows, starts))
    out = []
    for (pending, request_start, windows, starts), counts in zip(plans, pipe.execute(), strict=True):
        counts = [int(c) for c in counts]
        try:
            pending.check(counts[0], request_start, now)
            for (window, limit, _), start, n in zip(windows, starts, counts[1:], strict=True):
                if n > limit:
                    wait = max(start + window - now, 0.001)
                    what = "per pair per second" if window == 1 else "per minute"
                    raise exceptions.Throttled(wait=wait, detail=f"order rate limit: {limit} orders {what}")
            out.append(None)
        except exceptions.Throttled as exc:
            out.append(exc)
    return out
