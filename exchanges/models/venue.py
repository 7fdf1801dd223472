"""The simulated venue's models, and the venue-stream session state.

The simulated venue keeps its book of resting orders, its trades and its user-channel event log
in the database, so that every process (web, workers, the stream runner, the taker flow) sees the
same venue, as they would a real one. ``SimVenueAccount`` holds the fault-injection settings of
one venue account (latency, rejections, timeouts, disconnects, expiry), overriding
``settings.SIM_VENUE``. ``VenueSession`` is *our* side: the stream runner's resumable cursor per
(exchange, account) and the placement hold that keeps new orders off the venue from a stream
disconnect until the reconciliation that follows the reconnect has finished (docs/venues.md).
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
    EXPIRED = "expired"


class SimVenueOrder(models.Model):
    """An order as the simulated venue knows it (the venue's side of the truth)."""

    venue_order_id = models.CharField(max_length=64, unique=True)
    client_order_id = models.CharField(max_length=96, unique=True)
    exchange = models.CharField(max_length=32, default="", db_index=True)
    account = models.CharField(max_length=128, db_index=True)
    market = models.CharField(max_length=128)
    side = models.CharField(max_length=4, choices=[("buy", "buy"), ("sell", "sell")])
    price = models.DecimalField(max_digits=8, decimal_places=4)
    size = models.DecimalField(max_digits=18, decimal_places=4)
    filled = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("0"))
    status = models.CharField(max_length=16, choices=SimVenueOrderStatus.choices, default=SimVenueOrderStatus.OPEN)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(filled__lte=models.F("size")), name="simvenue_filled_lte_size"),
            models.CheckConstraint(condition=Q(filled__gte=0), name="simvenue_filled_nonneg"),
        ]
        indexes = [models.Index(fields=["exchange", "account", "status"], name="simvenue_order_open")]

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


class SimVenueEventKind(models.TextChoices):
    ORDER = "order"
    FILL = "fill"


class SimVenueEvent(models.Model):
    """The simulated venue's user channel: one row per order change or trade, written in the same
    transaction as the change. The id is the stream's resumable cursor."""

    exchange = models.CharField(max_length=32, default="")
    account = models.CharField(max_length=128)
    kind = models.CharField(max_length=8, choices=SimVenueEventKind.choices)
    order = models.ForeignKey(SimVenueOrder, on_delete=models.CASCADE, related_name="events")
    trade = models.ForeignKey(SimVenueTrade, on_delete=models.CASCADE, related_name="events", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["exchange", "account", "id"], name="simvenue_event_cursor")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.account}"


class SimVenueAccount(models.Model):
    """Fault injection for one simulated venue account; empty fields take ``settings.SIM_VENUE``.

    Rates are probabilities per call (``reject_rate``, ``timeout_rate``) or per stream poll
    (``disconnect_rate``), drawn from a generator seeded with ``settings.SIM_VENUE['seed']``.
    ``disconnect_seq`` is bumped by ``SimulatedVenueConnector.inject_disconnect``: every open stream
    of the account drops on its next poll."""

    exchange = models.CharField(max_length=32)
    account = models.CharField(max_length=128)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    reject_rate = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    timeout_rate = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    disconnect_rate = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    expire_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    disconnect_seq = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "simulated venue account"
        constraints = [models.UniqueConstraint(fields=["exchange", "account"], name="simvenue_account_unique")]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.account}"


class VenueSessionState(models.TextChoices):
    CONNECTING = "connecting"  # stream (re)connecting; reconciliation not finished: placement held
    LIVE = "live"  # reconciled and consuming the stream
    DOWN = "down"  # runner stopped


class VenueSession(models.Model):
    """Our stream runner's state for one venue account: the resumable cursor, and the placement
    hold (``held_until``) set on disconnect and cleared when reconciliation after the reconnect
    completes. The hold lapses by itself at ``held_until`` so a dead runner cannot block placement
    forever (its staleness is the soft pause's job)."""

    exchange = models.CharField(max_length=32)
    account = models.CharField(max_length=128)
    state = models.CharField(max_length=16, choices=VenueSessionState.choices, default=VenueSessionState.DOWN)
    cursor = models.CharField(max_length=128, blank=True, default="")
    held_until = models.DateTimeField(null=True, blank=True)
    connects = models.PositiveIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["exchange", "account"], name="venue_session_unique")]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.account} {self.state}"
