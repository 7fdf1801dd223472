"""Console pages for the exchanges app: the simulated venue's book, as the venue sees it.

The venue's rows are the venue's truth, written only by the connector: the console shows them
and never edits them, so an operator can compare what we think rests on a venue with what does.
"""

from __future__ import annotations

from django.contrib import admin

from mmsite.console import ReadOnlyModelAdmin

from .models import SimVenueOrder, SimVenueTrade


class SimVenueTradeInline(admin.TabularInline):
    model = SimVenueTrade
    extra = 0
    can_delete = False
    fields = ("trade_id", "price", "size", "created_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


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
