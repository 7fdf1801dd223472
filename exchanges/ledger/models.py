"""Ledger models: accounts with cached balances, balanced transactions of postings, holds.

Rows change only through ``exchanges.ledger.services``; the database enforces what it can
(non-zero postings, ``held >= 0``, ``balance - held >= 0`` outside system accounts, one account per
owner/asset/mode, one transaction per idempotency key, one hold per reference per account).
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

from .choices import AMOUNT_DIGITS, AMOUNT_PLACES, QUANTUM, HoldStatus, Mode

HALF_QUANTUM = QUANTUM / 2


def _amount(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, **kwargs)


class LedgerAccount(models.Model):
    """One owner's balance of one asset in one mode.

    The owner is a string reference (``owner_type``, ``owner_id``) so that traders, brokers, MM
    clients, the platform and the outside world can all own accounts without this app importing
    their models. ``balance`` and ``held`` are caches of the postings and the open holds, written in
    the same transaction as them; ``available = balance - held``.
    """

    owner_type = models.CharField(max_length=32)
    owner_id = models.CharField(max_length=64)
    asset = models.CharField(max_length=16)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.LIVE)
    is_system = models.BooleanField(
        default=False, help_text="may go negative (the outside world, where deposits come from)"
    )
    balance = _amount(default=Decimal("0"))
    held = _amount(default=Decimal("0"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner_type", "owner_id", "asset", "mode"], name="ledger_account_key"),
            models.CheckConstraint(condition=Q(held__gte=0), name="ledger_account_held_nonneg"),
            models.CheckConstraint(
                condition=Q(is_system=True) | Q(balance__gte=F("held")), name="ledger_account_available_nonneg"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.owner_type}:{self.owner_id} {self.asset} ({self.mode})"

    @property
    def available(self) -> Decimal:
        return self.balance - self.held


class LedgerTransaction(models.Model):
    """A balanced set of postings: per asset, its postings sum to zero. Written once, never changed."""

    kind = models.CharField(max_length=32)
    idempotency_key = models.CharField(max_length=200, unique=True)
    mode = models.CharField(max_length=8, choices=Mode.choices)
    memo = models.CharField(max_length=255, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key}"


class Posting(models.Model):
    """One leg of a transaction: a signed, non-zero amount on one account."""

    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="postings")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="postings")
    amount = _amount()

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="ledger_posting_nonzero")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount:+}"


class Hold(models.Model):
    """Funds of an account set aside for a reference (a resting order, a withdrawal, a margin).

    ``remaining`` counts in the account's ``held`` while the hold is open (active or partially
    captured); ``amount = remaining + captured + released`` at all times.
    """

    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="holds")
    reference = models.CharField(max_length=128)
    amount = _amount()
    remaining = _amount()
    captured = _amount(default=Decimal("0"))
    released = _amount(default=Decimal("0"))
    status = models.CharField(max_length=24, choices=HoldStatus.choices, default=HoldStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "reference"], name="ledger_hold_reference"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_hold_amount_pos"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0, captured__gte=0, released__gte=0), name="ledger_hold_parts_nonneg"
            ),
            # Within half a quantum rather than "=": SQLite (the embedded default) evaluates this in floating
            # point, where 0.0005 + 0.0175 != 0.018. Amounts are multiples of 10^-8, so on PostgreSQL (NUMERIC)
            # this is exactly equality.
            models.CheckConstraint(
                condition=Q(amount__gte=F("remaining") + F("captured") + F("released") - HALF_QUANTUM)
                & Q(amount__lte=F("remaining") + F("captured") + F("released") + HALF_QUANTUM),
                name="ledger_hold_parts_sum",
            ),
        ]

    def __str__(self) -> str:
        return f"hold {self.reference} {self.remaining}/{self.amount} {self.status}"
