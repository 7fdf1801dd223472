"""Markets of the house exchange (trading pairs) and its fee schedule.

A market is a pair ``base/quote`` traded under a short ``symbol`` (the seed's path segment, e.g.
``vaix``). Token pairs trade any positive price on the tick grid; prediction-market pairs trade the
outcome of a fixture at 0.01 .. 0.99 (``min_price``/``max_price``). The fixture and outcome are plain
fields, not foreign keys into ``trading`` (the exchange never imports the engine).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from exchanges.ledger.choices import QUANTUM

PRICE_DIGITS = 30
PRICE_PLACES = 8


def _dec(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, **kwargs)


class MarketKind(models.TextChoices):
    TOKEN = "token"
    PREDICTION = "prediction"


class MarketStatus(models.TextChoices):
    ACTIVE = "active"  # trading
    CANCEL_ONLY = "cancel_only"  # no new orders; cancels and amends down allowed
    HALTED = "halted"  # nothing but reads
    CLOSED = "closed"  # delisted


class Market(models.Model):
    """One trading pair. Tick, lot and minimum size are checked on every order (never rounded)."""

    symbol = models.SlugField(max_length=32, unique=True, help_text="path segment, lower case (vaix, btc, ...)")
    name = models.CharField(max_length=128, blank=True, default="")
    kind = models.CharField(max_length=16, choices=MarketKind.choices, default=MarketKind.TOKEN)
    base_asset = models.CharField(max_length=16, help_text="ledger asset code of the base (e.g. VAIX)")
    quote_asset = models.CharField(max_length=16, default="USDC")
    tick_size = _dec()
    lot_size = _dec()
    min_order_size = _dec()
    min_price = _dec(null=True, blank=True, help_text="prediction markets: 0.01")
    max_price = _dec(null=True, blank=True, help_text="prediction markets: 0.99")
    maker_fee_bps = _dec(null=True, blank=True, help_text="overrides the fee tier for this market when set")
    taker_fee_bps = _dec(null=True, blank=True, help_text="overrides the fee tier for this market when set")
    status = models.CharField(max_length=16, choices=MarketStatus.choices, default=MarketStatus.ACTIVE)
    # Prediction-market pairs: the fixture and outcome they trade, by plain reference.
    fixture_ref = models.CharField(max_length=64, blank=True, default="")
    outcome_ref = models.CharField(max_length=64, blank=True, default="")
    # Token facts shown by pairs/stats (the seed's chain addresses and supply); informational only.
    chain = models.CharField(max_length=32, blank=True, default="")
    base_address = models.CharField(max_length=128, blank=True, default="")
    quote_address = models.CharField(max_length=128, blank=True, default="")
    total_supply = _dec(null=True, blank=True)
    # Virtual depth sources for book/hybrid: [{"venue", "chain", "levels": [[side, price, qty], ...]}].
    depth_sources = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("symbol",)
        constraints = [
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="market_tick_pos"),
            models.CheckConstraint(condition=Q(lot_size__gt=0), name="market_lot_pos"),
            models.CheckConstraint(condition=Q(min_order_size__gt=0), name="market_min_size_pos"),
            models.CheckConstraint(
                condition=Q(min_price__isnull=True)
                | Q(max_price__isnull=True)
                | Q(min_price__lt=models.F("max_price")),
                name="market_price_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} ({self.base_asset}/{self.quote_asset})"

    def save(self, *args, **kwargs):
        self.symbol = self.symbol.lower()
        self.base_asset = self.base_asset.upper()
        self.quote_asset = self.quote_asset.upper()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors = {}
        if self.tick_size and self.lot_size and (self.tick_size * self.lot_size) % QUANTUM != 0:
            errors["tick_size"] = f"tick_size x lot_size must be a multiple of {QUANTUM} (the ledger's quantum)"
        if self.lot_size and self.min_order_size and self.min_order_size % self.lot_size != 0:
            errors["min_order_size"] = "must be a whole number of lots"
        for f in ("min_price", "max_price"):
            v = getattr(self, f)
            if v is not None and self.tick_size and v % self.tick_size != 0:
                errors[f] = "must be on the tick grid"
        if self.kind == MarketKind.PREDICTION and (self.min_price is None or self.max_price is None):
            errors["max_price"] = "prediction markets need min_price and max_price (0.01 .. 0.99)"
        if self.base_asset and self.quote_asset and self.base_asset.upper() == self.quote_asset.upper():
            errors["quote_asset"] = "base and quote must differ"
        if errors:
            raise ValidationError(errors)

    @property
    def is_trading(self) -> bool:
        return self.status == MarketStatus.ACTIVE


class FeeTier(models.Model):
    """One row of the fee schedule: maker/taker basis points by 30-day volume, or for a trader tier.

    A trader whose ``Trader.tier`` names a row with ``trader_tier`` set pays that row (market makers);
    otherwise the row with the highest ``min_volume_30d`` at or below the trader's 30-day quote volume.
    A market's own ``maker_fee_bps``/``taker_fee_bps`` win over both.
    """

    name = models.CharField(max_length=64, unique=True)
    min_volume_30d = _dec(default=Decimal("0"), help_text="30-day traded volume in the quote asset")
    trader_tier = models.CharField(max_length=32, blank=True, default="", help_text="applies to this trader tier")
    maker_bps = _dec()
    taker_bps = _dec()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("trader_tier", "min_volume_30d")
        constraints = [
            models.CheckConstraint(condition=Q(maker_bps__gte=0, taker_bps__gte=0), name="fee_tier_bps_nonneg"),
            models.CheckConstraint(condition=Q(maker_bps__lte=10000, taker_bps__lte=10000), name="fee_tier_bps_max"),
        ]

    def __str__(self) -> str:
        return f"{self.name}: maker {self.maker_bps} bps / taker {self.taker_bps} bps"
