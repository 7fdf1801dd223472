"""Events the order book emits, in the order things happened.

Every call on :class:`~exchanges.book.book.OrderBook` returns a ``list`` of these. They are small
``slots`` dataclasses (mutable only because frozen dataclasses are slower to build; treat them as
read-only). Prices are integer ticks and quantities integer lots; the
:class:`~exchanges.book.instrument.Instrument` converts them to ``Decimal``.

``qty`` in :class:`Cancelled`, :class:`Reduced` and :class:`Expired` is the quantity the event takes
away from the order, so that for every order::

    accepted qty = sum(trade qty) + sum(cancelled/reduced/expired qty) + amendment changes + qty still open

Only :class:`BookDelta` carries ``seq``: consecutive integers per book (1, 2, 3, ...), continuing after
a snapshot is restored, so a book-stream client detects a lost message by a gap. Trades carry
``trade_no``, likewise consecutive per book, which the matching service turns into a trade id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(slots=True)
class Accepted:
    """A new order passed validation. Stop orders are accepted when they are placed, not when they trigger."""

    type: ClassVar[str] = "accepted"
    order_id: Any
    owner: Any
    side: str
    order_type: str
    price: int | None
    qty: int
    stop_price: int | None
    display_qty: int | None
    expire_at: int | None


@dataclass(slots=True)
class Rejected:
    """``op`` (submit, amend, cancel) was refused and changed nothing; ``reason`` is a code of ``Reject``."""

    type: ClassVar[str] = "rejected"
    op: str
    order_id: Any
    reason: str


@dataclass(slots=True)
class Trade:
    """The incoming (taker) order traded ``qty`` at the resting (maker) order's ``price``.

    ``taker_remaining``/``maker_remaining`` are the open quantities after this trade (hidden iceberg
    reserve included); 0 means the order is completely filled and gone.
    """

    type: ClassVar[str] = "trade"
    trade_no: int
    price: int
    qty: int
    taker_order_id: Any
    maker_order_id: Any
    taker_owner: Any
    maker_owner: Any
    taker_side: str
    taker_remaining: int
    maker_remaining: int


@dataclass(slots=True)
class Cancelled:
    """The order is gone; ``qty`` was still open. ``reason`` is a code of ``CancelReason``."""

    type: ClassVar[str] = "cancelled"
    order_id: Any
    qty: int
    reason: str


@dataclass(slots=True)
class Reduced:
    """Self-trade prevention (decrement_and_cancel) took ``qty`` off an order that stays open with ``remaining``."""

    type: ClassVar[str] = "reduced"
    order_id: Any
    qty: int
    remaining: int
    reason: str


@dataclass(slots=True)
class Expired:
    """A good-till-time order reached its ``expire_at`` with ``qty`` still open and is gone."""

    type: ClassVar[str] = "expired"
    order_id: Any
    qty: int


@dataclass(slots=True)
class Amended:
    """The order now has limit ``price`` and open quantity ``qty``.

    ``priority_lost`` is true when the order went to the back of the queue (price change or size
    increase). After a price change the order may trade at once: :class:`Trade` events follow.
    """

    type: ClassVar[str] = "amended"
    order_id: Any
    price: int
    qty: int
    priority_lost: bool


@dataclass(slots=True)
class Triggered:
    """The last trade price went through a stop order's stop price; it now enters the book as ``order_type``
    (``limit`` or ``market``). Its trades, rest or cancellation follow."""

    type: ClassVar[str] = "triggered"
    order_id: Any
    order_type: str
    stop_price: int


@dataclass(slots=True)
class BookDelta:
    """The displayed quantity at ``price`` on ``side`` is now ``qty`` (0: the level is gone). Hidden iceberg
    reserve is never shown."""

    type: ClassVar[str] = "book_delta"
    seq: int
    side: str
    price: int
    qty: int


Event = Accepted | Rejected | Trade | Cancelled | Reduced | Expired | Amended | Triggered | BookDelta
