"""Errors the ledger services raise; each means nothing was changed."""

from __future__ import annotations

from decimal import Decimal


class LedgerError(Exception):
    """Base of every ledger refusal."""


class InvalidLegs(LedgerError):
    """The legs are not a valid transaction (unbalanced, zero, off-quantum, mixed modes, repeated account)."""


class InsufficientFunds(LedgerError):
    """A non-system account's available balance would go negative."""

    def __init__(self, *, account_id: int, available: Decimal, requested: Decimal) -> None:
        self.account_id = account_id
        self.available = available
        self.requested = requested
        super().__init__(f"account {account_id}: available {available}, requested {requested}")


class IdempotencyConflict(LedgerError):
    """The idempotency key (or hold reference) was already used for a different movement."""


class HoldNotOpen(LedgerError):
    """The hold is captured or released, or has less remaining than asked."""
