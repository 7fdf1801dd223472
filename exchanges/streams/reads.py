"""What the streams read from the database: async wrappers over the exchange's selectors.

Reads run in the thread pool (``thread_sensitive=False``) so that a burst of stream reads never
queues behind the web process's synchronous views (on SQLite they run in the sync thread, see
``_wrap``), and each closes stale connections like any view.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from channels.db import database_sync_to_async
from django.db import connection
from django.db.models import DecimalField, F, Max, Min, Sum
from django.utils import timezone

from exchanges.models.markets import Market
from exchanges.models.orders import BookState, ExchangeTrade

SNAPSHOT_DEPTH_DEFAULT = 50
SNAPSHOT_DEPTH_MAX = 500


def _market_exists(symbol: str) -> bool:
    return Market.objects.filter(symbol=symbol).exists()


def _snapshot(symbol: str, mode: str, depth: int) -> dict[str, Any]:
    from exchanges.selectors.market_data import book_snapshot

    return book_snapshot(symbol=symbol, mode=mode, depth=depth)


def _bbo(symbol: str, mode: str) -> dict[str, Any]:
    from exchanges.selectors.market_data import bbo

    data = bbo(symbol=symbol, mode=mode)
    return {
        "best_bid": data.get("best_bid"),
        "best_bid_size": data.get("best_bid_size"),
        "best_ask": data.get("best_ask"),
        "best_ask_size": data.get("best_ask_size"),
    }


def _last_price(symbol: str, mode: str) -> Decimal | None:
    return BookState.objects.filter(market__symbol=symbol, mode=mode).values_list("last_price", flat=True).first()


def _market_rows(mode: str, symbols: list[str] | None) -> list[dict[str, Any]]:
    """Per pair: last price, 24h volume (base and quote), 24h high/low, 24h change. Two queries."""
    markets = Market.objects.all().order_by("symbol")
    if symbols is not None:
        markets = markets.filter(symbol__in=symbols)
    markets = list(markets.values("id", "symbol", "base_asset", "quote_asset", "status"))
    ids = [m["id"] for m in markets]
    since = timezone.now() - dt.timedelta(hours=24)
    last = dict(BookState.objects.filter(market_id__in=ids, mode=mode).values_list("market_id", "last_price"))
    agg = {
        row["market_id"]: row
        for row in ExchangeTrade.objects.filter(market_id__in=ids, mode=mode, created_at__gte=since)
        .values("market_id")
        .annotate(
            volume=Sum("quantity"),
            quote_volume=Sum(F("price") * F("quantity"), output_field=DecimalField(max_digits=40, decimal_places=16)),
            high=Max("price"),
            low=Min("price"),
        )
    }
    # The first price of the window: the oldest trade inside it (one indexed query per traded pair).
    rows = []
    for m in markets:
        a = agg.get(m["id"])
        price = last.get(m["id"])
        open_price = None
        if a is not None:
            open_price = (
                ExchangeTrade.objects.filter(market_id=m["id"], mode=mode, created_at__gte=since)
                .order_by("created_at", "trade_no")
                .values_list("price", flat=True)
                .first()
            )
        change = None
        if price is not None and open_price:
            change = ((price - open_price) / open_price * 100).quantize(Decimal("0.01"))
        rows.append(
            {
                "symbol": m["symbol"],
                "base_symbol": m["base_asset"],
                "quote_symbol": m["quote_asset"],
                "status": m["status"],
                "price": price,
                "volume_24h": a["volume"] if a else Decimal("0"),
                "quote_volume_24h": a["quote_volume"] if a else Decimal("0"),
                "high_24h": a["high"] if a else None,
                "low_24h": a["low"] if a else None,
                "change_24h": change,
            }
        )
    return rows


def _wrap(fn):
    """Run ``fn`` in the thread pool; on SQLite (embedded default, tests) in the one sync thread instead,
    because SQLite does not let a reader in one thread past a writer in another."""
    pooled = database_sync_to_async(fn, thread_sensitive=False)
    serial = database_sync_to_async(fn, thread_sensitive=True)

    async def call(*args, **kwargs):
        runner = serial if connection.vendor == "sqlite" else pooled
        return await runner(*args, **kwargs)

    call.__name__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


market_exists = _wrap(_market_exists)
snapshot = _wrap(_snapshot)
read_bbo = _wrap(_bbo)
last_price = _wrap(_last_price)
market_rows = _wrap(_market_rows)
