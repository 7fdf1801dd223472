"""Console pages for bookmakers and hedge bets.

Bookmakers are configuration and are edited here. Hedge bets are written only by the hedge
service (a bet row before every bookmaker call, unique per fill): the console shows them,
never edits or deletes them.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from mmsite.console import ReadOnlyModelAdmin

from .models import Bookmaker, HedgeBet, SimBookmakerBet


def _admin_link(viewname: str, pk, text) -> str:
    """A link to another app's admin page, by URL name only (hedging imports nothing from trading)."""
    try:
        return format_html('<a href="{}">{}</a>', reverse(viewname, args=[pk]), text)
    except NoReverseMatch:
        return str(text)


@admin.register(Bookmaker)
class BookmakerAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name", "active", "simulated", "created_at")
    list_filter = ("active", "simulated")
    search_fields = ("name", "display_name")
    readonly_fields = ("created_at", "updated_at")


@admin.register(HedgeBet)
class HedgeBetAdmin(ReadOnlyModelAdmin):
    list_display = (
        "id",
        "client",
        "bookmaker",
        "order_link",
        "bookmaker_bet_id",
        "placed_price",
        "placed_stake",
        "bet_status",
        "settlement_status",
        "placed_at",
        "created_at",
    )
    list_filter = ("bet_status", "settlement_status", "bookmaker", "client")
    search_fields = (
        "=id",
        "bookmaker_bet_id",
        "=idempotency_key",
        "client__name",
        "=order__id",
        "=order__client_order_id",
        "=fill__venue_trade_id",
    )
    list_select_related = ("client", "bookmaker", "order")
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": ("client", "bookmaker", "order_link", "fill_link", "idempotency_key")}),
        (
            "Bet",
            {
                "fields": (
                    "bookmaker_bet_id",
                    "placed_price",
                    "placed_stake",
                    "bet_status",
                    "decline_reason",
                    "attempts",
                    "placed_at",
                )
            },
        ),
        ("Settlement", {"fields": ("settlement_status", "settled_at")}),
        ("Timestamps", {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = ("order_link", "fill_link")

    @admin.display(description="order", ordering="order_id")
    def order_link(self, obj: HedgeBet) -> str:
        return _admin_link("admin:trading_order_change", obj.order_id, obj.order_id)

    @admin.display(description="fill")
    def fill_link(self, obj: HedgeBet) -> str:
        if obj.fill_id is None:
            return "-"
        return _admin_link("admin:trading_fill_change", obj.fill_id, obj.fill_id)


@admin.register(SimBookmakerBet)
class SimBookmakerBetAdmin(ReadOnlyModelAdmin):
    """The simulated bookmaker's own book (what it believes it took), for comparing with hedge bets."""

    list_display = ("bet_id", "idempotency_key", "bookmaker", "selection", "price", "stake", "status", "created_at")
    list_filter = ("status", "bookmaker")
    search_fields = ("=bet_id", "=idempotency_key", "selection")
