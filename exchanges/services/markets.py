"""Markets of the house exchange: create or update (console, seed_demo, tests)."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from exchanges.models import Market, MarketKind


@transaction.atomic
def market_upsert(
    *,
    symbol: str,
    base_asset: str,
    quote_asset: str = "USDC",
    tick_size: Decimal | str,
    lot_size: Decimal | str,
    min_order_size: Decimal | str,
    kind: str = MarketKind.TOKEN,
    **fields,
) -> Market:
    """The market ``symbol`` with these settings (created, or updated in place); validated with ``full_clean``."""
    market = Market.objects.select_for_update().filter(symbol=symbol.lower()).first() or Market(symbol=symbol.lower())
    market.base_asset = base_asset.upper()
    market.quote_asset = quote_asset.upper()
    market.tick_size = Decimal(str(tick_size))
    market.lot_size = Decimal(str(lot_size))
    market.min_order_size = Decimal(str(min_order_size))
    market.kind = kind
    if kind == MarketKind.PREDICTION:
        fields.setdefault("min_price", Decimal("0.01"))
        fields.setdefault("max_price", Decimal("0.99"))
    for k, v in fields.items():
        setattr(market, k, v)
    market.full_clean()
    market.save()
    return market
