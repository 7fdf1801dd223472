"""How the exchange API renders orders and fills (the private stream reuses these).

Decimals are strings without exponent or trailing zeros (``"0.003"``, ``"1000"``), as the seed's
examples send them; times are ISO 8601 UTC.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from exchanges.models import ExchangeOrder, ExchangeTrade


def dec(value: Decimal | None) -> str | None:
    """``Decimal("1000.00000000")`` -> ``"1000"``; ``None`` stays ``None``."""
    if value is None:
        return None
    s = format(value, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s or "0"


def ts(value) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def order_json(order: ExchangeOrder) -> dict[str, Any]:
    """One order as every exchange endpoint returns it (``order_id`` and its alias ``id``)."""
    avg = order.avg_fill_price
    return {
        "order_id": order.order_id,
        "id": order.order_id,
        "client_order_id": order.client_order_id or None,
        "symbol": order.market.symbol,
        "mode": order.mode,
        "side": order.side,
        "order_type": order.order_type,
        "price": dec(order.price),
        "stop_price": dec(order.stop_price),
        "quantity": dec(order.quantity),
        "filled_quantity": dec(order.filled_quantity),
        "remaining_quantity": dec(order.remaining_quantity),
        "avg_fill_price": None if avg is None else dec(avg.quantize(Decimal("0.00000001"))),
        "display_qty": dec(order.display_qty),
        "expire_at": order.expire_at,
        "stp_mode": order.stp_mode,
        "status": order.status,
        "cancel_reason": order.cancel_reason or None,
        "fees_paid": dec(order.fees_paid),
        "fee_asset": order.fee_asset or None,
        "created_at": ts(order.created_at),
        "updated_at": ts(order.updated_at),
    }


def batch_json(outcomes: list[Any], order_ids: list[str] | None = None) -> dict[str, Any]:
    """A batch place or cancel answer: each order's outcome (its row, or the ``ExchangeError`` refusing it)
    in request order, with ``order_id`` for a cancel batch (``order_ids``), and the counts."""
    from exchanges.errors import ExchangeError

    results = []
    for i, outcome in enumerate(outcomes):
        failed = isinstance(outcome, ExchangeError)
        entry: dict[str, Any] = {"index": i, "success": not failed}
        if order_ids is not None:
            entry["order_id"] = order_ids[i]
        if failed:
            entry["error"] = {"code": outcome.code, "message": outcome.message}
        else:
            entry["order"] = order_json(outcome)
        results.append(entry)
    ok = sum(1 for r in results if r["success"])
    return {"total": len(results), "successful": ok, "failed": len(results) - ok, "results": results}


def fill_json(trade: ExchangeTrade, trader: Any) -> dict[str, Any]:
    """One side of ``trade`` as ``trader`` (a Trader or its id) sees it: its order, side, role and fee."""
    trader_id = trader if isinstance(trader, int) else trader.pk
    is_taker = trade.taker_trader_id == trader_id
    order = trade.taker_order if is_taker else trade.maker_order
    side = trade.taker_side if is_taker else ("sell" if trade.taker_side == "buy" else "buy")
    fee = trade.taker_fee if is_taker else trade.maker_fee
    return {
        "trade_id": trade.trade_id,
        "id": trade.trade_id,
        "order_id": order.order_id,
        "symbol": trade.market.symbol,
        "mode": trade.mode,
        "side": side,
        "role": "taker" if is_taker else "maker",
        "price": dec(trade.price),
        "quantity": dec(trade.quantity),
        "fee": dec(fee),
        "fee_asset": trade.market.base_asset if side == "buy" else trade.market.quote_asset,
        "timestamp": ts(trade.created_at),
    }


def public_trade_json(trade: ExchangeTrade) -> dict[str, Any]:
    """A trade on the public tape (``trades``): no order ids, no owners."""
    return {
        "trade_id": trade.trade_id,
        "price": dec(trade.price),
        "quantity": dec(trade.quantity),
        "side": trade.taker_side,
        "venue": "CLOB",
        "timestamp": ts(trade.created_at),
    }
