"""The venue stream runner over the simulated venue's real user stream: fills and order updates
applied once beside polling, reconciliation on every (re)connect before placement resumes,
heartbeats, and ``manage.py run_venue_streams`` with the seeded taker flow."""

from __future__ import annotations

import io
import threading
import time
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum

from exchanges.connectors.base import VenueEvent
from exchanges.connectors.registry import get_connector
from exchanges.connectors.simulated import SimulatedVenueConnector
from exchanges.models.venue import SimVenueEvent, SimVenueOrder, SimVenueTrade, VenueSession, VenueSessionState
from hedging.models import HedgeBet, SimBookmakerBet
from tests.factories import AccountFactory, OrderFactory, place_resting_order
from trading.choices import OrderStatus
from trading.models import Fill, Order
from trading.services.fills import fills_poll, fills_stream_apply
from trading.services.placement import PlacementThrottled, order_place
from trading.services.venue_sessions import venue_held
from trading.services.venue_streams import AccountStreamRunner

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_hedging")]


@pytest.fixture(autouse=True)
def _fast_stream(settings):
    settings.SIM_VENUE = {"stream_idle_seconds": 0.1, "stream_poll_seconds": 0.01}
    SimulatedVenueConnector._config_cache.clear()
    yield
    SimulatedVenueConnector._config_cache.clear()


@pytest.fixture
def account(mm_client):
    return AccountFactory(client=mm_client[0])


def runner(account, on_reconciled=None):
    beats: list[str] = []
    r = AccountStreamRunner(account, heartbeat=beats.append, on_reconciled=on_reconciled)
    r.beats = beats
    return r


def test_a_stream_fill_is_applied_and_hedged_once_and_polling_it_again_changes_nothing(
    account, django_capture_on_commit_callbacks
):
    order = place_resting_order(account=account, order_stake=Decimal("100"), back=False)
    venue = get_connector(account.exchange)
    seen: list[VenueEvent] = []

    def trade_after_subscribing(report):
        assert report.complete
        venue.match(venue_order_id=order.exchange_order_id, size=Decimal("40"))

    r = runner(account, trade_after_subscribing)
    original = fills_stream_apply

    with django_capture_on_commit_callbacks(execute=True):
        r.connect_once(max_events=2)  # the fill event and the order update
        fill = Fill.objects.get(order=order)
        # the same trade again: by polling, by a replayed poll (lost cursor), by the stream again
        assert fills_poll(account=account) == []
        cache.clear()
        assert fills_poll(account=account) == []
        (venue_fill,) = get_connector(account.exchange).fills_since(account=account.username).fills
        seen.append(VenueEvent(kind="fill", fill=venue_fill))
        assert original(account=account, events=seen * 2) == 0

    order.refresh_from_db()
    assert fill.source == "stream" and order.matched_stake == Decimal("40")
    assert Fill.objects.filter(order=order).count() == 1
    assert HedgeBet.objects.filter(order=order).count() == 1 and SimBookmakerBet.objects.count() == 1
    assert r.beats and set(r.beats) == {f"venue:{account.exchange}"}
    session = VenueSession.objects.get(exchange=account.exchange, account=account.username)
    assert session.cursor == str(SimVenueEvent.objects.latest("id").pk)


def test_orders_the_venue_cancels_or_expires_are_closed_from_the_stream(account, django_capture_on_commit_callbacks):
    cancelled = place_resting_order(account=account)
    expired = place_resting_order(account=account)
    venue = get_connector(account.exchange)

    def venue_acts(report):
        venue.cancel(account=account.username, venue_order_id=cancelled.exchange_order_id)  # e.g. market halted
        SimVenueOrder.objects.filter(venue_order_id=expired.exchange_order_id).update(
            expires_at=SimVenueOrder.objects.get(venue_order_id=expired.exchange_order_id).created_at
        )
        venue.expire_due()

    with django_capture_on_commit_callbacks(execute=True):
        runner(account, venue_acts).connect_once(max_events=2)

    cancelled.refresh_from_db()
    expired.refresh_from_db()
    assert cancelled.order_status == OrderStatus.CANCELLED and cancelled.status_reason == "cancelled by the venue"
    assert expired.order_status == OrderStatus.EXPIRED


def test_a_pending_order_whose_placement_answer_was_lost_is_adopted_from_the_stream(
    account, django_capture_on_commit_callbacks, monkeypatch
):
    from exchanges.connectors.base import PlaceRequest

    # only the stream may adopt it here: no placement kick after the hold lifts
    monkeypatch.setattr("trading.services.venue_streams.placements_kick", lambda account: 0)

    order = OrderFactory(account=account, order_status=OrderStatus.PENDING_PLACEMENT, exchange_order_id=None)
    venue = get_connector(account.exchange)

    def the_answer_is_lost(report):  # the venue takes the order after reconciliation looked
        venue.place(PlaceRequest(order.client_order_id, account.username, "m", "sell", Decimal("0.45"), Decimal("10")))

    with django_capture_on_commit_callbacks(execute=True):
        runner(account, the_answer_is_lost).connect_once(max_events=1)

    order.refresh_from_db()
    assert order.order_status == OrderStatus.PLACED
    assert order.exchange_order_id == SimVenueOrder.objects.get(client_order_id=order.client_order_id).venue_order_id


def test_placement_is_held_until_reconciliation_finishes_then_the_waiting_orders_go_out(
    account, django_capture_on_commit_callbacks
):
    waiting = OrderFactory(account=account, order_status=OrderStatus.PENDING_PLACEMENT, exchange_order_id=None)
    held_during: list[bool] = []

    def during_reconciliation(report):
        held_during.append(venue_held(exchange=account.exchange, account=account.username))
        with pytest.raises(PlacementThrottled):
            order_place(order_id=waiting.pk)

    with django_capture_on_commit_callbacks(execute=True):
        runner(account, during_reconciliation).connect_once(max_events=1)

    waiting.refresh_from_db()
    assert held_during == [True]
    assert not venue_held(exchange=account.exchange, account=account.username)
    assert waiting.order_status == OrderStatus.PLACED  # sent by the kick after the hold lifted
    assert SimVenueOrder.objects.filter(client_order_id=waiting.client_order_id).count() == 1


def test_a_disconnect_reconnects_from_the_cursor_reconciles_again_and_loses_nothing(
    account, django_capture_on_commit_callbacks
):
    order = place_resting_order(account=account, order_stake=Decimal("100"))
    venue = get_connector(account.exchange)
    reports = []

    def first_time_trade_then_drop(report):
        reports.append(report)
        if len(reports) == 1:
            venue.match(venue_order_id=order.exchange_order_id, size=Decimal("25"))
            SimulatedVenueConnector.inject_disconnect(exchange=account.exchange, account=account.username)

    r = runner(account, first_time_trade_then_drop)
    with django_capture_on_commit_callbacks(execute=True):
        r.run(max_connects=2, max_events=3)

    order.refresh_from_db()
    assert r.connects == 2 and len(reports) == 2 and all(rep.complete for rep in reports)
    assert order.matched_stake == Decimal("25") and Fill.objects.filter(order=order).count() == 1
    assert SimBookmakerBet.objects.count() == 1
    session = VenueSession.objects.get(exchange=account.exchange, account=account.username)
    assert session.connects == 2 and session.state == VenueSessionState.DOWN and session.held_until is None


def test_an_incomplete_reconciliation_keeps_placement_held(account, django_capture_on_commit_callbacks):
    place_resting_order(account=account)
    SimulatedVenueConnector.configure(exchange=account.exchange, account=account.username, timeout_rate=Decimal("1"))
    r = runner(account)
    with pytest.raises(Exception, match="reconciliation incomplete|simulated timeout"):
        r.connect_once(max_events=1)
    assert venue_held(exchange=account.exchange, account=account.username)


# --- the command, on PostgreSQL with real threads -------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_run_venue_streams_trades_our_quotes_with_seeded_takers_and_every_fill_is_applied_once_beside_polling(
    settings,
):
    settings.SIM_VENUE = {"stream_idle_seconds": 0.2, "stream_poll_seconds": 0.02}
    account = AccountFactory()
    orders = [place_resting_order(account=account, order_stake=Decimal("50"), back=False) for _ in range(6)]
    stop = threading.Event()

    def poll_meanwhile():
        try:
            while not stop.is_set():
                fills_poll(account=account)
                cache.clear()  # and replay everything each time: the dedupe must hold
                time.sleep(0.05)
        finally:
            connection.close()

    poller = threading.Thread(target=poll_meanwhile)
    poller.start()
    out = io.StringIO()
    try:
        call_command("run_venue_streams", duration=3.0, taker_rate=8.0, taker_seed=11, stdout=out)
    finally:
        stop.set()
        poller.join()
    fills_poll(account=account)

    trades = SimVenueTrade.objects.filter(order__account=account.username)
    assert trades.count() > 3, out.getvalue()
    assert Fill.objects.filter(order__account=account).count() == trades.count()
    for order in orders:
        order.refresh_from_db()
        assert order.matched_stake == SimVenueOrder.objects.get(client_order_id=order.client_order_id).filled
    assert HedgeBet.objects.count() == trades.count() == SimBookmakerBet.objects.count()
    assert Fill.objects.filter(source="stream").exists()
    assert (
        Order.objects.filter(order_status=OrderStatus.FILLED).count()
        == SimVenueOrder.objects.filter(status="filled").count()
    )
    assert VenueSession.objects.get(account=account.username).state == VenueSessionState.DOWN
    assert trades.aggregate(s=Sum("size"))["s"] == Fill.objects.aggregate(s=Sum("stake"))["s"]


def test_a_hold_left_by_a_dead_runner_lapses_by_itself(account, settings):
    from trading.services.venue_sessions import venue_hold

    settings.VENUE_RECONCILE_HOLD_SECONDS = 0.2
    venue_hold(exchange=account.exchange, account=account.username, reason="runner died mid-reconnect")
    assert venue_held(exchange=account.exchange, account=account.username)
    time.sleep(0.3)
    assert not venue_held(exchange=account.exchange, account=account.username)
    waiting = OrderFactory(account=account, order_status=OrderStatus.PENDING_PLACEMENT, exchange_order_id=None)
    assert order_place(order_id=waiting.pk).order_status == OrderStatus.PLACED
