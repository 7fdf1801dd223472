"""The fee a trader pays on one side of a trade: market override, then trader tier, then volume tier.

Reads the ``FeeTier`` rows (cached in-process for ``CACHE_SECONDS``) and the trader's 30-day volume
(cached in the Django cache, Redis in production, for ``VOLUME_CACHE_SECONDS``), so the matching
transaction does not aggregate trades on every fill. See docs/api/exchange.md, "Fees".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.core.cache import cache
from django.db.models import F, Q, Sum
from django.utils import timezone

from exchanges.ledger import fees as pure_fees
from exchanges.models import ExchangeTrade, FeeTier, Market

CACHE_SECONDS = 30.0
VOLUME_CACHE_SECONDS = 300

_tiers: tuple[float, list[FeeTier]] | None = None


@dataclass(frozen=True, slots=True)
class TierView:
    name: str
    min_volume_30d: Decimal
    trader_tier: str
    maker_bps: Decimal
    taker_bps: Decimal


def _fallback() -> list[TierView]:
    d = pure_fees.DEFAULT
    mm = pure_fees.SCHEDULES[(None, "mm")]
    return [
        TierView("standard", Decimal("0"), "", d.maker_bps, d.taker_bps),
        TierView("market_maker", Decimal("0"), "market_maker", mm.maker_bps, mm.taker_bps),
    ]


def tiers() -> list[TierView]:
    """The fee schedule, volume tiers first (ascending), then trader-tier rows."""
    global _tiers
    now = time.monotonic()
    if _tiers is None or now - _tiers[0] > CACHE_SECONDS:
        rows = [
            TierView(t.name, t.min_volume_30d, t.trader_tier, t.maker_bps, t.taker_bps)
            for t in FeeTier.objects.order_by("trader_tier", "min_volume_30d")
        ]
        _tiers = (now, rows or _fallback())
    return _tiers[1]  # type: ignore[return-value]


def tiers_reset() -> None:
    """Forget the cached schedule (tests, admin saves)."""
    global _tiers
    _tiers = None


def volume_30d(*, trader_id: int, mode: str) -> Decimal:
    """The trader's traded quote volume over 30 days (both roles), cached."""
    key = f"xfees:vol30:{trader_id}:{mode}"
    cached = cache.get(key)
    if cached is not None:
        return Decimal(cached)
    since = timezone.now() - timedelta(days=30)
    total = ExchangeTrade.objects.filter(
        Q(taker_trader_id=trader_id) | Q(maker_trader_id=trader_id), mode=mode, created_at__gte=since
    ).aggregate(v=Sum(F("price") * F("quantity")))["v"] or Decimal("0")
    cache.set(key, str(total), VOLUME_CACHE_SECONDS)
    return total


def tier_for(*, trader_tier: str, volume: Decimal) -> tuple[TierView, TierView | None]:
    """The tier that applies and the next volume tier (None at the top or for a trader-tier row)."""
    rows = tiers()
    for t in rows:
        if t.trader_tier and t.trader_tier == trader_tier:
            return t, None
    volume_rows = [t for t in rows if not t.trader_tier]
    current = volume_rows[0] if volume_rows else _fallback()[0]
    nxt = None
    for t in volume_rows:
        if t.min_volume_30d <= volume:
            current = t
        elif nxt is None:
            nxt = t
    return current, nxt


def fee_bps(*, market: Market, trader_id: int, trader_tier: str, mode: str, is_maker: bool) -> Decimal:
    override = market.maker_fee_bps if is_maker else market.taker_fee_bps
    if override is not None:
        return override
    tier, _ = tier_for(trader_tier=trader_tier, volume=volume_30d(trader_id=trader_id, mode=mode))
    return tier.maker_bps if is_maker else tier.taker_bps


def fee_on(*, amount: Decimal, bps: Decimal) -> Decimal:
    """The fee on ``amount`` (in the asset received) at ``bps``, rounded up to the ledger quantum."""
    return pure_fees.fee_amount(notional=amount, bps=bps)
