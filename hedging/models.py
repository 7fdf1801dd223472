"""Bookmakers and hedge bets.

A hedge bet is written (``pending``) before the bookmaker is called, unique per fill and under an
idempotency key the bookmaker call carries, so a retry can never place a second bet.
References to ``trading`` models are strings: ``hedging`` imports nothing from ``trading``.
"""

from decimal import Decimal

from django.db import models
from django.db.models import Q

from .choices import BetSettlementStatus, BetStatus


class Bookmaker(models.Model):
    name = models.SlugField(max_length=64, unique=True, help_text="Bookmaker code, e.g. 'vertex'")
    display_name = models.CharField(max_length=128, blank=True)
    active = models.BooleanField(default=True)
    simulated = models.BooleanField(default=False, help_text="Hedges go to the in-process simulated bookmaker")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class HedgeBetQuerySet(models.QuerySet):
    def for_client(self, client) -> "HedgeBetQuerySet":
        return self.filter(client=client)


class HedgeBet(models.Model):
    """A bet at a bookmaker that hedges one exchange fill (seed 000 'bet' object)."""

    client = models.ForeignKey("trading.Client", on_delete=models.PROTECT, related_name="bets")
    order = models.ForeignKey("trading.Order", on_delete=models.PROTECT, related_name="bets")
    fill = models.OneToOneField(
        "trading.Fill", on_delete=models.PROTECT, related_name="hedge_bet", null=True, blank=True
    )
    bookmaker = models.ForeignKey(Bookmaker, on_delete=models.PROTECT, related_name="bets")
    idempotency_key = models.CharField(max_length=96, unique=True)
    bookmaker_bet_id = models.CharField(max_length=128, blank=True, default="")
    # Requested values until the bookmaker answers, then the accepted ones.
    placed_price = models.DecimalField(max_digits=10, decimal_places=4)
    placed_stake = models.DecimalField(max_digits=18, decimal_places=4)
    bet_status = models.CharField(max_length=16, choices=BetStatus.choices, default=BetStatus.PENDING)
    settlement_status = models.CharField(
        max_length=16, choices=BetSettlementStatus.choices, default=BetSettlementStatus.UNDECIDED
    )
    decline_reason = models.CharField(max_length=255, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    placed_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = HedgeBetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["client", "-created_at"], name="bet_client_created"),
            models.Index(fields=["client", "bet_status"], name="bet_client_status"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(placed_price__gt=Decimal("1")), name="bet_price_gt_1"),
            models.CheckConstraint(condition=Q(placed_stake__gt=0), name="bet_stake_positive"),
            models.CheckConstraint(condition=Q(bet_status__in=BetStatus.values), name="bet_status_valid"),
            models.CheckConstraint(
                condition=Q(settlement_status__in=BetSettlementStatus.values), name="bet_settlement_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"bet {self.pk} {self.placed_stake}@{self.placed_price} {self.bet_status}"


class SimBookmakerBetStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PLACED = "placed", "Placed"
    DECLINED = "declined", "Declined"


class SimBookmakerBet(models.Model):
    """A bet as the simulated bookmaker knows it (the bookmaker's side of the truth).

    Unique on ``idempotency_key``: a second ``place_bet`` with the same key returns this row, as a
    real bookmaker's idempotent bet endpoint would. Written in its own autocommit transaction by
    ``hedging.connectors.simulated`` (never as part of the caller's), so a caller that dies after
    the call still leaves the bookmaker's record behind."""

    idempotency_key = models.CharField(max_length=128, unique=True)
    bet_id = models.CharField(max_length=64, unique=True)
    bookmaker = models.CharField(max_length=64)
    selection = models.CharField(max_length=255)
    requested_price = models.DecimalField(max_digits=10, decimal_places=4)
    requested_stake = models.DecimalField(max_digits=18, decimal_places=4)
    price = models.DecimalField(max_digits=10, decimal_places=4)
    stake = models.DecimalField(max_digits=18, decimal_places=4)
    status = models.CharField(max_length=16, choices=SimBookmakerBetStatus.choices)
    reason = models.CharField(max_length=255, blank=True, default="")
    status_polls = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(
        null=True, blank=True, help_text="When the request reached the bookmaker (before its checks)"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "simulated bookmaker bet"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.bet_id} {self.stake}@{self.price} {self.status}"
