"""The house exchange's refusals: one exception with a machine code, a message and an HTTP status.

Services raise :class:`ExchangeError` **before** writing anything; the API renders it as
``{"error": {"code": ..., "message": ...}}`` (docs/api/exchange.md lists every code).
"""

from __future__ import annotations


class ExchangeError(Exception):
    """A refused exchange request. ``code`` is stable (clients branch on it), ``message`` is for people."""

    status: int = 400

    def __init__(self, code: str, message: str, *, status: int | None = None, parameter: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.parameter = parameter

    def __repr__(self) -> str:
        return f"ExchangeError({self.code!r}, {self.message!r}, status={self.status})"


class Codes:
    """Every error code the exchange answers with, defined once."""

    INVALID_SYMBOL = "invalid_symbol"  # 404: no such pair
    MARKET_NOT_ACTIVE = "market_not_active"  # 409: halted or closed pair
    INVALID_SIDE = "invalid_side"
    INVALID_ORDER_TYPE = "invalid_order_type"
    INVALID_QUANTITY = "invalid_quantity"
    INVALID_PRICE = "invalid_price"
    INVALID_STOP_PRICE = "invalid_stop_price"
    INVALID_MODE = "invalid_mode"
    INVALID_PARAMETER = "invalid_parameter"
    PRICE_OFF_TICK = "price_off_tick"
    QUANTITY_OFF_LOT = "quantity_off_lot"
    BELOW_MIN_SIZE = "below_min_order_size"
    PRICE_OUT_OF_RANGE = "price_out_of_range"  # prediction markets: 0.01 .. 0.99
    INSUFFICIENT_BALANCE = "insufficient_balance"
    UNKNOWN_ORDER = "unknown_order"  # 404
    ORDER_NOT_OPEN = "order_not_open"  # 409: cancel/amend of a done order
    POST_ONLY_WOULD_CROSS = "post_only_would_cross"
    FOK_UNFILLABLE = "fok_unfillable"
    NO_LIQUIDITY = "no_liquidity"
    STOP_WOULD_TRIGGER = "stop_would_trigger"
    NOT_AMENDABLE = "not_amendable"
    ALREADY_EXPIRED = "already_expired"
    INVALID_EXPIRE_AT = "invalid_expire_at"
    INVALID_DISPLAY_QTY = "invalid_display_qty"
    INVALID_STP_MODE = "invalid_stp_mode"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    BATCH_TOO_LARGE = "batch_too_large"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_DESTINATION = "invalid_destination"
    UNSUPPORTED_ORDER_TYPE = "unsupported_order_type"
    BUSY = "busy"  # 503: the book could not be locked in time
