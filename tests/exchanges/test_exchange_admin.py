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


def test_algo_and_venue_stream_pages_load_and_the_console_cancels_a_twap(admin_client, market, alice):
    from exchanges.models import DeadMansSwitch, TwapOrder
    from exchanges.models.venue import SimVenueAccount, VenueSession
    from exchanges.services.deadman import dms_activate
    from exchanges.services.twap import twap_create

    twap = twap_create(trader=alice, symbol="vaix", side="buy", quantity="100", duration_minutes=60, num_slices=6)
    switch = dms_activate(trader=alice, timeout_ms=60_000)
    session = VenueSession.objects.create(exchange="simulated", account="acct-1")
    sim = SimVenueAccount.objects.create(exchange="simulated", account="acct-1", latency_ms=5)
    for url in (
        "/admin/exchanges/twaporder/",
        f"/admin/exchanges/twaporder/{twap.pk}/change/",
        "/admin/exchanges/deadmansswitch/",
        f"/admin/exchanges/deadmansswitch/{switch.pk}/change/",
        "/admin/exchanges/venuesession/",
        f"/admin/exchanges/venuesession/{session.pk}/change/",
        "/admin/exchanges/simvenueaccount/",
        f"/admin/exchanges/simvenueaccount/{sim.pk}/change/",
    ):
        assert admin_client.get(url).status_code == 200, url
    assert DeadMansSwitch.objects.get(pk=switch.pk).active

    r = admin_client.post(
        "/admin/exchanges/twaporder/", {"action": "cancel_twaps", "_selected_action": [twap.pk]}, follow=True
    )
    assert r.status_code == 200
    twap = TwapOrder.objects.get(pk=twap.pk)
    assert twap.status == "cancelled"
    assert not twap.slices.filter(status="pending").exists()  # no further slice will run
