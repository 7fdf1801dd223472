"""The ``Decimal`` boundary of the book: a market's tick size and lot size turn prices and quantities
into the integer ticks and lots the book works in, and back, exactly.

The matching service keeps one :class:`Instrument` per market and passes the client's strings or
``Decimal`` values through it; a value that is not a whole number of ticks or lots is rejected
(``price_off_tick``, ``qty_off_lot``) rather than rounded. Floats are refused: money is never a float.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from .book import OrderBook
from .constants import Op, Reject
from .events import Rejected


class InvalidInput(ValueError):
    """A price or quantity the book cannot take; ``reason`` is a ``Reject`` code."""

    def __init__(self, reason: str, value: Any = None):
        super().__init__(f"{reason}: {value!r}")
        self.reason = reason
        self.value = value


def _decimal(value: Any, reason: str) -> Decimal:
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        try:
            d = Decimal(value)
        except InvalidOperation:
            raise InvalidInput(reason, value) from None
    else:  # float, bool, None, anything else
        raise InvalidInput(reason, value)
    if not d.is_finite() or d <= 0:
        raise InvalidInput(reason, value)
    return d


def _units(value: Any, step: Decimal, invalid: str, off_step: str) -> int:
    d = _decimal(value, invalid)
    try:
        n, rest = divmod(d, step)
    except InvalidOperation:  # the quotient has more digits than the context holds
        raise InvalidInput(invalid, value) from None
    if rest != 0:
        raise InvalidInput(off_step, value)
    return int(n)


class Instrument:
    """Tick size and lot size of one market, with exact conversions to and from the book's integers."""

    __slots__ = ("tick_size", "lot_size")

    def __init__(self, tick_size: Decimal | str, lot_size: Decimal | str):
        self.tick_size = _decimal(tick_size, "invalid_tick_size")
        self.lot_size = _decimal(lot_size, "invalid_lot_size")

    def to_ticks(self, price: Any) -> int:
        """``Decimal("0.0030")`` with tick ``0.0001`` -> ``30``; raises :class:`InvalidInput`."""
        return _units(price, self.tick_size, Reject.INVALID_PRICE, Reject.PRICE_OFF_TICK)

    def to_lots(self, qty: Any) -> int:
        """``Decimal("1000")`` with lot ``10`` -> ``100``; raises :class:`InvalidInput`."""
        return _units(qty, self.lot_size, Reject.INVALID_QTY, Reject.QTY_OFF_LOT)

    def price(self, ticks: int) -> Decimal:
        return self.tick_size * ticks

    def qty(self, lots: int) -> Decimal:
        return self.lot_size * lots

    def submit(
        self,
        book: OrderBook,
        *,
        order_id: Any,
        owner: Any,
        side: str,
        order_type: str,
        quantity: Any,
        price: Any = None,
        stop_price: Any = None,
        display_qty: Any = None,
        expire_at: int | None = None,
        stp: str | None = None,
    ) -> list:
        """:meth:`OrderBook.submit` with ``Decimal``/string prices and quantities. A price or quantity off
        the tick or lot grid is answered with ``[Rejected]`` like any other refusal. ``price`` is
        ignored for market and stop_market orders, as the API documents."""
        try:
            qty = self.to_lots(quantity)
            ticks = None if price is None or order_type in ("market", "stop_market") else self.to_ticks(price)
            stop = None if stop_price is None else self.to_ticks(stop_price)
            display = (
                None
                if display_qty is None
                else _units(display_qty, self.lot_size, Reject.INVALID_DISPLAY_QTY, Reject.QTY_OFF_LOT)
            )
        except InvalidInput as exc:
            return [Rejected(Op.SUBMIT, order_id, exc.reason)]
        return book.submit(
            order_id,
            owner,
            side,
            order_type,
            qty,
            ticks,
            stop_price=stop,
            display_qty=display,
            expire_at=expire_at,
            stp=stp,
        )

    def amend(self, book: OrderBook, order_id: Any, *, price: Any = None, quantity: Any = None) -> list:
        """:meth:`OrderBook.amend` with ``Decimal``/string values (``quantity`` is the new open quantity)."""
        try:
            ticks = None if price is None else self.to_ticks(price)
            lots = None if quantity is None else self.to_lots(quantity)
        except InvalidInput as exc:
            return [Rejected(Op.AMEND, order_id, exc.reason)]
        return book.amend(order_id, price=ticks, qty=lots)
