"""The house exchange's order book core: pure Python, no Django import.

``OrderBook`` matches orders of one symbol in integer ticks and lots and returns events;
``Instrument`` converts ``Decimal`` prices and quantities at the boundary. Rules: docs/exchange-book.md.
"""

from .book import BookDepth, OrderBook, OrderView
from .constants import CancelReason, Op, OrderType, Reject, Side, StpMode
from .events import (
    Accepted,
    Amended,
    BookDelta,
    Cancelled,
    Event,
    Expired,
    Reduced,
    Rejected,
    Trade,
    Triggered,
)
from .instrument import Instrument, InvalidInput

__all__ = [
    "Accepted",
    "Amended",
    "BookDelta",
    "BookDepth",
    "CancelReason",
    "Cancelled",
    "Event",
    "Expired",
    "Instrument",
    "InvalidInput",
    "Op",
    "OrderBook",
    "OrderType",
    "OrderView",
    "Reduced",
    "Reject",
    "Rejected",
    "Side",
    "StpMode",
    "Trade",
    "Triggered",
]
