"""Quoting: a bookmaker price becomes at most one live order per (client, account, fixture, outcome,
player), requoted on a tick move, cancelled when the side goes inactive or the fixture kicks off,
and never written while the controls forbid it. Runs against the real simulated venue."""

from __future__ import annotations

import datetime as dt
import json
import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from exchanges.connectors.registry import get_connector
from exchanges.models import SimVenueOrder, SimVenueOrderStatus
from tests.factories import (
    AccountFactory,
    BookmakerFactory,
    ClientFactory,
    FixtureFactory,
    OutcomeMarketFactory,
    QuotingRuleFactory,
)
from trading.choices import FixtureStatus, MatchedStatus, OrderStatus
from trading.feed.protocol import parse_frame
from trading.models import LiveQuote, Order
from trading.pricing import PricingConfig
from trading.services import controls
from trading.services.quoting import (
    Action,
    LiveOrder,
    client_order_id_for,
    quote_decide,
    quote_refresh,
    quotes_cancel_not_quotable,
    quotes_on_odds_update,
    quotes_on_price,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]


ODDS = Decimal("1.808")  # sell at 0.58 (docs/engine-pricing.md, example 1)
LIMIT = Decimal("5000")


@pytest.fixture
def setup(db):
    client = ClientFactory(name="quoter:vertex")
    account = AccountFactory(client=client)
    fixture = FixtureFactory()
    market = OutcomeMarketFactory(fixture=fixture, exchange=account.exchange, exchange_outcome_id="tok-161")
    QuotingRuleFactory(account=account, tournament=fixture.tournament)
    return {"client": client, "account": account, "fixture": fixture, "market": market}


def price(setup, odds=ODDS, limit=LIMIT, active=True, now=None, bookmaker="vertex"):
    return quotes_on_price(
        fixture_id=setup["fixture"].fixture_id,
        bookmaker=bookmaker,
        outcome_id=161,
        player_id=0,
        price=odds,
        limit=limit,
        active=active,
        now=now,
    )


def open_orders(setup):
    return list(Order.objects.filter(account=setup["account"]).open().order_by("id"))


def venue_open(setup) -> list[SimVenueOrder]:
    return list(SimVenueOrder.objects.filter(account=setup["account"].username, status=SimVenueOrderStatus.OPEN))


# --- the pure decision -------------------------------------------------------------------------------------------


CFG = PricingConfig()


def decide(**kw):
    args = {
        "odds": ODDS,
        "limit": LIMIT,
        "active": True,
        "cfg": CFG,
        "quotable": True,
        "allowed": True,
        "current": None,
    }
    return quote_decide(**{**args, **kw})


def test_decide_places_when_nothing_rests():
    d = decide()
    assert (d.action, d.quote.price, d.quote.size, d.quote.back) == (Action.PLACE, Decimal("0.58"), Decimal(100), False)


def test_decide_keeps_a_quote_within_a_tick_and_replaces_on_a_tick():
    assert decide(current=LiveOrder(Decimal("0.58"), Decimal(100))).action == Action.NONE
    assert decide(current=LiveOrder(Decimal("0.57"), Decimal(100))).action == Action.REPLACE
    assert decide(current=LiveOrder(Decimal("0.58"), Decimal(150))).action == Action.REPLACE  # size off by 33 %


def test_decide_cancels_on_inactive_side_or_unquotable_fixture_and_waits_when_not_allowed():
    live = LiveOrder(Decimal("0.58"), Decimal(100))
    assert decide(active=False, current=live).action == Action.CANCEL
    assert decide(active=False).action == Action.NONE
    assert decide(quotable=False, not_quotable_reason="fixture_started", current=live).reason == "fixture_started"
    assert decide(odds=Decimal("1.01"), current=live).action == Action.CANCEL  # pricing refuses
    assert decide(allowed=False).action == Action.NONE
    assert decide(allowed=False, current=LiveOrder(Decimal("0.50"), Decimal(100))).action == Action.NONE


# --- price updates end to end --------------------------------------------------------------------------------


def test_price_update_places_a_quote_at_the_venue(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        (decision,) = price(setup)
    assert decision.action == Action.PLACE
    (order,) = open_orders(setup)
    assert order.order_status == OrderStatus.PLACED
    assert (order.order_cents, order.order_stake, order.back) == (Decimal("0.58"), Decimal(100), False)
    assert order.exchange_outcome_id == "tok-161"
    assert order.bookmaker_outcome_price == ODDS
    assert order.client_order_id == client_order_id_for(
        account=setup["account"], fixture=setup["fixture"], outcome_id=161, player_id=0, seq=1
    )
    (at_venue,) = venue_open(setup)
    assert (at_venue.venue_order_id, at_venue.market, at_venue.side) == (order.exchange_order_id, "tok-161", "sell")
    assert LiveQuote.objects.get(account=setup["account"]).order_id == order.pk


def test_sub_tick_move_leaves_the_quote_alone(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        price(setup)
        (decision,) = price(setup, odds=Decimal("1.81"))  # 0.5725 -> still 0.58
    assert decision.action == Action.NONE
    assert len(open_orders(setup)) == 1
    assert Order.objects.filter(account=setup["account"]).count() == 1


def test_client_order_ids_stay_unique_if_the_key_row_is_recreated(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        price(setup)
    (first,) = open_orders(setup)
    controls.client_stop(client=setup["client"], actor="test")
    controls.client_start(client=setup["client"], actor="test")
    LiveQuote.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        (decision,) = price(setup)
    second = Order.objects.get(pk=decision.order_id)
    assert second.client_order_id != first.client_order_id and second.client_order_id.endswith("-2")
    assert second.order_status == OrderStatus.PLACED


def test_tick_move_replaces_the_quote(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        price(setup)
        (decision,) = price(setup, odds=Decimal("1.70"))  # 0.5882 + 0.02 -> 0.61
    assert decision.action == Action.REPLACE
    first, second = Order.objects.filter(account=setup["account"]).order_by("id")
    assert first.order_status == OrderStatus.CANCELLED
    assert second.order_status == OrderStatus.PLACED and second.order_cents == Decimal("0.61")
    assert second.client_order_id.endswith("-2")
    assert [o.price for o in venue_open(setup)] == [Decimal("0.61")]


def test_material_size_change_replaces_the_quote(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        price(setup)
        (decision,) = price(setup, limit=Decimal("30"))  # hedge must fit 30: 54 contracts
    assert decision.action == Action.REPLACE
    (order,) = open_orders(setup)
    assert order.order_stake == Decimal(54)


def test_inactive_bookmaker_side_cancels_the_quote(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        price(setup)
        (decision,) = price(setup, active=False)
    assert (decision.action, decision.reason) == (Action.CANCEL, "outcome_inactive")
    assert open_orders(setup) == [] and venue_open(setup) == []


def test_kick_off_cancels_the_quote_when_the_tournament_is_pre_match_only(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        price(setup)
    after_kick_off = setup["fixture"].start_time + dt.timedelta(seconds=1)
    (decision,) = price(setup, now=after_kick_off)
    assert (decision.action, decision.reason) == (Action.CANCEL, "fixture_started")
    assert open_orders(setup) == [] and venue_open(setup) == []


def test_kick_off_sweep_cancels_without_a_price_update(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        price(setup)
    assert quotes_cancel_not_quotable(now=timezone.now()) == 0  # not started yet
    assert quotes_cancel_not_quotable(now=setup["fixture"].start_time + dt.timedelta(minutes=1)) == 1
    assert open_orders(setup) == [] and venue_open(setup) == []


def test_in_play_tournament_keeps_quoting_after_kick_off(setup, django_capture_on_commit_callbacks):
    tournament = setup["fixture"].tournament
    tournament.quote_in_play = True
    tournament.save()
    setup["fixture"].status = FixtureStatus.LIVE
    setup["fixture"].save()
    with django_capture_on_commit_callbacks(execute=True):
        (decision,) = price(setup)
    assert decision.action == Action.PLACE
    assert quotes_cancel_not_quotable() == 0
    assert len(venue_open(setup)) == 1


def test_finished_fixture_is_not_quoted(setup):
    setup["fixture"].status = FixtureStatus.FINISHED
    setup["fixture"].save()
    (decision,) = price(setup)
    assert (decision.action, decision.reason) == (Action.NONE, "fixture_over")


@pytest.mark.parametrize(
    "block",
    [
        lambda c: controls.client_pause(client=c, actor="test"),
        lambda c: controls.client_stop(client=c, actor="test"),
        lambda c: controls.soft_pause(client=c, reason="risk"),
        lambda c: controls.system_pause(actor="test"),
        lambda c: controls.system_stop(actor="test"),
        lambda c: controls.emergency_on(actor="test"),
    ],
    ids=["pause", "stop", "soft_pause", "system_pause", "system_stop", "emergency"],
)
def test_no_new_orders_while_trading_is_blocked(setup, block):
    block(setup["client"])
    (decision,) = price(setup)
    assert (decision.action, decision.reason) == (Action.NONE, "trading_not_allowed")
    assert not Order.objects.filter(account=setup["account"]).exists()


def test_pause_keeps_the_resting_quote_even_when_the_target_moves(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        price(setup)
    controls.client_pause(client=setup["client"], actor="test")
    (decision,) = price(setup, odds=Decimal("1.70"))
    assert decision.action == Action.NONE
    (order,) = open_orders(setup)
    assert order.order_cents == Decimal("0.58") and len(venue_open(setup)) == 1


def test_quote_resumes_after_a_stop_is_lifted(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        price(setup)
        controls.client_stop(client=setup["client"], actor="test")
        assert open_orders(setup) == []
        controls.client_start(client=setup["client"], actor="test")
        (decision,) = price(setup)
    assert decision.action == Action.PLACE
    assert len(open_orders(setup)) == 1 and len(venue_open(setup)) == 1


def test_an_odds_frame_from_the_feed_quotes_and_a_suspended_market_cancels(setup, django_capture_on_commit_callbacks):
    def frame(market_active):
        outcome = {"outcomeId": 161, "marketId": 1, "playerId": 0, "price": 1.808, "limit": 5000, "active": True}
        outcome["marketActive"] = market_active
        odds_id = f"{setup['fixture'].fixture_id}:vertex:161:0"
        payload = {"fixtureId": setup["fixture"].fixture_id, "odds": {"vertex": {odds_id: outcome}}}
        return parse_frame(json.dumps({"channel": "odds", "type": "UPDATE", "payload": payload}))

    with django_capture_on_commit_callbacks(execute=True):
        (placed,) = quotes_on_odds_update(frame(True))
    assert placed.action == Action.PLACE and len(venue_open(setup)) == 1
    (cancelled,) = quotes_on_odds_update(frame(False))
    assert (cancelled.action, cancelled.reason) == (Action.CANCEL, "outcome_inactive")
    assert venue_open(setup) == []


def fill_fully(order: Order) -> None:
    """What the venue and the fill service do when a taker lifts the whole order."""
    get_connector(order.exchange).match(venue_order_id=order.exchange_order_id, size=order.order_stake)
    Order.objects.filter(pk=order.pk).update(
        order_status=OrderStatus.FILLED, matched_status=MatchedStatus.FULLY_MATCHED, matched_stake=order.order_stake
    )


def test_filled_quote_is_reposted_within_the_outcome_cap(setup, django_capture_on_commit_callbacks):
    setup["account"].max_outcome_stake = Decimal(150)
    setup["account"].save()
    with django_capture_on_commit_callbacks(execute=True):
        price(setup)
    (first,) = open_orders(setup)
    fill_fully(first)
    with django_capture_on_commit_callbacks(execute=True):
        decision = quote_refresh(order_id=first.pk)
    assert decision.action == Action.PLACE
    (second,) = open_orders(setup)
    assert second.order_stake == Decimal(50)  # 150 cap - 100 matched
    assert second.order_status == OrderStatus.PLACED and second.client_order_id.endswith("-2")
    assert LiveQuote.objects.get(account=setup["account"]).order_id == second.pk


def test_repost_is_gated_by_the_controls(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        price(setup)
    (first,) = open_orders(setup)
    fill_fully(first)
    controls.client_pause(client=setup["client"], actor="test")
    assert quote_refresh(order_id=first.pk).reason == "trading_not_allowed"
    assert open_orders(setup) == []


def test_only_accounts_that_quote_the_fixture_and_hedge_on_the_bookmaker_quote(setup):
    other = AccountFactory(client=ClientFactory(name="idle:vertex"))  # no rule
    everything = AccountFactory(client=ClientFactory(name="all:vertex", quote_all_fixtures=True))
    elsewhere = AccountFactory(
        client=ClientFactory(
            name="pinny:pinnacle", quote_all_fixtures=True, hedge_bookmaker=BookmakerFactory(name="pinnacle")
        )
    )
    decisions = price(setup)
    assert len(decisions) == 2
    quoted = set(Order.objects.values_list("account_id", flat=True))
    assert quoted == {setup["account"].pk, everything.pk}
    assert other.pk not in quoted and elsewhere.pk not in quoted
    assert price(setup, bookmaker="unknown") == []


# --- one live quote per key under concurrency (PostgreSQL) ---------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_price_updates_leave_one_live_quote(setup):
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def update(odds):
        try:
            barrier.wait(timeout=10)
            price(setup, odds=odds)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    for _ in range(3):
        threads = [threading.Thread(target=update, args=(o,)) for o in (Decimal("1.808"), Decimal("1.70"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert len(open_orders(setup)) == 1
        assert len(venue_open(setup)) <= 1
    assert LiveQuote.objects.filter(account=setup["account"]).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_stop_racing_a_price_update_leaves_nothing_open(setup):
    """The gate: the engine locks the client's state before writing, so after a stop returns
    either its sweep cancelled the new order or the engine saw the stop and wrote nothing."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(fn):
        try:
            barrier.wait(timeout=10)
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    for _ in range(3):
        threads = [
            threading.Thread(target=run, args=(lambda: price(setup),)),
            threading.Thread(target=run, args=(lambda: controls.client_stop(client=setup["client"], actor="t"),)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert open_orders(setup) == [] and venue_open(setup) == []
        controls.client_start(client=setup["client"], actor="t")
