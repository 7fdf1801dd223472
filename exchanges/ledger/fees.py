"""Maker and taker fees: a pure schedule, no Django.

A fee is ``notional * bps / 10_000``, rounded **up** to the ledger's quantum (the house never
charges less than the schedule). The schedule is looked up by market and tier: an entry for
``(market, tier)`` wins over ``(None, tier)``, which wins over :data:`DEFAULT`. Fees are charged in
the asset the payer *receives* (see docs/ledger.md), so a hold never needs fee headroom.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal

from .choices import QUANTUM

BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    maker_bps: Decimal
    taker_bps: Decimal

    def __post_init__(self) -> None:
        for name in ("maker_bps", "taker_bps"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or value < 0:
                raise ValueError(f"{name} must be a non-negative Decimal, got {value!r}")

    def bps(self, *, is_maker: bool) -> Decimal:
        return self.maker_bps if is_maker else self.taker_bps


#: The schedule when nothing more specific is configured: 10 bps maker, 20 bps taker.
DEFAULT = FeeSchedule(maker_bps=Decimal("10"), taker_bps=Decimal("20"))

#: ``(market or None, tier) -> schedule``; ``tier`` "mm" is the market makers' tier (no maker fee).
SCHEDULES: Mapping[tuple[str | None, str], FeeSchedule] = {
    (None, "mm"): FeeSchedule(maker_bps=Decimal("0"), taker_bps=Decimal("10")),
}


def schedule_for(
    *, market: str | None, tier: str = "default", schedules: Mapping[tuple[str | None, str], FeeSchedule] = SCHEDULES
) -> FeeSchedule:
    return schedules.get((market, tier)) or schedules.get((None, tier)) or DEFAULT


def fee_amount(*, notional: Decimal, bps: Decimal) -> Decimal:
    """The fee on ``notional`` at ``bps`` basis points, rounded up to the ledger quantum."""
    if not isinstance(notional, Decimal) or not isinstance(bps, Decimal):
        raise TypeError("notional and bps must be Decimal")
    if notional < 0 or bps < 0:
        raise ValueError("notional and bps must be non-negative")
    return (notional * bps / BPS).quantize(QUANTUM, rounding=ROUND_UP)


def trade_fee(*, notional: Decimal, is_maker: bool, market: str | None = None, tier: str = "default") -> Decimal:
    """The fee one side of a trade pays on ``notional`` (in the asset it receives)."""
    return fee_amount(notional=notional, bps=schedule_for(market=market, tier=tier).bps(is_maker=is_maker))
