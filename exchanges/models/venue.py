"""The simulated venue's models.

The simulated venue keeps its book of resting orders in the database so that every process
(web, workers) sees the same venue, as they would a real one.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q


class SimVenueOrderStatus(models.TextChoices):
    OPEN = "open"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class SimVenueOrder(models.Model):
    """An order as the simulated venue knows it (the venue's side of the truth)."""

    venue_order_id = models.CharField(max_length=64, unique=True)
    client_order_id = models.CharField(max_length=96, unique=True)
    account = models.CharField(max_length=128, db_index=True)
    market = models.CharField(max_length=128)
    side = models.CharField(max_length=4, choices=[("buy", "buy"), ("sell", "sell")])
    price = models.DecimalField(max_digits=8, decimal_places=4)
    size = models.DecimalField(max_digits=18, decimal_places=4)
    filled = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("0"))
    status = models.CharField(max_length=16, choices=SimVenueOrderStatus.choices, default=SimVenueOrderStatus.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(filled__lte=models.F("size")), name="simvenue_filled_lte_size"),
            models.CheckConstraint(condition=Q(filled__gte=0), name="simvenue_filled_nonneg"),
        ]

    def __str__(self) -> str:
        return f"{self.venue_order_id} {self.side} {self.size}@{self.price} {self.status}"


class SimVenueTrade(models.Model):
    """A trade on the simulated venue; ``trade_id`` is what fills are deduplicated on."""

    trade_id = models.CharField(max_length=64, unique=True)
    order = models.ForeignKey(SimVenueOrder, on_delete=models.CASCADE, related_name="trades")
    price = models.DecimalField(max_digits=8, decimal_places=4)
    size = models.DecimalField(max_digits=18, decimal_places=4)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.trade_id} {self.size}@{self.price}"
