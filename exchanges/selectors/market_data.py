"""Public market data of the house exchange, read from the database (never from a process's memory).

The book's levels are an aggregate over the live order rows (partial index ``xorder_live_book``) and
its ``sequence`` comes from the ``BookState`` row; both are written in the one matching transaction,
so a snapshot read between two commits is consistent. Reads retry when a command commits in between.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Count, F, Max, Min, Q, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from exchanges.models import BookState, ExchangeOrder, ExchangeTrade, Market, OrderStatus

RESTING = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
ZERO = Decimal("0")


def _market(symbol: str | Market) -> Market:
    if isinstance(symbol, Market):
        return symbol
    from exchanges.services.orders import market_get

    return market_get(symbol=symbol)


def _sequence(market: Market, mode: str) -> int:
    return BookState.objects.filter(market=market, mode=mode).values_list("sequence", flat=True).first() or 0


def _levels(market: Market, mode: str, side: str, depth: int | None) -> list[tuple[Decimal, Decimal]]:
    qs = (
        ExchangeOrder.objects.filter(market=market, mode=mode, side=side, status__in=RESTING, visible_quantity__gt=0)
        .values("price")
        .annotate(qty=Sum("visible_quantity"))
        .order_by("-price" if side == "buy" else "price")
        .values_list("price", "qty")
    )
    if depth is not None:
        qs = qs[:depth]
    return [(p, q) for p, q in qs]


def book_snapshot(*, symbol: str | Market, mode: str = "live", depth: int | None = 50) -> dict:
    """``{"sequence", "bids": [(price, qty), ...] best first, "asks": [...]}`` of the CLOB (displayed
    quantity only: iceberg reserve is hidden). ``sequence`` is the last book delta the levels include."""
    market = _market(symbol)
    for _ in range(5):
        seq = _sequence(market, mode)
        bids = _levels(market, mode, "buy", depth)
        asks = _levels(market, mode, "sell", depth)
        if _sequence(market, mode) == seq:
            break
    return {"sequence": seq, "bids": bids, "asks": asks}


def bbo(*, symbol: str | Market, mode: str = "live") -> dict:
    """Best bid and offer: ``{"best_bid", "best_bid_size", "best_ask", "best_ask_size", "sequence"}``
    (``None`` for an empty side)."""
    snap = book_snapshot(symbol=symbol, mode=mode, depth=1)
    bid = snap["bids"][0] if snap["bids"] else (None, None)
    ask = snap["asks"][0] if snap["asks"] else (None, None)
    return {
        "best_bid": bid[0],
        "best_bid_size": bid[1],
        "best_ask": ask[0],
        "best_ask_size": ask[1],
        "sequence": snap["sequence"],
    }


def recent_trades(*, market: Market, mode: str = "live", limit: int = 50) -> list[ExchangeTrade]:
    return list(ExchangeTrade.objects.filter(market=market, mode=mode).order_by("-trade_no")[:limit])


def last_price(*, market: Market, mode: str = "live") -> Decimal | None:
    return (
        ExchangeTrade.objects.filter(market=market, mode=mode)
        .order_by("-trade_no")
        .values_list("price", flat=True)
        .first()
    )


def stats_24h(*, market: Market, mode: str = "live", now: datetime | None = None) -> dict:
    """24-hour figures from trades in SQL: open, high, low, last, volume (base), quote volume, count."""
    now = now or timezone.now()
    since = now - timedelta(hours=24)
    qs = ExchangeTrade.objects.filter(market=market, mode=mode, created_at__gte=since)
    agg = qs.aggregate(
        high=Max("price"),
        low=Min("price"),
        volume=Sum("quantity"),
        quote_volume=Sum(F("price") * F("quantity")),
        count=Count("id"),
    )
    first = qs.order_by("trade_no").values_list("price", flat=True).first()
    last = last_price(market=market, mode=mode)
    # The price 24 h ago is the last trade before the window (if any), else the first inside it.
    before = (
        ExchangeTrade.objects.filter(market=market, mode=mode, created_at__lt=since)
        .order_by("-trade_no")
        .values_list("price", flat=True)
        .first()
    )
    open_ = before if before is not None else first
    change = (last - open_) if last is not None and open_ is not None else None
    change_pct = (change / open_ * 100).quantize(Decimal("0.01")) if change is not None and open_ else None
    return {
        "open": open_,
        "high": agg["high"],
        "low": agg["low"],
        "last": last,
        "volume": agg["volume"] or ZERO,
        "quote_volume": agg["quote_volume"] or ZERO,
        "trade_count": agg["count"],
        "change": change,
        "change_pct": change_pct,
    }


def liquidity(*, market: Market, mode: str = "live") -> dict:
    """Resting CLOB liquidity: base quantity per side and the quote value of it (displayed only)."""
    agg = ExchangeOrder.objects.filter(market=market, mode=mode, status__in=RESTING).aggregate(
        bid_qty=Sum("visible_quantity", filter=Q(side="buy")),
        ask_qty=Sum("visible_quantity", filter=Q(side="sell")),
        bid_value=Sum(F("visible_quantity") * F("price"), filter=Q(side="buy")),
        ask_value=Sum(F("visible_quantity") * F("price"), filter=Q(side="sell")),
        orders=Count("id"),
    )
    return {k: (v if v is not None else ZERO) for k, v in agg.items()}


INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}


def _bucket_sql(seconds: int) -> RawSQL:
    """The trade's candle bucket (epoch seconds of its start), in SQL on either database."""
    if connection.vendor == "postgresql":
        return RawSQL("(FLOOR(EXTRACT(EPOCH FROM created_at) / %s) * %s)::bigint", (seconds, seconds))
    return RawSQL("(CAST(strftime('%%s', created_at) AS INTEGER) / %s) * %s", (seconds, seconds))


def candles(
    *, market: Market, interval: str, limit: int, mode: str = "live", now: datetime | None = None
) -> list[dict]:
    """OHLC candles of ``interval`` from trades, oldest first, the last ``limit`` buckets that had trades.

    Buckets are aligned to the epoch (UTC). Two queries: high, low, volume and the first and last trade
    number per bucket (grouped in SQL), then the prices of those first and last trades (open, close).
    """
    seconds = INTERVALS[interval]
    now = now or timezone.now()
    start_ts = (int(now.timestamp()) // seconds - limit + 1) * seconds
    since = datetime.fromtimestamp(start_ts, tz=UTC)
    rows = list(
        ExchangeTrade.objects.filter(market=market, mode=mode, created_at__gte=since)
        .annotate(bucket=_bucket_sql(seconds))
        .values("bucket")
        .annotate(
            high=Max("price"), low=Min("price"), volume=Sum("quantity"), first=Min("trade_no"), last=Max("trade_no")
        )
        .order_by("bucket")
    )[-limit:]
    nos = {r["first"] for r in rows} | {r["last"] for r in rows}
    prices = dict(
        ExchangeTrade.objects.filter(market=market, mode=mode, trade_no__in=nos).values_list("trade_no", "price")
    )
    return [
        {
            "timestamp": int(r["bucket"]),
            "open": prices[r["first"]],
            "high": r["high"],
            "low": r["low"],
            "close": prices[r["last"]],
            "volume": r["volume"],
        }
        for r in rows
    ]
