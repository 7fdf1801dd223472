"""Status values and constants of the ledger, defined once."""

from decimal import Decimal

from django.db import models

#: Every amount is a multiple of this (8 decimal places, as most crypto assets and USDC need).
AMOUNT_PLACES = 8
QUANTUM = Decimal(1).scaleb(-AMOUNT_PLACES)
AMOUNT_DIGITS = 30


class Mode(models.TextChoices):
    LIVE = "live"
    PAPER = "paper"


class HoldStatus(models.TextChoices):
    ACTIVE = "active"
    PARTIALLY_CAPTURED = "partially_captured"
    CAPTURED = "captured"
    RELEASED = "released"


#: Holds whose ``remaining`` still counts in the account's ``held``.
OPEN_HOLD_STATUSES = (HoldStatus.ACTIVE, HoldStatus.PARTIALLY_CAPTURED)


class OwnerType:
    """Well-known owner types; any short string works (the ledger imports no owner's model)."""

    SYSTEM = "system"  # the outside world: deposits come from it, withdrawals go to it
    PLATFORM = "platform"  # the house: fee income
    TRADER = "trader"
    BROKER = "broker"
    CLIENT = "client"


class TxKind:
    """Well-known transaction kinds (free text in the column, so other apps can add their own)."""

    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    TRANSFER = "transfer"
    CAPTURE = "capture"
    TRADE = "trade"
    FEE = "fee"
