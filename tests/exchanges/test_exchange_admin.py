"""The console over the house exchange: markets and fee tiers editable, orders cancelled by a service."""

from __future__ import annotations

from decimal import Decimal as D

from exchanges.models import ExchangeOrder, Market
from exchanges.services.orders import order_place


def test_console_pages_load_and_the_cancel_action_releases_holds(admin_client, market, alice):
    order = order_place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("10"), price=D("0.003"))
    for url in (
        "/admin/exchanges/market/",
        f"/admin/exchanges/market/{market.pk}/change/",
        "/admin/exchanges/market/add/",
        "/admin/exchanges/feetier/",
        "/admin/exchanges/trader/",
        f"/admin/exchanges/trader/{alice.pk}/change/",
        "/admin/exchanges/exchangeorder/",
        f"/admin/exchanges/exchangeorder/{order.pk}/change/",
        "/admin/exchanges/exchangetrade/",
        "/admin/exchanges/bookstate/",
        "/admin/exchanges/exchangewithdrawal/",
    ):
        assert admin_client.get(url).status_code == 200, url
    r = admin_client.post(
        "/admin/exchanges/exchangeorder/", {"action": "cancel_orders", "_selected_action": [order.pk]}, follow=True
    )
    assert r.status_code == 200
    assert ExchangeOrder.objects.get(pk=order.pk).status == "cancelled"


def test_a_market_finer_than_the_ledger_quantum_is_refused(admin_client, db):
    r = admin_client.post(
        "/admin/exchanges/market/add/",
        {
            "symbol": "tiny",
            "name": "",
            "kind": "token",
            "status": "active",
            "base_asset": "TINY",
            "quote_asset": "USDC",
            "tick_size": "0.00000001",
            "lot_size": "0.001",
            "min_order_size": "0.001",
            "depth_sources": "[]",
        },
    )
    assert r.status_code == 200 and not Market.objects.filter(symbol="tiny").exists()
