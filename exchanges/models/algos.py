"""Algorithmic orders of the house exchange: TWAP orders and their slices, and the dead-man's switch.

Rows change only through ``exchanges.services.twap`` and ``exchanges.services.deadman``
(docs/exchange-algos.md). A TWAP's slices are all written when the TWAP is accepted, each with its
due time; a slice's child order is placed in the same transaction that marks the slice placed, so a
retried task never places a slice twice.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q

from exchanges.ledger.choices import Mode

from .markets import _dec
from .orders import OrderSide


class TwapStatus(models.TextChoices):
    ACTIVE = "active"  # slices still to run
    COMPLETED = "completed"  # every slice ran (what each filled is on the slice)
    CANCELLED = "cancelled"  # cancelled by the trader: no further slices


class TwapOrder(models.Model):
    twap_id = models.CharField(max_length=40, unique=True, help_text="public id, twap_<hex>")
    trader = models.ForeignKey("exchanges.Trader", on_delete=models.PROTECT, related_name="twap_orders")
    market = models.ForeignKey("exchanges.Market", on_delete=models.PROTECT, related_name="twap_orders")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.LIVE)
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    quantity = _dec()
    price_limit = _dec(null=True, blank=True, help_text="max price for buys, min for sells; empty = no limit")
    duration_minutes = models.PositiveIntegerField()
    num_slices = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=TwapStatus.choices, default=TwapStatus.ACTIVE)
    executed_quantity = _dec(default=Decimal("0"))
    executed_notional = _dec(default=Decimal("0"))
    slices_done = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ends_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["trader", "market", "status"], name="twap_trader_active")]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="twap_qty_pos"),
            models.CheckConstraint(condition=Q(num_slices__gte=1), name="twap_slices_pos"),
            models.CheckConstraint(condition=Q(executed_quantity__lte=models.F("quantity")), name="twap_exec_le_qty"),
        ]

    def __str__(self) -> str:
        return f"{self.twap_id} {self.side} {self.quantity} {self.status}"


class TwapSliceStatus(models.TextChoices):
    PENDING = "pending"  # due at ``due_at``
    PLACED = "placed"  # the child order was placed (``order``); it is ioc/market, so it is done
    FAILED = "failed"  # the exchange refused the child (``error_code``), e.g. insufficient balance
    CANCELLED = "cancelled"  # the TWAP was cancelled before this slice was due


class TwapSlice(models.Model):
    twap = models.ForeignKey(TwapOrder, on_delete=models.CASCADE, related_name="slices")
    index = models.PositiveIntegerField()
    quantity = _dec()
    due_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=TwapSliceStatus.choices, default=TwapSliceStatus.PENDING)
    order = models.OneToOneField(
        "exchanges.ExchangeOrder", on_delete=models.PROTECT, null=True, blank=True, related_name="twap_slice"
    )
    filled_quantity = _dec(default=Decimal("0"))
    error_code = models.CharField(max_length=40, blank=True, default="")
    error_message = models.CharField(max_length=255, blank=True, default="")
    ran_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("twap", "index")
        constraints = [models.UniqueConstraint(fields=["twap", "index"], name="twap_slice_key")]
        indexes = [
            models.Index(fields=["due_at"], name="twap_slice_due", condition=Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.twap_id}#{self.index} {self.quantity} {self.status}"

    @property
    def client_order_id(self) -> str:
        """The child order's client order id: unique per trader, so a second placement is refused."""
        return f"{self.twap.twap_id}-{self.index}"


class DeadMansSwitch(models.Model):
    """A trader's dead-man's switch: when ``active`` and ``expires_at`` passes without a heartbeat,
    every open order of the trader (both modes, every market) is cancelled and the switch turns off."""

    trader = models.OneToOneField("exchanges.Trader", on_delete=models.CASCADE, related_name="dead_mans_switch")
    active = models.BooleanField(default=False)
    timeout_ms = models.PositiveIntegerField()
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    triggered_at = models.DateTimeField(null=True, blank=True)
    triggered_cancelled = models.PositiveIntegerField(default=0, help_text="orders cancelled by the last trigger")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "dead-man's switch"
        verbose_name_plural = "dead-man's switches"
        indexes = [models.Index(fields=["expires_at"], name="dms_due", condition=Q(active=True))]
        constraints = [
            models.CheckConstraint(condition=Q(active=False) | Q(expires_at__isnull=False), name="dms_active_expires"),
        ]

    def __str__(self) -> str:
        return f"DMS {self.trader_id} {'on' if self.active else 'off'}"
