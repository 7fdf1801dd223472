"""Names used by the order book core: sides, order types, STP modes and reason codes.

Plain ``str`` constants (not ``enum``): the matcher compares them on every order, and a plain string
compares fastest. The API layer may accept exactly these strings from clients (they are the seed's
spelling where the seed has one: ``buy``/``sell``, ``limit``, ``market``, ``ioc``, ``post_only``,
``stop_limit``).
"""

from __future__ import annotations


class Side:
    BUY = "buy"
    SELL = "sell"
    ALL = frozenset({BUY, SELL})


class OrderType:
    LIMIT = "limit"  # rests until filled, cancelled or expired
    MARKET = "market"  # takes whatever is there, never rests
    IOC = "ioc"  # limit price, takes what it can, the rest is cancelled
    FOK = "fok"  # limit price, fills completely at once or is rejected
    POST_ONLY = "post_only"  # limit that is rejected if it would take
    STOP_LIMIT = "stop_limit"  # held off-book until the trigger, then a limit order
    STOP_MARKET = "stop_market"  # held off-book until the trigger, then a market order

    ALL = frozenset({LIMIT, MARKET, IOC, FOK, POST_ONLY, STOP_LIMIT, STOP_MARKET})
    NEEDS_PRICE = frozenset({LIMIT, IOC, FOK, POST_ONLY, STOP_LIMIT})
    STOPS = frozenset({STOP_LIMIT, STOP_MARKET})
    RESTING = frozenset({LIMIT, POST_ONLY})  # types that may rest on the book
    MAY_EXPIRE = frozenset({LIMIT, POST_ONLY, STOP_LIMIT, STOP_MARKET})
    MAY_BE_ICEBERG = frozenset({LIMIT, POST_ONLY, STOP_LIMIT})


class StpMode:
    """Self-trade prevention: what happens when an incoming order meets a resting order of the same owner.

    The incoming (taker) order's mode decides.
    """

    CANCEL_RESTING = "cancel_resting"  # the resting order is cancelled, the incoming one goes on matching
    CANCEL_INCOMING = "cancel_incoming"  # the rest of the incoming order is cancelled, the resting one stays
    CANCEL_BOTH = "cancel_both"  # both are cancelled
    DECREMENT_AND_CANCEL = "decrement_and_cancel"  # both shrink by the smaller size; a size-0 order is cancelled

    ALL = frozenset({CANCEL_RESTING, CANCEL_INCOMING, CANCEL_BOTH, DECREMENT_AND_CANCEL})


class Reject:
    """Reason codes of :class:`~exchanges.book.events.Rejected`."""

    DUPLICATE_ORDER_ID = "duplicate_order_id"
    UNKNOWN_ORDER = "unknown_order"
    INVALID_SIDE = "invalid_side"
    INVALID_ORDER_TYPE = "invalid_order_type"
    INVALID_QTY = "invalid_qty"
    INVALID_PRICE = "invalid_price"
    INVALID_STOP_PRICE = "invalid_stop_price"
    INVALID_DISPLAY_QTY = "invalid_display_qty"
    INVALID_EXPIRE_AT = "invalid_expire_at"
    INVALID_STP = "invalid_stp"
    ALREADY_EXPIRED = "already_expired"
    PRICE_OFF_TICK = "price_off_tick"  # from the Decimal boundary (Instrument)
    QTY_OFF_LOT = "qty_off_lot"  # from the Decimal boundary (Instrument)
    POST_ONLY_WOULD_CROSS = "post_only_would_cross"
    FOK_UNFILLABLE = "fok_unfillable"
    NO_LIQUIDITY = "no_liquidity"  # market order on an empty opposite side
    STOP_WOULD_TRIGGER = "stop_would_trigger"  # the last trade price is already through the stop price
    NOT_AMENDABLE = "not_amendable"  # stop orders waiting for their trigger: cancel and place again


class CancelReason:
    """Reason codes of :class:`~exchanges.book.events.Cancelled` and :class:`~exchanges.book.events.Reduced`."""

    REQUESTED = "requested"  # cancel() by the owner
    UNFILLED = "unfilled"  # remainder of an ioc / market / fok order that does not rest
    SELF_TRADE = "self_trade"  # self-trade prevention


class Op:
    """Which call a :class:`~exchanges.book.events.Rejected` answers."""

    SUBMIT = "submit"
    AMEND = "amend"
    CANCEL = "cancel"
