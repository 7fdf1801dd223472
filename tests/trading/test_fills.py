"""Fills from the venue stream and from polling: each venue trade applied once, matched stake exact
under concurrency, every new fill hedged once (on the real simulated venue and bookmaker)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache

from exchanges.connectors.base import VenueFill
from exchanges.connectors.registry import get_connector
from hedging.choices import BetStatus
from hedging.models import HedgeBet, SimBookmakerBet
from tests.factories import AccountFactory, place_resting_order
from tests.helpers import drain, in_threads
from trading.choices import MatchedStatus, OrderStatus
from trading.events import client_group
from trading.models import Fill, Order
from trading.services.fills import fill_apply, fills_poll
from trading.services.orders import order_cancel

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_hedging")]


def match(order: Order, size: str) -> VenueFill:
    return get_connector(order.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal(size))


def test_same_fill_delivered_twice_by_stream_and_twice_by_polling_is_one_fill_and_one_hedge(
    django_capture_on_commit_callbacks,
):
    order = place_resting_order(order_stake=Decimal("100"), back=False)
    vf = match(order, "40")

    with django_capture_on_commit_callbacks(execute=True):
        first = fill_apply(exchange=order.exchange, venue_fill=vf, source="stream")
        again = fill_apply(exchange=order.exchange, venue_fill=vf, source="stream")
        polled = fills_poll(account=order.account)
        cache.clear()  # a lost cursor: the next poll replays every trade
        replayed = fills_poll(account=order.account)

    assert first is not None and again is None and polled == [] and replayed == []
    order.refresh_from_db()
    assert order.matched_stake == Decimal("40") and order.matched_status == MatchedStatus.PARTIALLY_MATCHED
    assert Fill.objects.filter(order=order).count() == 1
    assert HedgeBet.objects.filter(order=order).count() == 1
    assert SimBookmakerBet.objects.count() == 1


def test_polling_applies_trades_it_has_not_seen_and_keeps_a_cursor(django_capture_on_commit_callbacks):
    order = place_resting_order(order_stake=Decimal("100"))
    match(order, "30")
    with django_capture_on_commit_callbacks(execute=True):
        assert len(fills_poll(account=order.account)) == 1
        match(order, "70")
        second = fills_poll(account=order.account)
    assert [f.stake for f in second] == [Decimal("70")]
    order.refresh_from_db()
    assert order.matched_stake == Decimal("100")
    assert order.matched_status == MatchedStatus.FULLY_MATCHED and order.order_status == OrderStatus.FILLED
    assert order.matched_at is not None
    assert {f.source for f in order.fills.all()} == {"poll"}


def test_a_venue_over_report_is_clamped_to_the_unmatched_rest():
    order = place_resting_order(order_stake=Decimal("50"))
    vf = match(order, "50")
    fill = fill_apply(exchange=order.exchange, venue_fill=replace(vf, size=Decimal("80")), source="stream")
    extra = fill_apply(exchange=order.exchange, venue_fill=replace(vf, trade_id="phantom"), source="stream")

    order.refresh_from_db()
    assert fill.stake == Decimal("50") and extra is None
    assert order.matched_stake == Decimal("50") and order.order_status == OrderStatus.FILLED


def test_a_fill_on_a_cancelled_order_is_still_applied_and_hedged(mm_client, django_capture_on_commit_callbacks):
    client, _ = mm_client
    order = place_resting_order(account=AccountFactory(client=client), order_stake=Decimal("100"))
    vf = match(order, "25")  # traded on the venue before our cancel reached it
    order_cancel(order_id=order.pk, client=client, actor="api:test")

    with django_capture_on_commit_callbacks(execute=True):
        fill = fill_apply(exchange=order.exchange, venue_fill=vf, source="poll")

    order.refresh_from_db()
    assert order.order_status == OrderStatus.CANCELLED and order.matched_stake == Decimal("25")
    assert HedgeBet.objects.get(fill=fill).bet_status == BetStatus.PLACED


def test_a_fill_of_an_order_that_is_not_ours_is_ignored():
    order = place_resting_order()
    vf = match(order, "10")
    assert (
        fill_apply(
            exchange=order.exchange, venue_fill=replace(vf, venue_order_id="x", client_order_id="y"), source="stream"
        )
        is None
    )
    assert not Fill.objects.exists()


def test_a_fill_found_by_client_order_id_when_the_venue_id_is_not_recorded_yet():
    order = place_resting_order()
    vf = match(order, "10")
    Order.objects.filter(pk=order.pk).update(exchange_order_id=None)
    assert fill_apply(exchange=order.exchange, venue_fill=vf, source="stream").order_id == order.pk


def test_an_order_event_is_published_after_the_fill_commits(mm_client, django_capture_on_commit_callbacks):
    client, _ = mm_client
    order = place_resting_order(account=AccountFactory(client=client), order_stake=Decimal("100"))
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(client_group(client.id), channel)

    with django_capture_on_commit_callbacks(execute=True):
        fill_apply(exchange=order.exchange, venue_fill=match(order, "100"), source="stream")

    events = drain(layer, channel)
    order_events = [e["data"] for e in events if e["type"] == "order"]
    bet_events = [e["data"] for e in events if e["type"] == "bet"]
    assert order_events[0]["orderStatus"] == "FILLED" and order_events[0]["matchedStake"] == Decimal("100")
    assert [b["betStatus"] for b in bet_events] == ["pending", "placed"]


# --- PostgreSQL: real concurrent connections --------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_partial_fills_of_one_order_add_up_exactly_and_are_hedged_once_each():
    order = place_resting_order(order_stake=Decimal("1000"), back=False)
    trades = [match(order, "7.5") for _ in range(50)]

    results = in_threads(lambda vf: fill_apply(exchange=order.exchange, venue_fill=vf, source="stream"), trades, 16)

    order.refresh_from_db()
    assert all(r is not None for r in results)
    assert order.matched_stake == Decimal("375") and order.matched_status == MatchedStatus.PARTIALLY_MATCHED
    assert Fill.objects.filter(order=order).count() == 50
    bets = HedgeBet.objects.filter(order=order)
    assert bets.count() == 50 and set(bets.values_list("bet_status", flat=True)) == {BetStatus.PLACED}
    assert SimBookmakerBet.objects.count() == 50
    assert len(set(SimBookmakerBet.objects.values_list("idempotency_key", flat=True))) == 50


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_fill_reported_by_stream_and_poll_at_once_is_applied_once():
    order = place_resting_order(order_stake=Decimal("100"))
    vf = match(order, "60")
    account = order.account

    def deliver(i):
        if i % 2:
            return fill_apply(exchange=order.exchange, venue_fill=vf, source="stream")
        cache.clear()
        return fills_poll(account=account)

    in_threads(deliver, list(range(8)), 8)

    order.refresh_from_db()
    assert order.matched_stake == Decimal("60")
    assert Fill.objects.filter(order=order).count() == 1
    assert HedgeBet.objects.count() == 1 and SimBookmakerBet.objects.count() == 1


def test_stream_fill_events_are_applied_and_a_replayed_event_is_not(django_capture_on_commit_callbacks):
    from exchanges.connectors.base import VenueEvent
    from trading.services.fills import fills_stream_apply

    order = place_resting_order(order_stake=Decimal("100"))
    vf = match(order, "20")
    events = [VenueEvent(kind="order"), VenueEvent(kind="fill", fill=vf), VenueEvent(kind="fill", fill=vf)]

    with django_capture_on_commit_callbacks(execute=True):
        assert fills_stream_apply(account=order.account, events=events) == 1

    assert order.fills.get().source == "stream" and HedgeBet.objects.count() == 1
