"""Console pages for the exchanges app: the simulated venue's book, as the venue sees it.

The venue's rows are the venue's truth, written only by the connector: the console shows them
and never edits them, so an operator can compare what we think rests on a venue with what does.
"""

from __future__ import annotations

from django.contrib import admin

from mmsite.console import ReadOnlyInlineMixin, ReadOnlyModelAdmin

from .models import Hold, LedgerAccount, LedgerTransaction, Posting, SimVenueOrder, SimVenueTrade


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
