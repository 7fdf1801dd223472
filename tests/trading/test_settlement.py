"""Settlement of a fixture's orders and hedge bets (trading/services/settlement.py), the task and
the sweep, the operator's result and void, and what the MM API shows afterwards."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from exchanges.models.venue import SimVenueOrder
from hedging.choices import BetSettlementStatus, BetStatus
from tests.factories import (
    AccountFactory,
    FillFactory,
    FixtureFactory,
    HedgeBetFactory,
    OrderFactory,
    place_resting_order,
)
from tests.helpers import drain, in_threads
from trading.choices import FixtureStatus, MatchedStatus, OrderStatus, SettlementStatus
from trading.events import ALL_CLIENTS_GROUP, client_group
from trading.models import Order
from trading.services.settlement import (
    InvalidResult,
    ResultConflict,
    fixture_result_set,
    fixture_void,
    fixtures_needing_settlement,
    settle_fixture,
)
from trading.tasks.settlement import settle_fixture_task, settlement_sweep_task

D = Decimal
S = SettlementStatus
B = BetSettlementStatus


def finished(home=2, away=1, **kw):
    return FixtureFactory(status=FixtureStatus.FINISHED, participant1_score=home, participant2_score=away, **kw)


def filled(account, fixture, outcome_id, *, back=True, stake="100", price="0.45", bet="placed", player_id=0):
    """A FILLED order with one fill and (unless ``bet`` is None) its hedge bet in ``bet`` status."""
    order = OrderFactory(
        account=account,
        fixture=fixture,
        outcome_id=outcome_id,
        player_id=player_id,
        back=back,
        order_status=OrderStatus.FILLED,
        matched_status=MatchedStatus.FULLY_MATCHED,
        order_cents=D(price),
        order_stake=D(stake),
        matched_stake=D(stake),
    )
    fill = FillFactory(order=order, stake=D(stake), price=D(price))
    if bet is not None:
        HedgeBetFactory(fill=fill, placed_stake=D("55.31"), placed_price=D("1.808"), bet_status=bet)
    return order


def states(order):
    order.refresh_from_db()
    return order.settlement_status, sorted(order.bets.values_list("settlement_status", flat=True))


@pytest.fixture
def account(mm_client):
    return AccountFactory(client=mm_client[0])


# --- settle_fixture ---------------------------------------------------------------------------------------------


def test_a_finished_fixture_settles_every_order_from_its_own_side_and_every_placed_bet_as_the_mirror(account):
    fx = finished(2, 1)
    home_bought = filled(account, fx, 101, back=True)
    home_sold = filled(account, fx, 101, back=False)
    over225_bought = filled(account, fx, 10170, back=True)  # 3 goals: over 2.25 wins outright
    under275_sold = filled(account, fx, 10173, back=False)  # 3 goals: under 2.75 half-loses -> sold half-wins
    ah_away_bought = filled(account, fx, 1071, back=True)  # away +0.25 on 2-1 loses

    summary = settle_fixture(fixture_id=fx.pk, actor="test")

    assert states(home_bought) == (S.WON, [B.LOST])
    assert states(home_sold) == (S.LOST, [B.WON])
    assert states(over225_bought) == (S.WON, [B.LOST])
    assert states(under275_sold) == (S.HALF_WON, [B.HALF_LOST])
    assert states(ah_away_bought) == (S.LOST, [B.WON])
    assert summary.final and len(summary.orders_settled) == 5 and len(summary.bets_settled) == 5
    assert summary.unsettled == [] and summary.still_open == []
    home_bought.refresh_from_db()
    assert home_bought.settled_at is not None
    assert home_bought.bets.get().settled_at is not None


def test_a_second_run_changes_nothing(account):
    fx = finished(0, 0)
    order = filled(account, fx, 102)
    settle_fixture(fixture_id=fx.pk, actor="test")
    order.refresh_from_db()
    first_settled_at, first_updated_at = order.settled_at, order.updated_at

    again = settle_fixture(fixture_id=fx.pk, actor="test")

    order.refresh_from_db()
    assert (order.settlement_status, order.settled_at, order.updated_at) == (S.WON, first_settled_at, first_updated_at)
    assert again.orders_settled == [] and again.bets_settled == []


def test_r20_unknown_outcomes_and_goalscorers_without_scorer_data_stay_undecided_and_are_reported(account):
    fx = finished(2, 1)
    unknown = filled(account, fx, 161)  # a seed default id that the catalog does not define
    scorer = filled(account, fx, 1150, player_id=290927)
    basketball_id_on_soccer = filled(account, fx, 111)
    known = filled(account, fx, 104)

    summary = settle_fixture(fixture_id=fx.pk, actor="test")

    assert states(unknown) == (S.UNDECIDED, [B.UNDECIDED])
    assert states(scorer) == (S.UNDECIDED, [B.UNDECIDED])
    assert states(basketball_id_on_soccer) == (S.UNDECIDED, [B.UNDECIDED])
    assert states(known) == (S.WON, [B.LOST])
    reasons = {u.order_id: u.reason for u in summary.unsettled}
    assert reasons == {
        unknown.pk: "unknown_outcome",
        scorer.pk: "no_scorer_data",
        basketball_id_on_soccer.pk: "unknown_outcome",
    }
    # the sweep does not pick them up again every minute
    assert fx.pk not in fixtures_needing_settlement()


@pytest.mark.parametrize("status", [FixtureStatus.CANCELLED, FixtureStatus.ABANDONED])
def test_a_cancelled_or_abandoned_fixture_voids_every_order_and_bet_whatever_the_market(account, status):
    fx = FixtureFactory(status=status)
    orders = [filled(account, fx, 101), filled(account, fx, 161, back=False), filled(account, fx, 1150, player_id=7)]

    settle_fixture(fixture_id=fx.pk, actor="test")

    assert [states(o) for o in orders] == [(S.VOID, [B.VOID])] * 3


@pytest.mark.parametrize(
    "status", [FixtureStatus.NOT_STARTED, FixtureStatus.LIVE, FixtureStatus.POSTPONED, FixtureStatus.INTERRUPTED]
)
def test_a_fixture_that_may_still_be_played_settles_nothing(account, status):
    fx = FixtureFactory(status=status, participant1_score=1, participant2_score=0)
    order = filled(account, fx, 101)

    summary = settle_fixture(fixture_id=fx.pk, actor="test")

    assert not summary.final and summary.orders_settled == []
    assert states(order) == (S.UNDECIDED, [B.UNDECIDED])


def test_pending_and_declined_bets_are_left_alone_and_a_bet_placed_later_is_settled_by_the_sweep(account, eager_celery):
    fx = finished(1, 0)
    pending = filled(account, fx, 101, bet=BetStatus.PENDING)
    declined = filled(account, fx, 101, bet=BetStatus.DECLINED)

    settle_fixture(fixture_id=fx.pk, actor="test")
    assert states(pending) == (S.WON, [B.UNDECIDED])
    assert states(declined) == (S.WON, [B.UNDECIDED])
    assert fixtures_needing_settlement() == []

    pending.bets.update(bet_status=BetStatus.PLACED)  # the bookmaker confirmed after the settlement
    assert fixtures_needing_settlement() == [fx.pk]
    assert settlement_sweep_task.delay().get() == 1

    assert states(pending) == (S.WON, [B.LOST])
    assert states(declined) == (S.WON, [B.UNDECIDED])
    assert fixtures_needing_settlement() == []


def test_orders_that_never_matched_take_the_result_too_so_a_late_fill_is_counted_right(account):
    fx = finished(1, 0)
    cancelled = OrderFactory(account=account, fixture=fx, outcome_id=103, order_status=OrderStatus.CANCELLED)

    settle_fixture(fixture_id=fx.pk, actor="test")

    cancelled.refresh_from_db()
    assert cancelled.settlement_status == S.LOST and cancelled.matched_stake == 0


def test_an_open_order_is_cancelled_at_the_venue_first_then_settled(account):
    fx = finished(1, 0)
    order = place_resting_order(account=account, fixture=fx, outcome_id=1011, back=True)  # under 2.5: won

    summary = settle_fixture(fixture_id=fx.pk, actor="test")

    order.refresh_from_db()
    assert order.order_status == OrderStatus.CANCELLED and order.settlement_status == S.WON
    assert SimVenueOrder.objects.get(client_order_id=order.client_order_id).status == "cancelled"
    assert summary.still_open == []


def test_settlement_publishes_order_and_bet_events_after_commit(account, django_capture_on_commit_callbacks):
    fx = finished(3, 0)
    order = filled(account, fx, 1109, back=False)  # sold 3:0, which happened
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(client_group(account.client_id), channel)

    with django_capture_on_commit_callbacks(execute=True):
        settle_fixture(fixture_id=fx.pk, actor="test")

    events = drain(layer, channel, timeout=0.3)
    assert [(e["type"], e["data"]["settlementStatus"]) for e in events] == [("order", "LOST"), ("bet", "won")]
    assert events[0]["data"]["orderId"] == order.pk and events[0]["data"]["settledAt"] is not None


def test_the_task_settles_and_tolerates_a_fixture_that_does_not_exist(account, eager_celery):
    fx = finished(1, 1)
    order = filled(account, fx, 102)

    result = settle_fixture_task.delay(fx.pk).get()

    assert result["orders_settled"] == [order.pk] and states(order) == (S.WON, [B.LOST])
    assert settle_fixture_task.delay(10**9).get() == {"fixture": 10**9, "error": "not_found"}


# --- the operator ------------------------------------------------------------------------------------------------


def test_the_operators_result_writes_the_fixture_and_settles_it(
    account, eager_celery, django_capture_on_commit_callbacks
):
    fx = FixtureFactory(status=FixtureStatus.LIVE, participant1_score=0, participant2_score=0)
    order = filled(account, fx, 1070)  # 1 -0.25
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(ALL_CLIENTS_GROUP, channel)

    with django_capture_on_commit_callbacks(execute=True):
        fixture_result_set(fixture=fx, participant1_score=1, participant2_score=1, status="finished", actor="admin:op")

    fx.refresh_from_db()
    assert (fx.status, fx.participant1_score, fx.participant2_score) == ("finished", 1, 1)
    assert states(order) == (S.HALF_LOST, [B.HALF_WON])
    scores = [e["data"] for e in drain(layer, channel, timeout=0.3) if e["type"] == "score"]
    assert scores[-1]["status"] == "finished" and scores[-1]["scores"]["participant1"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "live", "participant1_score": 1, "participant2_score": 0}, "status must be one of"),
        ({"status": "finished", "participant1_score": None, "participant2_score": 0}, "needs both"),
        ({"status": "finished", "participant1_score": -1, "participant2_score": 0}, "must not be negative"),
        ({"status": "finished", "participant1_score": True, "participant2_score": 0}, "whole number"),
        ({"status": "finished", "participant1_score": "2", "participant2_score": 0}, "whole number"),
        ({"status": "finished", "participant1_score": 1.5, "participant2_score": 0}, "whole number"),
    ],
)
def test_a_bad_operator_result_is_refused_with_its_reason_and_nothing_is_written(account, kwargs, message):
    fx = FixtureFactory(status=FixtureStatus.LIVE, participant1_score=0, participant2_score=0)
    order = filled(account, fx, 101)

    with pytest.raises(InvalidResult, match=message):
        fixture_result_set(fixture=fx, actor="admin:op", **kwargs)

    fx.refresh_from_db()
    assert (fx.status, fx.participant1_score, fx.participant2_score) == ("live", 0, 0)
    assert states(order) == (S.UNDECIDED, [B.UNDECIDED])


def test_a_different_result_after_settlement_is_refused_and_the_same_one_is_accepted(account, eager_celery):
    fx = finished(2, 1)
    order = filled(account, fx, 101)
    settle_fixture(fixture_id=fx.pk, actor="test")

    with pytest.raises(ResultConflict, match="re-settlement is not supported"):
        fixture_result_set(fixture=fx, participant1_score=1, participant2_score=2, status="finished", actor="admin:op")
    with pytest.raises(ResultConflict):
        fixture_void(fixture=fx, actor="admin:op", reason="match fixing")
    fixture_result_set(fixture=fx, participant1_score=2, participant2_score=1, status="finished", actor="admin:op")

    fx.refresh_from_db()
    assert (fx.status, fx.participant1_score, fx.participant2_score) == ("finished", 2, 1)
    assert states(order) == (S.WON, [B.LOST])


def test_voiding_a_fixture_needs_a_reason_and_voids_everything(
    account, eager_celery, django_capture_on_commit_callbacks
):
    fx = FixtureFactory(status=FixtureStatus.LIVE, participant1_score=1, participant2_score=0)
    order = filled(account, fx, 101, back=False)

    with pytest.raises(InvalidResult, match="reason is required"):
        fixture_void(fixture=fx, actor="admin:op", reason="  ")
    assert states(order) == (S.UNDECIDED, [B.UNDECIDED])

    with django_capture_on_commit_callbacks(execute=True):
        fixture_void(fixture=fx, actor="admin:op", reason="abandoned at half-time, floodlights")

    fx.refresh_from_db()
    assert (fx.status, fx.participant1_score) == ("cancelled", 1)
    assert states(order) == (S.VOID, [B.VOID])


# --- the MM API reflects settlement ---------------------------------------------------------------------------------


def test_pnl_and_positions_move_when_the_fixture_settles(api, account):
    fx = finished(2, 0)
    order = filled(account, fx, 101, back=False, stake="100", price="0.45")  # sold home, home won

    before = api.get("/api/v1/pnl").json()
    positions_before = api.get("/api/v1/positions").json()
    assert before["netRealizedSpread"] == 0.0 and before["settledPairCount"] == 0
    assert positions_before["count"] == 1 and positions_before["positions"][0]["matchedStake"] == 100.0

    settle_fixture(fixture_id=fx.pk, actor="test")

    after = api.get("/api/v1/pnl").json()
    # fill: sold 100 @ 0.45 and LOST: -100 x 0.55 = -55.00; bet 55.31 @ 1.808 WON: 55.31 x 0.808 = 44.69048
    assert after["settledPairCount"] == 1
    assert after["netRealizedSpread"] == float((D("-55") + D("55.31") * D("0.808")).quantize(D("0.01")))
    assert api.get("/api/v1/positions").json() == {"positions": [], "count": 0}  # nothing at risk any more
    settled = api.get("/api/v1/positions?status=filled").json()["positions"]
    assert [p["outcomeId"] for p in settled] == [101]
    body = api.get(f"/api/v1/orders/{order.pk}").json()
    assert body["settlementStatus"] == "LOST" and body["settledAt"] is not None
    bets = api.get(f"/api/v1/bets?orderId={order.pk}").json()["data"]
    assert [b["settlementStatus"] for b in bets] == ["won"]


def test_naked_fills_count_in_naked_pnl_once_settled(api, account):
    fx = finished(0, 0)
    filled(account, fx, 1010, back=False, stake="50", price="0.40", bet=BetStatus.DECLINED)  # sold over 2.5: won

    assert api.get("/api/v1/pnl").json()["nakedSettledCount"] == 0
    settle_fixture(fixture_id=fx.pk, actor="test")

    body = api.get("/api/v1/pnl").json()
    assert body["nakedSettledCount"] == 1 and body["nakedPnl"] == 20.0  # 50 x 0.40


# --- PostgreSQL: real concurrent connections --------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_settlement_runs_settle_each_order_and_bet_exactly_once(mm_client):
    fx = finished(2, 2)
    accounts = [AccountFactory(client=mm_client[0]), AccountFactory()]  # two clients
    orders = [
        filled(accounts[i % 2], fx, outcome, back=bool(i % 3))
        for i, outcome in enumerate([101, 102, 103, 104, 105, 1010, 1011, 10170, 10171, 10172, 10173, 1070] * 3)
    ]

    summaries = in_threads(lambda _: settle_fixture(fixture_id=fx.pk, actor="test"), range(4), 4)

    settled = [oid for s in summaries for oid in s.orders_settled]
    bets = [bid for s in summaries for bid in s.bets_settled]
    assert sorted(settled) == sorted(o.pk for o in orders)  # each exactly once across the runs
    assert len(bets) == len(set(bets)) == len(orders)
    assert not Order.objects.filter(fixture=fx, settlement_status=S.UNDECIDED).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_settling_two_fixtures_with_orders_of_many_days_in_opposite_orders_does_not_deadlock(mm_client):
    """Orders of one client on several UTC days, on two fixtures, created so that one fixture's id
    order is the other's day order reversed: one transaction per order touches one PnL day marker,
    so the runs cannot wait on each other in a cycle."""
    import datetime as dt

    from django.utils import timezone

    account = AccountFactory(client=mm_client[0])
    fixtures = [finished(1, 0), finished(0, 1)]
    today = timezone.now()
    for day in range(6):
        for i, fx in enumerate(fixtures):
            created = today - dt.timedelta(days=day if i == 0 else 5 - day)
            order = filled(account, fx, 101)
            Order.objects.filter(pk=order.pk).update(created_at=created)

    summaries = in_threads(lambda fx: settle_fixture(fixture_id=fx.pk, actor="test"), fixtures * 2, 4)

    assert sum(len(s.orders_settled) for s in summaries) == 12
    assert not Order.objects.filter(settlement_status=S.UNDECIDED).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_settlement_running_while_fills_are_being_hedged_neither_deadlocks_nor_misses_a_bet(mm_client, eager_hedging):
    """Hedge workers write bets (bet row -> PnL marker) while settlement runs (fixture -> order ->
    bets -> marker) on the same orders and days. Neither waits on the other in a cycle; bets placed
    after their order settled are settled by the next run (what the sweep does)."""
    from hedging.services import hedge_fill
    from trading.models import Fill

    fx = finished(1, 2)
    account = AccountFactory(client=mm_client[0])
    orders = [
        filled(account, fx, outcome, back=bool(i % 2), bet=None) for i, outcome in enumerate([101, 103, 1011] * 8)
    ]
    fill_ids = list(Fill.objects.filter(order__in=orders).values_list("id", flat=True))
    jobs = ["settle", "settle"] + fill_ids

    in_threads(
        lambda job: settle_fixture(fixture_id=fx.pk, actor="test") if job == "settle" else hedge_fill(fill_id=job),
        jobs,
        6,
    )
    settle_fixture(fixture_id=fx.pk, actor="sweep")

    from hedging.models import HedgeBet

    assert HedgeBet.objects.filter(order__fixture=fx, bet_status=BetStatus.PLACED).count() == len(orders)
    mirror = {"WON": "lost", "LOST": "won"}
    for order in Order.objects.filter(fixture=fx).prefetch_related("bets"):
        assert order.settlement_status in ("WON", "LOST")
        placed = [b for b in order.bets.all() if b.bet_status == BetStatus.PLACED]
        assert [b.settlement_status for b in placed] == [mirror[order.settlement_status]] * len(placed)
    assert fixtures_needing_settlement() == []


def test_the_settlement_tasks_are_registered_late_acked_and_routed_to_the_settlement_queue():
    from django.conf import settings

    from mmsite.celery import app

    app.loader.import_default_modules()
    for name in ("trading.settlement.settle_fixture", "trading.settlement.sweep"):
        task = app.tasks[name]
        assert task.acks_late
        assert app.amqp.router.route({}, name)["queue"].name == "settlement"
    assert any(
        e["task"] == "trading.settlement.sweep" and e["schedule"] == 60.0
        for e in settings.CELERY_BEAT_SCHEDULE.values()
    )


def test_a_run_that_died_half_way_is_completed_by_the_next_without_touching_what_it_settled(account):
    """Each order commits on its own, so a worker killed mid-run leaves whole orders settled or
    not; the retry (acks_late) settles the rest and leaves the first ones as they were."""
    from trading.services.settlement import SettlementSummary, _settle_order

    fx = finished(0, 2)
    orders = [filled(account, fx, outcome) for outcome in (101, 102, 103, 104, 105, 1072)]
    first = SettlementSummary(fixture_id=fx.fixture_id, status=fx.status, final=True)
    for order in orders[:3]:  # what the killed run got done
        _settle_order(order_id=order.pk, fixture_pk=fx.pk, summary=first)
    stamps = {o.pk: Order.objects.get(pk=o.pk).settled_at for o in orders[:3]}

    rest = settle_fixture(fixture_id=fx.pk, actor="retry")

    assert rest.orders_settled == [o.pk for o in orders[3:]]
    assert {o.pk: Order.objects.get(pk=o.pk).settled_at for o in orders[:3]} == stamps
    assert [states(o)[0] for o in orders] == [S.LOST, S.LOST, S.WON, S.LOST, S.WON, S.LOST]


def test_a_result_corrected_by_the_feed_after_settlement_is_reported_never_resettled(account):
    fx = finished(2, 1)
    home = filled(account, fx, 101)
    draw = filled(account, fx, 102)
    settle_fixture(fixture_id=fx.pk, actor="test")

    type(fx).objects.filter(pk=fx.pk).update(participant1_score=1)  # the feed's corrected score: 1-1
    summary = settle_fixture(fixture_id=fx.pk, actor="feed")

    assert summary.mismatched == [home.pk, draw.pk] and summary.orders_settled == []
    assert [states(home)[0], states(draw)[0]] == [S.WON, S.LOST]  # as settled; a person decides
    assert "disagree with the result now" in str(summary)


def test_with_a_grace_period_a_just_finished_fixture_waits_for_the_sweep_but_the_operator_settles_at_once(
    account, settings, eager_celery
):
    import datetime as dt

    from django.utils import timezone

    settings.SETTLEMENT_GRACE_SECONDS = 120
    fx = finished(1, 0)
    order = filled(account, fx, 101)

    summary = settle_fixture(fixture_id=fx.pk, actor="feed")
    assert summary.waiting_until is not None and summary.orders_settled == []
    assert "settles after" in str(summary)
    assert states(order) == (S.UNDECIDED, [B.UNDECIDED])
    assert fixtures_needing_settlement() == []  # not yet quiet long enough

    type(fx).objects.filter(pk=fx.pk).update(updated_at=timezone.now() - dt.timedelta(seconds=121))
    assert fixtures_needing_settlement() == [fx.pk]
    settlement_sweep_task.delay().get()
    assert states(order) == (S.WON, [B.LOST])

    other = finished(0, 0)
    draw = filled(account, other, 102)
    assert settle_fixture(fixture_id=other.pk, actor="admin:op", wait_for_grace=False).orders_settled == [draw.pk]


def test_goalscorer_orders_settle_when_the_operator_gives_the_scorers(account):
    fx = finished(1, 0)
    scored = filled(account, fx, 1150, player_id=290927)
    did_not = filled(account, fx, 1150, player_id=291144, back=False)
    home = filled(account, fx, 101)

    without = settle_fixture(fixture_id=fx.pk, actor="feed")
    assert [u.reason for u in without.unsettled] == ["no_scorer_data", "no_scorer_data"]
    assert states(home)[0] == S.WON and states(scored)[0] == S.UNDECIDED

    settle_fixture(fixture_id=fx.pk, actor="admin:op", wait_for_grace=False, scorers=[290927])

    assert states(scored) == (S.WON, [B.LOST])
    assert states(did_not) == (S.WON, [B.LOST])  # sold "291144 scores", who did not
