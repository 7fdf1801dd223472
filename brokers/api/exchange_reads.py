"""A client's orders and positions on the house exchange, read through ``exchanges``' models.

The house exchange is a spot market: a trader's *positions* are its non-zero ledger balances per
asset (live mode), each with what is held by resting orders, plus its live orders' count. Its
*orders* are its ``ExchangeOrder`` rows, newest first. Scoped by trader (``for_trader``), which the
caller has already resolved through the broker's scope.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps

from exchanges.ledger.choices import Mode
from exchanges.ledger.models import LedgerAccount


def _order_model():
    try:
        return apps.get_model("exchanges", "ExchangeOrder")
    except LookupError:  # the house exchange's order book is not installed in this build
        return None


RECENT_TRADES = 100


def trades(trader) -> list[dict[str, Any]]:
    """The trader's latest fills (as taker or maker), newest first: its trade history."""
    try:
        ExchangeTrade = apps.get_model("exchanges", "ExchangeTrade")
    except LookupError:
        return []
    taker = ExchangeTrade.objects.filter(taker_trader=trader).order_by("-created_at")[:RECENT_TRADES]
    maker = ExchangeTrade.objects.filter(maker_trader=trader).order_by("-created_at")[:RECENT_TRADES]
    rows = sorted(
        [*taker.select_related("market", "taker_order"), *maker.select_related("market", "maker_order")],
        key=lambda t: (t.created_at, t.pk),
        reverse=True,
    )[:RECENT_TRADES]
    out = []
    for t in rows:
        is_taker = t.taker_trader_id == trader.pk
        side = t.taker_side if is_taker else ("sell" if t.taker_side == "buy" else "buy")
        out.append(
            {
                "trade_id": t.trade_id,
                "symbol": t.market.symbol,
                "mode": t.mode,
                "side": side,
                "role": "taker" if is_taker else "maker",
                "price": t.price,
                "quantity": t.quantity,
                "fee": t.taker_fee if is_taker else t.maker_fee,
                "order_id": (t.taker_order if is_taker else t.maker_order).order_id,
                "created_at": _iso(t.created_at),
            }
        )
    return out


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def orders(trader, *, page: int, size: int) -> dict[str, Any]:
    ExchangeOrder = _order_model()
    if ExchangeOrder is None:
        return {"orders": [], "total": 0, "page": page, "page_size": size, "total_pages": 0}
    qs = ExchangeOrder.objects.for_trader(trader).select_related("market").order_by("-created_at", "-id")
    total = qs.count()
    rows = list(qs[(page - 1) * size : page * size]) if (page - 1) * size < total else []
    return {
        "orders": [
            {
                "order_id": o.order_id,
                "client_order_id": o.client_order_id or None,
                "symbol": o.market.symbol,
                "mode": o.mode,
                "side": o.side,
                "type": o.order_type,
                "price": o.price,
                "quantity": o.quantity,
                "filled_quantity": o.filled_quantity,
                "filled_notional": o.filled_notional,
                "fees_paid": o.fees_paid,
                "fee_asset": o.fee_asset or None,
                "status": o.status,
                "created_at": _iso(o.created_at),
                "updated_at": _iso(o.updated_at),
            }
            for o in rows
        ],
        "total": total,
        "page": page,
        "page_size": size,
        "total_pages": -(-total // size),
    }


def positions(trader) -> dict[str, Any]:
    accounts = (
        LedgerAccount.objects.filter(owner_type="trader", owner_id=str(trader.pk), mode=Mode.LIVE)
        .exclude(balance=0)
        .order_by("asset")
    )
    rows = [{"asset": a.asset, "balance": a.balance, "held": a.held, "available": a.balance - a.held} for a in accounts]
    ExchangeOrder = _order_model()
    open_orders = ExchangeOrder.objects.for_trader(trader).live().count() if ExchangeOrder is not None else 0
    return {"positions": rows, "open_orders": open_orders}
