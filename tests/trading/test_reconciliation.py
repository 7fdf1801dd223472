"""Reconciliation of our orders and fills with the (simulated) venue: one test per case."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.core.cache import cache

from exchanges.connectors.base import PlaceRequest
from exchanges.connectors.registry import get_connector
from exchanges.connectors.simulated import SimulatedVenueConnector
from exchanges.models.venue import SimVenueOrder, SimVenueOrderStatus, SimVenueTrade
from hedging.choices import BetStatus
from hedging.models import HedgeBet, SimBookmakerBet
from tests.factories import AccountFactory, OrderFactory, place_resting_order
from trading.choices import MatchedStatus, OrderStatus
from trading.models import Fill, Order, PlacementAttempt
from trading.services.reconciliation import account_reconcile
from trading.tasks.reconciliation import reconcile_all_task

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_hedging")]


@pytest.fixture(autouse=True)
def _fresh_venue_config():
    SimulatedVenueConnector._config_cache.clear()
    yield
    SimulatedVenueConnector._config_cache.clear()


@pytest.fixture
def account(mm_client):
    return AccountFactory(client=mm_client[0])


def venue_place(account, coid, size="100", price="0.45"):
    return get_connector(account.exchange).place(
        PlaceRequest(coid, account.username, "12345678", "sell", Decimal(price), Decimal(size))
    )


def twin(order) -> SimVenueOrder:
    return SimVenueOrder.objects.get(client_order_id=order.client_order_id)


def reconcile(account, *, capture):
    with capture(execute=True):
        return account_reconcile(account=account)


def test_a_pending_order_whose_placement_answer_was_lost_is_adopted(account, django_capture_on_commit_callbacks):
    order = OrderFactory(account=account, order_status=OrderStatus.PENDING_PLACEMENT, exchange_order_id=None)
    PlacementAttempt.objects.create(order=order, sent=1)
    at_venue = venue_place(account, order.client_order_id)  # it reached the venue; we never heard

    report = reconcile(account, capture=django_capture_on_commit_callbacks)

    order.refresh_from_db()
    assert report.complete and report.adopted == [order.pk]
    assert order.order_status == OrderStatus.PLACED and order.exchange_order_id == at_venue.venue_order_id
    assert SimVenueOrder.objects.filter(client_order_id=order.client_order_id).count() == 1


def test_a_venue_order_we_do_not_know_is_cancelled_at_the_venue(account, django_capture_on_commit_callbacks):
    ours = place_resting_order(account=account)
    orphan = venue_place(account, f"mm-unknown-{uuid.uuid4().hex[:8]}")

    report = reconcile(account, capture=django_capture_on_commit_callbacks)

    assert report.orphans_cancelled == [orphan.venue_order_id]
    assert SimVenueOrder.objects.get(venue_order_id=orphan.venue_order_id).status == SimVenueOrderStatus.CANCELLED
    assert twin(ours).status == SimVenueOrderStatus.OPEN  # ours rests on


def test_a_venue_order_we_consider_closed_is_cancelled_at_the_venue(account, django_capture_on_commit_callbacks):
    order = place_resting_order(account=account)
    Order.objects.filter(pk=order.pk).update(order_status=OrderStatus.CANCELLED)  # we believe nothing rests

    report = reconcile(account, capture=django_capture_on_commit_callbacks)

    assert report.orphans_cancelled == [order.exchange_order_id]
    assert twin(order).status == SimVenueOrderStatus.CANCELLED


def test_an_order_filled_at_the_venue_while_we_were_away_is_filled_and_its_fills_applied_and_hedged(
    account, django_capture_on_commit_callbacks
):
    order = place_resting_order(account=account, order_stake=Decimal("100"), back=False)
    venue = get_connector(account.exchange)
    venue.match(venue_order_id=order.exchange_order_id, size=Decimal("30"))
    venue.match(venue_order_id=order.exchange_order_id, size=Decimal("70"))

    report = reconcile(account, capture=django_capture_on_commit_callbacks)

    order.refresh_from_db()
    assert report.resolved == {order.pk: OrderStatus.FILLED} and report.fills_applied == 2
    assert order.order_status == OrderStatus.FILLED and order.matched_status == MatchedStatus.FULLY_MATCHED
    assert order.matched_stake == Decimal("100")
    assert {f.source for f in order.fills.all()} == {"poll"}
    assert set(HedgeBet.objects.filter(order=order).values_list("bet_status", flat=True)) == {BetStatus.PLACED}
    assert SimBookmakerBet.objects.count() == 2


@pytest.mark.parametrize(
    ("venue_status", "ours"),
    [(SimVenueOrderStatus.CANCELLED, OrderStatus.CANCELLED), (SimVenueOrderStatus.EXPIRED, OrderStatus.EXPIRED)],
)
def test_an_open_order_the_venue_no_longer_lists_is_recorded_as_the_venue_says(
    account, venue_status, ours, django_capture_on_commit_callbacks
):
    order = place_resting_order(account=account)
    SimVenueOrder.objects.filter(pk=twin(order).pk).update(status=venue_status)

    report = reconcile(account, capture=django_capture_on_commit_callbacks)

    order.refresh_from_db()
    assert report.resolved == {order.pk: ours} and order.order_status == ours


def test_a_placed_order_the_venue_has_no_record_of_is_cancelled(account, django_capture_on_commit_callbacks):
    order = OrderFactory(account=account, order_status=OrderStatus.PLACED)  # never at the venue

    report = reconcile(account, capture=django_capture_on_commit_callbacks)

    order.refresh_from_db()
    assert report.resolved == {order.pk: OrderStatus.CANCELLED}
    assert order.order_status == OrderStatus.CANCELLED and "no record" in order.status_reason


def test_a_pending_order_never_sent_is_left_to_placement(account, django_capture_on_commit_callbacks):
    order = OrderFactory(account=account, order_status=OrderStatus.PENDING_PLACEMENT, exchange_order_id=None)
    report = reconcile(account, capture=django_capture_on_commit_callbacks)
    order.refresh_from_db()
    assert report.complete and order.order_status == OrderStatus.PENDING_PLACEMENT and not report.resolved


def test_fills_the_cursor_skipped_are_found_by_a_replay_and_hedged(account, django_capture_on_commit_callbacks):
    order = place_resting_order(account=account, order_stake=Decimal("100"))
    missed = get_connector(account.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal("40"))
    # our poll cursor already points past that trade (a cursor from another venue connection, say)
    cache.set(f"fills-cursor:{account.pk}", str(SimVenueTrade.objects.get(trade_id=missed.trade_id).pk), None)

    report = reconcile(account, capture=django_capture_on_commit_callbacks)

    order.refresh_from_db()
    assert report.replayed and report.fills_applied == 1
    assert order.matched_stake == Decimal("40")
    assert Fill.objects.get(order=order).source == "reconcile"
    assert HedgeBet.objects.get(order=order).bet_status == BetStatus.PLACED


def test_a_fill_whose_hedge_message_was_lost_is_hedged(account, django_capture_on_commit_callbacks):
    from trading.services.fills import fill_apply

    order = place_resting_order(account=account, order_stake=Decimal("100"))
    vf = get_connector(account.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal("10"))
    fill = fill_apply(exchange=account.exchange, venue_fill=vf, source="stream")  # on_commit never ran
    assert not HedgeBet.objects.filter(fill=fill).exists()

    report = reconcile(account, capture=django_capture_on_commit_callbacks)

    assert report.hedges_scheduled == 1 and HedgeBet.objects.get(fill=fill).bet_status == BetStatus.PLACED


def test_reconciling_twice_changes_nothing_the_second_time(account, django_capture_on_commit_callbacks):
    order = place_resting_order(account=account)
    get_connector(account.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal("100"))
    venue_place(account, "mm-stranger-1")
    first = reconcile(account, capture=django_capture_on_commit_callbacks)
    second = reconcile(account, capture=django_capture_on_commit_callbacks)
    assert first.resolved and first.orphans_cancelled and first.fills_applied == 1
    assert (second.resolved, second.orphans_cancelled, second.adopted, second.fills_applied) == ({}, [], [], 0)
    assert Fill.objects.count() == 1 and SimBookmakerBet.objects.count() == 1


def test_a_venue_that_does_not_answer_leaves_the_run_incomplete(account, django_capture_on_commit_callbacks):
    order = place_resting_order(account=account)
    SimulatedVenueConnector.configure(exchange=account.exchange, account=account.username, timeout_rate=Decimal("1"))
    report = reconcile(account, capture=django_capture_on_commit_callbacks)
    assert not report.complete and report.errors
    order.refresh_from_db()
    assert order.order_status == OrderStatus.PLACED  # nothing guessed


def test_the_beat_sweep_reconciles_every_active_account(mm_client, django_capture_on_commit_callbacks):
    a, b = AccountFactory(client=mm_client[0]), AccountFactory(client=mm_client[0])
    AccountFactory(client=mm_client[0], active=False)
    orphans = [venue_place(acc, f"mm-stray-{acc.pk}") for acc in (a, b)]
    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile_all_task.delay().get() == 2
    assert set(
        SimVenueOrder.objects.filter(venue_order_id__in=[o.venue_order_id for o in orphans]).values_list(
            "status", flat=True
        )
    ) == {SimVenueOrderStatus.CANCELLED}
