"""Demo data of the house exchange: the seed's pairs (``vaix``, ``sbio``, ``btc``, ``eth`` against USDC)
with resting liquidity from a demo market maker, live and paper. Idempotent: markets are upserted,
deposits carry fixed idempotency keys, and a ladder is placed only on a book where the demo market
maker has no live order."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from exchanges.errors import ExchangeError
from exchanges.ledger.exceptions import IdempotencyConflict
from exchanges.models import ExchangeOrder, Market, TraderTier

from .markets import market_upsert
from .orders import order_place
from .traders import trader_fund, trader_get_or_create

DEMO_MM = "demo-mm"
DEMO_TRADER = "demo-trader"


@dataclass(frozen=True)
class DemoPair:
    symbol: str
    name: str
    tick: str
    lot: str
    min_size: str
    mid: str
    supply: str | None = None


PAIRS = (
    DemoPair("vaix", "VAIX/USDC", "0.000001", "1", "1", "0.003", "1000000000"),
    DemoPair("sbio", "SBIO/USDC", "0.000001", "1", "1", "0.012", "500000000"),
    DemoPair("btc", "BTC/USDC", "0.01", "0.0001", "0.0001", "65000"),
    DemoPair("eth", "ETH/USDC", "0.01", "0.001", "0.001", "3200"),
)

LEVELS = 5


def _ladder(p: DemoPair) -> list[tuple[str, Decimal, Decimal]]:
    """``LEVELS`` bids and asks around ``mid``: about 0.2% apart, sized about 2,000 USDC per level."""
    mid, tick, lot = Decimal(p.mid), Decimal(p.tick), Decimal(p.lot)
    step = max((mid * Decimal("0.002") / tick).to_integral_value(), 1) * tick
    size = max((Decimal("2000") / mid / lot).to_integral_value(), 1) * lot
    out = []
    for i in range(1, LEVELS + 1):
        out.append(("buy", mid - step * i, size))
        out.append(("sell", mid + step * i, size))
    return out


def exchange_demo_seed(*, write=None) -> dict:
    """Create the demo pairs, the demo market maker (tier ``market_maker``) and a demo trader with
    balances in both modes, and the market maker's ladders. Returns counts of what was created."""
    created = {"markets": 0, "orders": 0}
    mm, _ = trader_get_or_create(username=DEMO_MM, email="demo-mm@example.com", password=None)
    if mm.tier != TraderTier.MARKET_MAKER:
        mm.tier = TraderTier.MARKET_MAKER
        mm.save(update_fields=["tier"])
    demo, _ = trader_get_or_create(username=DEMO_TRADER, email="trader@example.com", password="demo-trader-pw")
    for p in PAIRS:
        existed = Market.objects.filter(symbol=p.symbol).exists()
        market_upsert(
            symbol=p.symbol,
            base_asset=p.symbol.upper(),
            tick_size=p.tick,
            lot_size=p.lot,
            min_order_size=p.min_size,
            name=p.name,
            total_supply=Decimal(p.supply) if p.supply else None,
        )
        created["markets"] += 0 if existed else 1
        ladder = _ladder(p)
        base_need = sum(q for side, _, q in ladder if side == "sell")
        quote_need = sum(px * q for side, px, q in ladder if side == "buy")
        for mode in ("live", "paper"):
            for who, asset, amount in (
                (mm, p.symbol.upper(), base_need * 10),
                (mm, "USDC", quote_need * 10),
                (demo, p.symbol.upper(), base_need),
                (demo, "USDC", quote_need),
            ):
                try:
                    trader_fund(
                        trader=who,
                        asset=asset,
                        amount=amount,
                        mode=mode,
                        idempotency_key=f"demo:{who.user.username}:{mode}:{p.symbol}:{asset}",
                    )
                except IdempotencyConflict:
                    pass  # funded by an earlier version of the demo with another amount: keep it
            if ExchangeOrder.objects.live().filter(trader=mm, market__symbol=p.symbol, mode=mode).exists():
                continue
            for side, price, qty in ladder:
                try:
                    order_place(
                        trader=mm, symbol=p.symbol, side=side, type="post_only", quantity=qty, price=price, mode=mode
                    )
                except ExchangeError:  # another trader's order is in the way: leave that level out
                    continue
                created["orders"] += 1
    if write:
        write(
            f"exchange demo: {created['markets']} markets, {created['orders']} resting orders created; "
            f"traders {DEMO_MM} (market maker) and {DEMO_TRADER} (login trader@example.com / demo-trader-pw)"
        )
    return created
