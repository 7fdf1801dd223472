"""Scale orders (seed 004 ``POST /api/v1/exchange/{symbol}/scale``): one quantity spread as limit
orders over a price range. docs/exchange-algos.md. In short:

- ``num_orders`` prices evenly spaced from ``price_low`` to ``price_high`` inclusive, on the tick grid;
- ``distribution`` is how the quantity spreads over them: ``linear`` equal sizes, ``exponential``
  each order ``size_ratio`` (default 1.25) times the one nearer the market (buys grow toward
  ``price_low``, sells toward ``price_high``); whole lots, the sum exact;
- all or nothing: every child is checked (tick, lot, minimum size, price range) before any is placed,
  and all are placed in **one** transaction: if any is refused (``insufficient_balance`` for the
  ladder's total, a ``post_only`` that would cross, ...) none stays and the error names the child.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from exchanges.algomath import DISTRIBUTIONS, LINEAR, AlgoMathError, scale_ladder
from exchanges.errors import Codes, ExchangeError
from exchanges.models import ExchangeOrder, Trader
from exchanges.services.orders import (
    decimal_param,
    market_for_orders,
    mode_check,
    order_place,
    price_check,
    quantity_check,
    side_check,
)
from exchanges.services.twap import int_param

CHILD_TYPES = ("limit", "post_only")


def scale_place(
    *,
    trader: Trader,
    symbol: str,
    side: Any,
    quantity: Any,
    price_low: Any,
    price_high: Any,
    num_orders: Any = None,
    distribution: Any = None,
    mode: Any = "live",
    order_type: Any = None,
    size_ratio: Any = None,
) -> list[ExchangeOrder]:
    """Place the ladder; returns its orders nearest the market first."""
    mode = mode_check(mode if mode not in (None, "") else "live")
    market = market_for_orders(symbol)
    side_check(side)
    qty = quantity_check(market, quantity)
    low = price_check(market, price_low, name="price_low")
    high = price_check(market, price_high, name="price_high")
    n = int_param(num_orders, name="num_orders", default=10, low=1, high=50)
    dist = LINEAR if distribution in (None, "") else distribution
    if dist not in DISTRIBUTIONS:
        raise ExchangeError(
            Codes.INVALID_PARAMETER,
            f"distribution must be linear or exponential, got {dist!r}",
            parameter="distribution",
        )
    child_type = "limit" if order_type in (None, "") else order_type
    if child_type not in CHILD_TYPES:
        raise ExchangeError(
            Codes.INVALID_ORDER_TYPE, "a scale order's order_type is limit or post_only", parameter="order_type"
        )
    ratio: Decimal | None = None
    if size_ratio not in (None, ""):
        ratio = decimal_param(size_ratio, name="size_ratio", code=Codes.INVALID_PARAMETER)
    try:
        ladder = scale_ladder(
            side=side,
            quantity=qty,
            price_low=low,
            price_high=high,
            num_orders=n,
            distribution=dist,
            tick_size=market.tick_size,
            lot_size=market.lot_size,
            min_order_size=market.min_order_size,
            size_ratio=ratio,
        )
    except AlgoMathError as exc:
        raise ExchangeError(exc.code, exc.message, parameter=exc.parameter) from None

    orders: list[ExchangeOrder] = []
    with transaction.atomic():
        for i, (price, size) in enumerate(ladder):
            try:
                orders.append(
                    order_place(
                        trader=trader,
                        symbol=market.symbol,
                        side=side,
                        type=child_type,
                        quantity=size,
                        price=price,
                        mode=mode,
                    )
                )
            except ExchangeError as exc:
                # The whole ladder rolls back with this transaction; say which child failed.
                raise ExchangeError(
                    exc.code,
                    f"scale order child {i + 1} of {len(ladder)} ({size} @ {price}) refused: {exc.message};"
                    " no order was placed",
                    status=exc.status,
                    parameter=exc.parameter,
                ) from exc
    return orders
