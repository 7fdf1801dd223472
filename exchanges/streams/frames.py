"""Wire frames of the exchange streams (seed 004's WebSocket section), built from plain values.

No Django import: the publisher renders each event once, and consumers forward the JSON text.
Decimals go on the wire as strings without trailing zeros (``"0.003"``), never as floats; a missing
price (an empty side of the book) is ``null``. Times are ISO 8601 UTC with microseconds and ``Z``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal, TypedDict

import orjson

VENUE_CLOB = "CLOB"

Level = list[str | None]  # [price, size]


class BookFrame(TypedDict, total=False):
    type: Literal["snapshot", "update"]
    symbol: str
    mode: str
    sequence: int
    prev_sequence: int  # updates only
    bids: list[Level]
    asks: list[Level]
    timestamp: str


class TradeFrame(TypedDict):
    type: Literal["trade"]
    symbol: str
    mode: str
    trade_id: str
    price: str | None
    quantity: str | None
    side: str
    venue: str
    timestamp: str


class PriceFrame(TypedDict):
    type: Literal["price"]
    symbol: str
    mode: str
    price: str | None
    timestamp: str


class BboFrame(TypedDict):
    type: Literal["bbo"]
    symbol: str
    mode: str
    best_bid: str | None
    best_bid_size: str | None
    best_ask: str | None
    best_ask_size: str | None
    timestamp: str


class BalanceFrame(TypedDict):
    type: Literal["balance_update"]
    mode: str
    asset: str
    available: str | None
    locked: str | None
    total: str | None
    timestamp: str


class ErrorBody(TypedDict):
    code: str
    message: str


class ErrorFrame(TypedDict):
    type: Literal["error"]
    error: ErrorBody


def dec(value: Any) -> str | None:
    """``Decimal("0.00300000")`` -> ``"0.003"``; ``None`` stays ``None``."""
    if value is None:
        return None
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if d == 0:
        return "0"
    return format(d.normalize(), "f")


def iso(ts: dt.datetime | None = None) -> str:
    ts = ts or dt.datetime.now(dt.UTC)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def levels(pairs: Iterable[tuple[Any, Any]] | Iterable[list[Any]]) -> list[list[str | None]]:
    return [[dec(p), dec(q)] for p, q in pairs]


def to_json(frame: Mapping[str, Any]) -> str:
    return orjson.dumps(frame, default=_default).decode()


def ws_text_frame(text: str) -> bytes:
    """``text`` as one unfragmented, unmasked WebSocket text frame (RFC 6455 section 5.2), the bytes a
    server puts on the wire. A server's frames carry no mask, so one frame serves every connection."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 1 << 16:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return dec(value)
    if isinstance(value, dt.datetime):
        return iso(value)
    raise TypeError(f"cannot put {type(value).__name__} on the wire")


# --- public frames -------------------------------------------------------------------------------------------


def book_snapshot(*, symbol: str, mode: str, sequence: int, bids, asks, timestamp: str | None = None) -> BookFrame:
    return {
        "type": "snapshot",
        "symbol": symbol,
        "mode": mode,
        "sequence": int(sequence),
        "bids": levels(bids),
        "asks": levels(asks),
        "timestamp": timestamp or iso(),
    }


def book_update(*, symbol: str, mode: str, sequence: int, bids, asks, timestamp: str | None = None) -> BookFrame:
    """One delta: the levels that changed with their new total size (``"0"`` = the level is gone).
    ``prev_sequence`` is ``sequence - 1``: a client whose last sequence differs has missed a delta."""
    return {
        "type": "update",
        "symbol": symbol,
        "mode": mode,
        "sequence": int(sequence),
        "prev_sequence": int(sequence) - 1,
        "bids": levels(bids),
        "asks": levels(asks),
        "timestamp": timestamp or iso(),
    }


def trade(*, symbol: str, mode: str, trade_id: str, price, quantity, side: str, timestamp) -> TradeFrame:
    """Seed: ``{ price, quantity, side, venue, timestamp }``; ``side`` is the taker's (aggressor's) side."""
    return {
        "type": "trade",
        "symbol": symbol,
        "mode": mode,
        "trade_id": str(trade_id),
        "price": dec(price),
        "quantity": dec(quantity),
        "side": side,
        "venue": VENUE_CLOB,
        "timestamp": timestamp if isinstance(timestamp, str) else iso(timestamp),
    }


def price(*, symbol: str, mode: str, price, timestamp) -> PriceFrame:
    """The price ticker: the last trade price only."""
    return {
        "type": "price",
        "symbol": symbol,
        "mode": mode,
        "price": dec(price),
        "timestamp": timestamp if isinstance(timestamp, str) else iso(timestamp),
    }


def bbo(*, symbol: str, mode: str, best_bid, best_bid_size, best_ask, best_ask_size, timestamp=None) -> BboFrame:
    """Seed: ``{ best_bid, best_bid_size, best_ask, best_ask_size, timestamp }``."""
    return {
        "type": "bbo",
        "symbol": symbol,
        "mode": mode,
        "best_bid": dec(best_bid),
        "best_bid_size": dec(best_bid_size),
        "best_ask": dec(best_ask),
        "best_ask_size": dec(best_ask_size),
        "timestamp": timestamp if isinstance(timestamp, str) else iso(timestamp),
    }


def market(stats: Mapping[str, Any], *, mode: str, timestamp: str | None = None) -> dict:
    """One pair's market-level numbers (price, 24h volume, 24h change), as ``/markets`` has them."""
    frame: dict[str, Any] = {"type": "market", "mode": mode}
    for key, value in stats.items():
        frame[key] = dec(value) if isinstance(value, Decimal) else value
    frame.setdefault("timestamp", timestamp or iso())
    return frame


def error(code: str, message: str) -> ErrorFrame:
    return {"type": "error", "error": {"code": code, "message": message}}


# --- private frames -----------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return dec(value)
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _private(kind: str, body: Mapping[str, Any], mode: str) -> dict:
    frame = _jsonable(dict(body))
    if "type" in frame and "order_type" not in frame:  # the body's own "type" must not hide the frame's
        frame["order_type"] = frame["type"]
    frame["type"] = kind
    frame.setdefault("mode", mode)
    return frame


def order_update(order: Mapping[str, Any], *, mode: str) -> dict:
    """Seed: ``{ order_id, status, filled_quantity, remaining_quantity }``, plus the rest of the order
    exactly as the REST API renders it."""
    return _private("order_update", order, mode)


def fill(fill_body: Mapping[str, Any], *, mode: str) -> dict:
    """Seed: ``{ trade_id, order_id, price, quantity, side, timestamp }`` (the caller's side), as ``trades/mine``."""
    return _private("fill", fill_body, mode)


def balance_update(*, mode: str, asset: str, available, locked, timestamp=None) -> BalanceFrame:
    available_d = Decimal(str(available))
    locked_d = Decimal(str(locked))
    return {
        "type": "balance_update",
        "mode": mode,
        "asset": asset,
        "available": dec(available_d),
        "locked": dec(locked_d),
        "total": dec(available_d + locked_d),
        "timestamp": timestamp if isinstance(timestamp, str) else iso(timestamp),
    }
