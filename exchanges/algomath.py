"""Pure maths of the exchange's algorithmic orders (TWAP slices, scale-order ladders). No Django.

Quantities are split in whole lots, never rounded off the lot grid; prices of a scale ladder are on
the tick grid. Every function refuses impossible input with :class:`AlgoMathError` naming the
parameter, so the service can answer a 400 before anything is written. docs/exchange-algos.md.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, localcontext

LINEAR = "linear"
EXPONENTIAL = "exponential"
DISTRIBUTIONS = (LINEAR, EXPONENTIAL)
#: Exponential scale orders: each order is this many times the size of the one before it, moving
#: away from the market (deeper buys, higher sells), unless the request gives ``size_ratio``.
DEFAULT_SIZE_RATIO = Decimal("1.25")
MAX_SIZE_RATIO = Decimal("10")


class AlgoMathError(ValueError):
    def __init__(self, code: str, message: str, parameter: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.parameter = parameter


def lots_of(quantity: Decimal, lot_size: Decimal, parameter: str = "quantity") -> int:
    """``quantity`` as a whole number of lots, or an error if it is off the lot grid."""
    if quantity <= 0:
        raise AlgoMathError("invalid_quantity", f"{parameter} must be positive", parameter)
    lots = quantity / lot_size
    if lots != lots.to_integral_value():
        raise AlgoMathError("quantity_off_lot", f"{parameter} must be a multiple of the lot size {lot_size}", parameter)
    return int(lots)


# --- TWAP ------------------------------------------------------------------------------------------------------


def twap_slices(quantity: Decimal, num_slices: int, lot_size: Decimal, min_order_size: Decimal) -> list[Decimal]:
    """Split ``quantity`` into ``num_slices`` sizes differing by at most one lot (earlier slices take
    the extra lots), each at least ``min_order_size``."""
    lots = lots_of(quantity, lot_size)
    if num_slices < 1:
        raise AlgoMathError("invalid_parameter", "num_slices must be at least 1", "num_slices")
    base, extra = divmod(lots, num_slices)
    sizes = [(base + (1 if i < extra else 0)) * lot_size for i in range(num_slices)]
    smallest = sizes[-1]
    if smallest <= 0 or smallest < min_order_size:
        raise AlgoMathError(
            "below_min_order_size",
            f"quantity / num_slices is below the minimum order size {min_order_size}: use fewer slices",
            "num_slices",
        )
    return sizes


def twap_schedule(start: dt.datetime, duration_minutes: int, num_slices: int) -> list[dt.datetime]:
    """Slice ``i`` is due at ``start + i * duration / num_slices``: the first at once, the last one
    interval before the end, so the order is worked evenly across the duration."""
    step = dt.timedelta(minutes=duration_minutes) / num_slices
    return [start + step * i for i in range(num_slices)]


# --- scale orders ----------------------------------------------------------------------------------------------


def on_tick(price: Decimal, tick_size: Decimal) -> bool:
    q = price / tick_size
    return q == q.to_integral_value()


def scale_prices(price_low: Decimal, price_high: Decimal, num_orders: int, tick_size: Decimal) -> list[Decimal]:
    """``num_orders`` prices evenly spaced from ``price_low`` to ``price_high`` inclusive, interior
    ones rounded to the nearest tick; all distinct. One order sits at ``price_low``."""
    if price_low <= 0:
        raise AlgoMathError("invalid_price", "price_low must be positive", "price_low")
    if price_high < price_low:
        raise AlgoMathError("invalid_price", "price_high must be at least price_low", "price_high")
    for name, value in (("price_low", price_low), ("price_high", price_high)):
        if not on_tick(value, tick_size):
            raise AlgoMathError("price_off_tick", f"{name} must be a multiple of the tick size {tick_size}", name)
    if num_orders == 1:
        return [price_low]
    ticks = int((price_high - price_low) / tick_size)
    if ticks < num_orders - 1:
        raise AlgoMathError(
            "invalid_parameter",
            f"price_low..price_high spans {ticks + 1} ticks: too narrow for {num_orders} distinct prices",
            "num_orders",
        )
    prices = []
    for i in range(num_orders):
        steps = (Decimal(ticks) * i / (num_orders - 1)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        prices.append(price_low + steps * tick_size)
    return prices


def scale_weights(num_orders: int, distribution: str, size_ratio: Decimal | None = None) -> list[Decimal]:
    """Relative sizes, nearest the market first: ``linear`` all equal; ``exponential`` each one
    ``size_ratio`` (default 1.25) times the one before."""
    if distribution == LINEAR:
        return [Decimal(1)] * num_orders
    if distribution != EXPONENTIAL:
        raise AlgoMathError("invalid_parameter", "distribution must be linear or exponential", "distribution")
    ratio = DEFAULT_SIZE_RATIO if size_ratio is None else size_ratio
    if not Decimal(1) < ratio <= MAX_SIZE_RATIO:
        raise AlgoMathError(
            "invalid_parameter", f"size_ratio must be above 1 and at most {MAX_SIZE_RATIO}", "size_ratio"
        )
    return [ratio**i for i in range(num_orders)]


def split_by_weights(quantity: Decimal, weights: list[Decimal], lot_size: Decimal) -> list[Decimal]:
    """Whole lots in proportion to ``weights`` (largest-remainder method: the sum is exact)."""
    lots = lots_of(quantity, lot_size)
    with localcontext() as ctx:
        ctx.prec = 50
        total = sum(weights)
        raw = [Decimal(lots) * w / total for w in weights]
    floors = [int(r) for r in raw]
    left = lots - sum(floors)
    order = sorted(range(len(raw)), key=lambda i: (raw[i] - floors[i], weights[i], -i), reverse=True)
    for i in order[:left]:
        floors[i] += 1
    return [n * lot_size for n in floors]


def scale_ladder(
    *,
    side: str,
    quantity: Decimal,
    price_low: Decimal,
    price_high: Decimal,
    num_orders: int,
    distribution: str,
    tick_size: Decimal,
    lot_size: Decimal,
    min_order_size: Decimal,
    size_ratio: Decimal | None = None,
) -> list[tuple[Decimal, Decimal]]:
    """``[(price, quantity), ...]`` nearest the market first (buys: highest price first; sells:
    lowest first). Every child is on tick, on lot and at least ``min_order_size``, or nothing is."""
    if side not in ("buy", "sell"):
        raise AlgoMathError("invalid_side", "side must be buy or sell", "side")
    if not 1 <= num_orders <= 50:
        raise AlgoMathError("invalid_parameter", "num_orders must be 1..50", "num_orders")
    prices = scale_prices(price_low, price_high, num_orders, tick_size)
    if side == "buy":
        prices = prices[::-1]  # the market is above a buy ladder: the highest buy is nearest
    sizes = split_by_weights(quantity, scale_weights(num_orders, distribution, size_ratio), lot_size)
    for q in sizes:
        if q < min_order_size:
            raise AlgoMathError(
                "below_min_order_size",
                f"a child order of {q} is below the minimum order size {min_order_size}: use fewer orders",
                "num_orders",
            )
    return list(zip(prices, sizes, strict=True))
