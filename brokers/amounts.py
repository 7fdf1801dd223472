"""Amount parsing and the withdrawal fee: pure, no Django."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

QUANTUM = Decimal("0.00000001")
MAX_AMOUNT = Decimal("1e15")


class AmountError(ValueError):
    pass


def parse_amount(value: Any, *, field: str = "amount") -> Decimal:
    """A positive amount of at most 8 decimal places, from a JSON number (parsed as Decimal) or a string.

    Floats are taken through their shortest repr (``0.1`` is 0.1); booleans, NaN, infinities,
    negative or zero values and finer precision are refused, never rounded.
    """
    if value is None or value == "":
        raise AmountError(f"{field} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise AmountError(f"{field} must be a number")
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise AmountError(f"{field} must be a number, got {value!r}") from exc
    if not d.is_finite():
        raise AmountError(f"{field} must be a finite number")
    if d <= 0:
        raise AmountError(f"{field} must be positive")
    if d >= MAX_AMOUNT:
        raise AmountError(f"{field} is too large")
    if d.quantize(QUANTUM) != d:
        raise AmountError(f"{field} has more than 8 decimal places")
    return d.quantize(QUANTUM)


def withdrawal_fee(amount: Decimal, bps: Decimal) -> Decimal:
    """``bps`` basis points of ``amount``, rounded up to the quantum (the platform never under-charges)."""
    return (amount * bps / Decimal(10000)).quantize(QUANTUM, rounding=ROUND_CEILING)
