"""What the streams read from the database: async wrappers over the exchange's selectors.

Reads run in the thread pool (``thread_sensitive=False``) so that a burst of stream reads never
queues behind the web process's synchronous views (on SQLite they run in the sync thread, see
``_wrap``), and each closes stale connections like any view.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from channels.db import database_sync_to_async
from django.db import connection

from exchanges.models.markets import Market, MarketStatus
from exchanges.models.orders import BookState

SNAPSHOT_DEPTH_DEFAULT = 50
SNAPSHOT_DEPTH_MAX = 500


def _market_exists(symbol: str) -> bool:
    return Market.objects.filter(symbol=symbol).exclude(status=MarketStatus.CLOSED).exists()


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
    """Per listed pair, the figures ``GET /markets`` shows: last price, 24 h volume (base and quote),
    high, low, change and change in percent (``stats_24h``, the same selector as the REST API)."""
    from exchanges.selectors.market_data import stats_24h

    markets = Market.objects.exclude(status=MarketStatus.CLOSED).order_by("symbol")
    if symbols is not None:
        markets = markets.filter(symbol__in=symbols)
    rows = []
    for m in markets:
        st = stats_24h(market=m, mode=mode)
        rows.append(
            {
                "symbol": m.symbol,
                "base_symbol": m.base_asset,
                "quote_symbol": m.quote_asset,
                "status": m.status,
                "price": st["last"],
                "volume_24h": st["volume"],
                "quote_volume_24h": st["quote_volume"],
                "high_24h": st["high"],
                "low_24h": st["low"],
                "change_24h": st["change"],
                "change_24h_pct": st["change_pct"],
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
