"""Console pages for the exchanges app: the simulated venue's book, as the venue sees it.

The venue's rows are the venue's truth, written only by the connector: the console shows them
and never edits them, so an operator can compare what we think rests on a venue with what does.
"""

from __future__ import annotations

from django.contrib import admin, messages

from exchanges.errors import ExchangeError
from mmsite.console import ReadOnlyInlineMixin, ReadOnlyModelAdmin

from .models import (
    BookState,
    DeadMansSwitch,
    ExchangeOrder,
    ExchangeTrade,
    ExchangeWithdrawal,
    FeeTier,
    Hold,
    LedgerAccount,
    LedgerTransaction,
    Market,
    Posting,
    SimVenueOrder,
    SimVenueTrade,
    Trader,
    TraderApiKey,
    TwapOrder,
    TwapSlice,
)
from .models.venue import SimVenueAccount, VenueSession
from .services.twap import twap_cancel


class SimVenueTradeInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = SimVenueTrade
    extra = 0
    fields = ("trade_id", "price", "size", "created_at")
    readonly_fields = fields
    show_change_link = True


@admin.register(SimVenueOrder)
class SimVenueOrderAdmin(ReadOnlyModelAdmin):
    list_display = (
        "venue_order_id",
        "client_order_id",
        "account",
        "market",
        "side",
        "price",
        "size",
        "filled",
        "status",
        "created_at",
    )
    list_filter = ("status", "side")
    search_fields = ("=venue_order_id", "=client_order_id", "account", "market")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    inlines = (SimVenueTradeInline,)


@admin.register(SimVenueTrade)
class SimVenueTradeAdmin(ReadOnlyModelAdmin):
    list_display = ("trade_id", "order", "price", "size", "created_at")
    list_select_related = ("order",)
    search_fields = ("=trade_id", "=order__venue_order_id", "=order__client_order_id", "order__account")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")


# --- the ledger: read-only, its rows change only through exchanges.ledger.services --------------------------


class PostingInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = Posting
    extra = 0
    fields = ("account", "amount")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account")


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "owner_type", "owner_id", "asset", "mode", "balance", "held", "available", "is_system")
    list_filter = ("mode", "asset", "owner_type", "is_system")
    search_fields = ("=owner_id", "owner_type", "=asset")
    ordering = ("owner_type", "owner_id", "asset", "mode")


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "kind", "idempotency_key", "mode", "memo", "created_at")
    list_filter = ("kind", "mode")
    search_fields = ("=idempotency_key", "memo")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    inlines = (PostingInline,)


@admin.register(Posting)
class PostingAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "transaction", "account", "amount")
    list_select_related = ("transaction", "account")
    search_fields = ("=transaction__idempotency_key", "=account__owner_id")
    ordering = ("-id",)


@admin.register(Hold)
class HoldAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "reference", "account", "amount", "remaining", "captured", "released", "status", "created_at")
    list_select_related = ("account",)
    list_filter = ("status",)
    search_fields = ("=reference", "=account__owner_id")
    ordering = ("-created_at", "-id")


# --- the house exchange: markets and fees are configuration; orders and trades change only by matching ------


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    """Pairs: tick, lot, minimum size, fee overrides and status. Saved through ``full_clean`` (the
    model's ``clean`` refuses a tick x lot finer than the ledger's quantum). Changing tick or lot of a
    market with resting orders is refused: cancel them first."""

    list_display = (
        "symbol",
        "name",
        "kind",
        "base_asset",
        "quote_asset",
        "tick_size",
        "lot_size",
        "min_order_size",
        "status",
    )
    list_filter = ("kind", "status", "quote_asset")
    search_fields = ("symbol", "name", "base_asset", "fixture_ref")
    ordering = ("symbol",)
    fieldsets = (
        (None, {"fields": ("symbol", "name", "kind", "status", "base_asset", "quote_asset")}),
        ("Trading rules", {"fields": ("tick_size", "lot_size", "min_order_size", "min_price", "max_price")}),
        ("Fees (empty: the trader's fee tier)", {"fields": ("maker_fee_bps", "taker_fee_bps")}),
        ("Prediction market", {"fields": ("fixture_ref", "outcome_ref")}),
        ("Token", {"fields": ("chain", "base_address", "quote_address", "total_supply", "depth_sources")}),
    )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        from exchanges.services.orders import markets_cache_clear

        markets_cache_clear()  # other processes see the change within MARKET_CACHE_SECONDS

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and ExchangeOrder.objects.live().filter(market=obj).exists():
            return ("symbol", "base_asset", "quote_asset", "tick_size", "lot_size")
        if obj is not None and ExchangeOrder.objects.filter(market=obj).exists():
            return ("symbol", "base_asset", "quote_asset")
        return ()


@admin.register(FeeTier)
class FeeTierAdmin(admin.ModelAdmin):
    list_display = ("name", "min_volume_30d", "trader_tier", "maker_bps", "taker_bps")
    ordering = ("trader_tier", "min_volume_30d")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        from exchanges.services.fees import tiers_reset

        tiers_reset()


class TraderApiKeyInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = TraderApiKey
    extra = 0
    fields = ("prefix", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields


@admin.register(Trader)
class TraderAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "tier", "created_at")
    list_filter = ("tier",)
    search_fields = ("user__username", "user__email")
    list_select_related = ("user",)
    readonly_fields = ("user", "created_at")
    fields = ("user", "tier", "created_at")
    inlines = (TraderApiKeyInline,)

    def has_add_permission(self, request) -> bool:
        return False  # traders are created by create_trader, SSO or the brokerage


@admin.action(description="Cancel the selected open orders (releases their holds)")
def cancel_orders(modeladmin, request, queryset):
    from exchanges.services.orders import order_cancel

    done = 0
    for order in queryset.select_related("trader").filter(status__in=["open", "partially_filled", "waiting_trigger"]):
        try:
            order_cancel(trader=order.trader, order_id=order.order_id, mode=order.mode)
            done += 1
        except ExchangeError as exc:
            modeladmin.message_user(request, f"{order.order_id}: {exc.message}", messages.WARNING)
    modeladmin.message_user(request, f"{done} order(s) cancelled")


@admin.register(ExchangeOrder)
class ExchangeOrderAdmin(ReadOnlyModelAdmin):
    list_display = (
        "order_id",
        "market",
        "mode",
        "trader",
        "side",
        "order_type",
        "price",
        "quantity",
        "filled_quantity",
        "status",
        "created_at",
    )
    list_filter = ("mode", "status", "side", "order_type", "market")
    list_select_related = ("market", "trader__user")
    search_fields = ("=order_id", "=client_order_id", "trader__user__username")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    actions = (cancel_orders,)


@admin.register(ExchangeTrade)
class ExchangeTradeAdmin(ReadOnlyModelAdmin):
    list_display = (
        "trade_id",
        "market",
        "mode",
        "price",
        "quantity",
        "taker_side",
        "taker_fee",
        "maker_fee",
        "created_at",
    )
    list_filter = ("mode", "market", "taker_side")
    list_select_related = ("market",)
    search_fields = ("=trade_id", "=taker_order__order_id", "=maker_order__order_id")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")


@admin.register(BookState)
class BookStateAdmin(ReadOnlyModelAdmin):
    list_display = ("market", "mode", "sequence", "trade_no", "last_price", "updated_at")
    list_select_related = ("market",)
    list_filter = ("mode",)


@admin.register(ExchangeWithdrawal)
class ExchangeWithdrawalAdmin(ReadOnlyModelAdmin):
    list_display = ("withdrawal_id", "trader", "asset", "amount", "destination", "mode", "status", "created_at")
    list_filter = ("status", "mode", "asset")
    search_fields = ("=withdrawal_id", "trader__user__username", "destination")
    ordering = ("-created_at", "-id")


# --- algos (TWAP, dead-man's switch) and the venue streams' state ---------------------------------------


class TwapSliceInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = TwapSlice
    extra = 0
    fields = ("index", "quantity", "due_at", "status", "order", "error_code", "ran_at")
    readonly_fields = fields


@admin.register(TwapOrder)
class TwapOrderAdmin(ReadOnlyModelAdmin):
    list_display = (
        "twap_id",
        "trader",
        "market",
        "mode",
        "side",
        "quantity",
        "executed_quantity",
        "slices_done",
        "num_slices",
        "status",
        "created_at",
        "ends_at",
    )
    list_filter = ("status", "mode", "side", "market")
    search_fields = ("twap_id", "trader__user__username")
    list_select_related = ("trader__user", "market")
    inlines = (TwapSliceInline,)
    actions = ("cancel_twaps",)

    @admin.action(description="Cancel the selected TWAP orders (no further slices)")
    def cancel_twaps(self, request, queryset):
        done = 0
        for twap in queryset.select_related("trader", "market"):
            try:
                twap_cancel(trader=twap.trader, symbol=twap.market.symbol, twap_id=twap.twap_id)
                done += 1
            except ExchangeError as exc:
                self.message_user(request, f"{twap.twap_id}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{done} TWAP order(s) cancelled.")


@admin.register(DeadMansSwitch)
class DeadMansSwitchAdmin(ReadOnlyModelAdmin):
    list_display = ("trader", "active", "timeout_ms", "last_heartbeat_at", "expires_at", "activated_at")
    list_filter = ("active",)
    search_fields = ("trader__user__username",)
    list_select_related = ("trader__user",)


@admin.register(VenueSession)
class VenueSessionAdmin(ReadOnlyModelAdmin):
    list_display = ("exchange", "account", "state", "connects", "last_event_at", "reconciled_at", "held_until")
    list_filter = ("exchange", "state")
    search_fields = ("account",)


@admin.register(SimVenueAccount)
class SimVenueAccountAdmin(admin.ModelAdmin):
    """The simulated venue's fault settings per account (latency, rejections, timeouts, disconnects);
    empty fields fall back to ``settings.SIM_VENUE`` (docs/venues.md)."""

    list_display = ("exchange", "account", "latency_ms", "reject_rate", "timeout_rate", "disconnect_rate")
    list_filter = ("exchange",)
    search_fields = ("account",)
    readonly_fields = ("disconnect_seq", "created_at", "updated_at")
