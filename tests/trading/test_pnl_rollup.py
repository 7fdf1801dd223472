"""The PnL rollup behind GET /pnl: PnlDay rows, the PnlDirtyDay markers the database triggers keep,
and the refresh. The rule under test: whatever was written and whenever the refresh ran, the
answer is exactly the live computation's (docs/api/mm-positions-pnl.md, "How /pnl is computed").

Triggers exist on PostgreSQL only, so almost everything here is marked ``postgres``; SQLite
(no triggers) always answers live, which tests/trading/test_api_pnl.py covers on both backends.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from hedging.choices import BetSettlementStatus, BetStatus
from hedging.models import HedgeBet
from tests.factories import AccountFactory, ClientFactory, FillFactory, HedgeBetFactory, OrderFactory
from trading.choices import MatchedStatus, OrderStatus, SettlementStatus
from trading.models import Fill, Order, PnlDay, PnlDirtyDay
from trading.selectors.pnl import (
    day_runs,
    in_date_range,
    pnl_fills,
    pnl_raw,
    pnl_report,
    pnl_rollup_raw,
    pnl_rounded,
    pnl_summary,
)
from trading.services import pnl as pnl_service
from trading.services.pnl import _refresh_days, pnl_days_mark, pnl_days_rebuild, pnl_days_refresh
from trading.tasks.pnl import pnl_days_refresh_task

D = Decimal
UTC = dt.UTC
DAY1, DAY2, DAY3, DAY4 = (dt.date(2026, 3, d) for d in (1, 2, 3, 4))
ORDER_SETTLEMENTS = list(SettlementStatus)
BET_SETTLEMENTS = list(BetSettlementStatus)


def at(day: dt.date, hour: int = 12, minute: int = 0, second: int = 0, micro: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=UTC)


def filled_order(account, *, created_at, stake="100", **kw) -> Order:
    return OrderFactory(
        account=account,
        order_status=OrderStatus.FILLED,
        matched_status=MatchedStatus.FULLY_MATCHED,
        order_stake=D(stake),
        matched_stake=D(stake),
        created_at=created_at,
        **kw,
    )


def fill(order, *, stake="100", price="0.40") -> Fill:
    return FillFactory(order=order, stake=D(stake), price=D(price))


def bet(fill_, *, stake="100", odds="2.0", status=BetStatus.PLACED, settlement=BetSettlementStatus.UNDECIDED):
    return HedgeBetFactory(
        fill=fill_, placed_stake=D(stake), placed_price=D(odds), bet_status=status, settlement_status=settlement
    )


def marked(client) -> dict[dt.date, int]:
    return dict(PnlDirtyDay.objects.filter(client=client).values_list("day", "generation"))


def assert_exact(client, ranges=((None, None),)) -> None:
    """The rollup's answer equals the live one: every figure, before and after rounding; the
    ratios digit for digit (same NUMERIC division)."""
    for from_date, to_date in ranges:
        live = pnl_raw(fills=in_date_range(pnl_fills(client=client), from_date, to_date))
        rollup = pnl_rollup_raw(client=client, from_date=from_date, to_date=to_date)
        assert rollup == live, (from_date, to_date)
        for ratio in ("unhedgedStakePct", "avgHedgePriceDrift"):
            assert str(rollup[ratio]) == str(live[ratio]), (ratio, from_date, to_date)
        assert pnl_report(client=client, from_date=from_date, to_date=to_date) == pnl_rounded(live)


@pytest.fixture
def account(mm_client):
    return AccountFactory(client=mm_client[0])


# --- pure helpers -----------------------------------------------------------------------------------------


def test_consecutive_days_become_one_range():
    days = [DAY4, DAY1, DAY2, DAY2, dt.date(2026, 3, 9)]
    assert day_runs(days) == [(DAY1, DAY2), (DAY4, DAY4), (dt.date(2026, 3, 9), dt.date(2026, 3, 9))]
    assert day_runs([]) == []


# --- what the triggers mark -------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # each write its own transaction: within one, only the first bumps
def test_fill_bet_and_settlement_writes_mark_the_orders_created_day():
    account = AccountFactory(client=ClientFactory(name="marks:vertex"))
    client = account.client
    order = filled_order(account, created_at=at(DAY1, 23, 59, 59, 999999))  # the last instant of DAY1 (UTC)
    assert marked(client) == {}, "an order without fills changes no PnL"

    f = fill(order)
    assert set(marked(client)) == {DAY1}
    g = marked(client)[DAY1]

    b = bet(f, status=BetStatus.PENDING)
    assert marked(client)[DAY1] > g, "a bet on the fill bumps its order's day"
    for change in (
        {"bet_status": BetStatus.PLACED},
        {"settlement_status": BetSettlementStatus.WON},
        {"placed_stake": D("90")},
        {"placed_price": D("2.1")},
    ):
        g = marked(client)[DAY1]
        HedgeBet.objects.filter(pk=b.pk).update(**change)
        assert marked(client)[DAY1] > g, change
    for change in (
        {"settlement_status": SettlementStatus.WON},
        {"back": False},
        {"bookmaker_outcome_price": D("2.2")},
    ):
        g = marked(client)[DAY1]
        Order.objects.filter(pk=order.pk).update(**change)
        assert marked(client)[DAY1] > g, change
    g = marked(client)[DAY1]
    Fill.objects.filter(pk=f.pk).update(stake=D("50"))
    assert marked(client)[DAY1] > g


@pytest.mark.postgres
@pytest.mark.django_db
def test_writes_that_cannot_change_pnl_leave_a_clean_day_clean(account):
    client = account.client
    order = filled_order(account, created_at=at(DAY2))
    bet(fill(order))
    pnl_days_refresh()
    assert marked(client) == {}

    Order.objects.filter(pk=order.pk).update(order_status=OrderStatus.CANCELLED, status_reason="x", matched_at=at(DAY3))
    Fill.objects.filter(order=order).update(source="poll", matched_at=at(DAY4))
    HedgeBet.objects.filter(order=order).update(attempts=3, bookmaker_bet_id="b-1")
    filled_order(account, created_at=at(DAY2))  # a new order, no fill yet

    assert marked(client) == {}


@pytest.mark.postgres
@pytest.mark.django_db
def test_moving_a_fill_to_another_order_marks_both_days(account):
    client = account.client
    f = fill(filled_order(account, created_at=at(DAY1)))
    other = filled_order(account, created_at=at(DAY3))
    pnl_days_refresh()

    Fill.objects.filter(pk=f.pk).update(order=other)

    assert set(marked(client)) == {DAY1, DAY3}
    assert_exact(client)


@pytest.mark.postgres
@pytest.mark.django_db
def test_deleting_rows_marks_their_day(account):
    client = account.client
    f = fill(filled_order(account, created_at=at(DAY1)))
    b = bet(f, settlement=BetSettlementStatus.WON)
    pnl_days_refresh()
    assert PnlDay.objects.get(client=client, day=DAY1).total_turnover == D("100")

    b.delete()
    assert set(marked(client)) == {DAY1}
    assert_exact(client)
    pnl_days_refresh()
    f.delete()
    assert set(marked(client)) == {DAY1}
    pnl_days_refresh()

    assert not PnlDay.objects.filter(client=client).exists(), "a day left without fills has no row"
    assert pnl_rollup_raw(client=client)["unhedgedStake"] == 0


# --- the answer is always the live one -----------------------------------------------------------------


def _random_world(rng: random.Random, accounts, steps: int) -> None:
    """Random engine-like writes over four days (with orders at the edges of UTC days), refreshes of
    random size in between, and after each step the rollup's answer checked against the live one."""
    client = accounts[0].client
    days = [DAY1, DAY2, DAY3, DAY4]
    instants = [
        lambda d: at(d, 0, 0, 0, 0),
        lambda d: at(d, 12, rng.randrange(60)),
        lambda d: at(d, 23, 59, 59, 999999),
    ]
    ranges = [(None, None), (DAY2, None), (None, DAY2), (DAY2, DAY3), (DAY4, DAY4), (DAY1, DAY1)]

    def q4(lo: float, hi: float) -> Decimal:
        return D(f"{rng.uniform(lo, hi):.4f}")

    orders: list[Order] = []
    fills: list[Fill] = []
    for step in range(steps):
        op = rng.choice(["order", "fill", "fill", "bet", "bet", "bet_status", "settle", "settle_bet", "void", "edit"])
        if op == "order" or not orders:
            account = rng.choice(accounts)
            orders.append(
                filled_order(
                    account,
                    created_at=rng.choice(instants)(rng.choice(days)),
                    back=rng.random() < 0.5,
                    bookmaker_outcome_price=None if rng.random() < 0.2 else q4(1.01, 9),
                )
            )
        elif op == "fill":
            fills.append(fill(rng.choice(orders), stake=q4(0.0001, 500), price=q4(0.01, 0.99)))
        elif op == "bet" and (naked := [f for f in fills if not HedgeBet.objects.filter(fill=f).exists()]):
            bet(
                rng.choice(naked),
                stake=q4(0.0001, 400),
                odds=q4(1.0001, 12),
                status=rng.choice([BetStatus.PLACED, BetStatus.PLACED, BetStatus.DECLINED, BetStatus.PENDING]),
            )
        elif op == "bet_status" and (pending := list(HedgeBet.objects.filter(fill__in=fills, bet_status="pending"))):
            HedgeBet.objects.filter(pk=rng.choice(pending).pk).update(
                bet_status=rng.choice([BetStatus.PLACED, BetStatus.DECLINED]), placed_price=q4(1.0001, 12)
            )
        elif op == "settle":
            Order.objects.filter(pk=rng.choice(orders).pk).update(settlement_status=rng.choice(ORDER_SETTLEMENTS))
        elif op == "settle_bet" and (bets := list(HedgeBet.objects.filter(fill__in=fills))):
            HedgeBet.objects.filter(pk=rng.choice(bets).pk).update(settlement_status=rng.choice(BET_SETTLEMENTS))
        elif op == "void":
            order = rng.choice(orders)
            Order.objects.filter(pk=order.pk).update(settlement_status=SettlementStatus.VOID)
            HedgeBet.objects.filter(fill__order=order).update(settlement_status=BetSettlementStatus.VOID)
        elif op == "edit" and fills:
            Fill.objects.filter(pk=rng.choice(fills).pk).update(stake=q4(0.0001, 500))
        if rng.random() < 0.3:
            pnl_days_refresh(limit=rng.choice([None, 1, 2]))
        if step % 3 == 0 or step == steps - 1:
            assert_exact(client, ranges)
    pnl_days_refresh(limit=None)
    assert marked(client) == {}
    assert_exact(client, ranges)


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollup_answer_equals_live_after_random_writes_and_refreshes(mm_client, other_client, seed):
    rng = random.Random(seed)
    accounts = [AccountFactory(client=mm_client[0]), AccountFactory(client=mm_client[0], exchange="kalshi")]
    theirs = AccountFactory(client=other_client[0])
    # the other client trades on the same days: never counted for ours
    for day in (DAY1, DAY2, DAY3):
        bet(fill(filled_order(theirs, created_at=at(day), settlement_status=SettlementStatus.WON)), stake="777")

    _random_world(rng, accounts, steps=45)

    assert_exact(other_client[0])


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_write_after_the_refresh_is_counted_without_a_refresh(api, account):
    o1 = filled_order(account, created_at=at(DAY1), settlement_status=SettlementStatus.WON)
    bet(fill(o1, stake="100", price="0.40"), settlement=BetSettlementStatus.LOST)  # pair: 60 - 100 = -40
    o2 = filled_order(account, created_at=at(DAY2))
    f2 = fill(o2, stake="50", price="0.50")
    pnl_days_refresh()
    assert marked(account.client) == {}
    before = api.get("/api/v1/pnl").json()
    assert (before["netRealizedSpread"], before["settledPairCount"], before["nakedSettledCount"]) == (-40.0, 1, 0)

    Order.objects.filter(pk=o2.pk).update(settlement_status=SettlementStatus.LOST)  # naked: -25

    assert set(marked(account.client)) == {DAY2}
    after = api.get("/api/v1/pnl").json()
    assert (after["nakedPnl"], after["nakedSettledCount"], after["unhedgedStake"]) == (-25.0, 1, 50.0)
    assert_exact(account.client)
    bet(f2, stake="10", odds="3.0")  # another write to the same day, no refresh
    assert api.get("/api/v1/pnl").json()["totalTurnover"] == 110.0


@pytest.mark.postgres
@pytest.mark.django_db
def test_date_filters_sum_exactly_the_days_in_range(api, account):
    # one naked, unsettled fill per day, of stake 1, 2, 4, 8: the unhedged stake names the days summed
    for stake, day in (("1", DAY1), ("2", DAY2), ("4", DAY3), ("8", DAY4)):
        fill(filled_order(account, created_at=at(day, 23, 59, 59), stake=stake), stake=stake)
    filled_order(account, created_at=at(DAY2))  # no fill: no row
    pnl_days_refresh()
    assert sorted(PnlDay.objects.filter(client=account.client).values_list("day", flat=True)) == [
        DAY1,
        DAY2,
        DAY3,
        DAY4,
    ]
    fill(filled_order(account, created_at=at(DAY3, 0)), stake="16")  # DAY3 now marked: live

    def unhedged(query: str) -> float:
        return api.get(f"/api/v1/pnl{query}").json()["unhedgedStake"]

    assert unhedged("") == 31.0
    assert unhedged("?fromDate=2026-03-02&toDate=2026-03-03") == 22.0  # 2 + 4 + 16
    assert unhedged("?fromDate=2026-03-03") == 28.0
    assert unhedged("?toDate=2026-03-01") == 1.0
    assert unhedged("?fromDate=2026-03-05") == 0.0
    assert_exact(account.client, [(None, None), (DAY2, DAY3), (DAY3, None), (None, DAY1), (DAY4, DAY4)])


@pytest.mark.postgres
@pytest.mark.django_db
def test_another_clients_rows_and_markers_never_count(api, account, other_client):
    fill(filled_order(account, created_at=at(DAY1), settlement_status=SettlementStatus.WON), stake="10", price="0.5")
    theirs = AccountFactory(client=other_client[0])
    f = fill(filled_order(theirs, created_at=at(DAY1), settlement_status=SettlementStatus.WON), stake="1000")
    bet(f, stake="1000", settlement=BetSettlementStatus.LOST)
    fill(filled_order(theirs, created_at=at(DAY2)), stake="1000")
    pnl_days_refresh()
    fill(filled_order(theirs, created_at=at(DAY1)), stake="1000")  # theirs marked again, ours clean

    body = api.get("/api/v1/pnl").json()

    assert (body["nakedPnl"], body["unhedgedStake"], body["totalTurnover"], body["settledPairCount"]) == (
        5.0,
        10.0,
        0.0,
        0,
    )
    assert set(marked(other_client[0])) == {DAY1} and marked(account.client) == {}
    assert_exact(account.client)
    assert_exact(other_client[0])


@pytest.mark.postgres
@pytest.mark.django_db
def test_refresh_limit_and_client_scope(account, other_client):
    theirs = AccountFactory(client=other_client[0])
    for day in (DAY1, DAY2, DAY3):
        fill(filled_order(account, created_at=at(day)))
        fill(filled_order(theirs, created_at=at(day)))

    assert pnl_days_refresh(client_id=account.client.pk, limit=2) == 2
    assert set(marked(account.client)) == {DAY3} and len(marked(other_client[0])) == 3
    assert pnl_days_refresh_task.apply(kwargs={"limit": 100}).get() == 4  # what the beat task runs
    assert PnlDirtyDay.objects.count() == 0
    assert pnl_days_refresh() == 0
    assert_exact(account.client)


# --- the generation race and concurrent refreshes (real transactions) -------------------------------------


def _setup_refreshed_day(account) -> Order:
    order = filled_order(account, created_at=at(DAY1), settlement_status=SettlementStatus.WON)
    fill(order, stake="100", price="0.40")
    pnl_days_refresh()
    Order.objects.filter(pk=order.pk).update(settlement_status=SettlementStatus.LOST)  # marks DAY1 again
    return order


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_write_committed_after_the_refresh_read_its_generation_keeps_the_marker(monkeypatch):
    account = AccountFactory(client=ClientFactory(name="gen:vertex"))
    client = account.client
    order = _setup_refreshed_day(account)
    compute = pnl_service.pnl_day_components

    def compute_then_another_connection_writes(**kw):
        rows = list(compute(**kw))  # the refresh's sums: before the write below
        _in_thread(lambda: Order.objects.filter(pk=order.pk).update(settlement_status=SettlementStatus.HALF_WON))
        return rows

    monkeypatch.setattr(pnl_service, "pnl_day_components", compute_then_another_connection_writes)
    with transaction.atomic():  # the refresh's transaction, step by step
        markers = list(PnlDirtyDay.objects.filter(client=client).values_list("day", "generation"))  # read g
        _refresh_days(client_id=client.pk, markers=markers)  # compute, (write commits), delete-if-g
    monkeypatch.undo()

    assert PnlDay.objects.get(client=client, day=DAY1).naked_pnl == D("-40"), "the row missed the write"
    assert set(marked(client)) == {DAY1}, "the write bumped the generation: the marker survives"
    assert marked(client)[DAY1] != markers[0][1]
    assert pnl_report(client=client)["nakedPnl"] == D("30.00"), "so the day is computed live"  # 100 * 0.60 / 2
    assert_exact(client)
    assert pnl_days_refresh() == 1
    assert marked(client) == {} and pnl_report(client=client)["nakedPnl"] == D("30.00")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_write_in_flight_during_the_refresh_keeps_the_marker_and_is_not_waited_for():
    account = AccountFactory(client=ClientFactory(name="flight:vertex"))
    client = account.client
    order = _setup_refreshed_day(account)
    started, release = threading.Event(), threading.Event()

    def writer() -> None:
        with transaction.atomic():
            Order.objects.filter(pk=order.pk).update(settlement_status=SettlementStatus.VOID)  # holds the marker
            started.set()
            release.wait(10)

    thread = threading.Thread(target=_closing(writer))
    thread.start()
    assert started.wait(10)
    try:
        t0 = time.monotonic()
        assert pnl_days_refresh() == 1  # computed without the write, which is not committed
        assert time.monotonic() - t0 < 5, "the refresh skipped the locked marker instead of waiting"
    finally:
        release.set()
        thread.join(10)

    assert set(marked(client)) == {DAY1}
    assert pnl_report(client=client)["nakedPnl"] == D("0.00")  # VOID, computed live
    assert_exact(client)
    assert pnl_days_refresh() == 1 and marked(client) == {}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_refresh_skips_a_client_another_refresh_holds():
    account = AccountFactory(client=ClientFactory(name="lock:vertex"))
    client = account.client
    fill(filled_order(account, created_at=at(DAY1)))
    holding, release = threading.Event(), threading.Event()

    def other_refresh() -> None:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x506E4C72, client.pk])
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=_closing(other_refresh))
    thread.start()
    assert holding.wait(10)
    try:
        assert pnl_days_refresh() == 0
        assert set(marked(client)) == {DAY1}
    finally:
        release.set()
        thread.join(10)
    assert pnl_days_refresh() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_many_writes_in_one_transaction_bump_the_marker_once():
    account = AccountFactory(client=ClientFactory(name="bulk:vertex"))
    orders = [filled_order(account, created_at=at(DAY2, h)) for h in range(3)]
    with transaction.atomic():
        Fill.objects.bulk_create(
            Fill(
                order=o,
                client=o.client,
                exchange=o.exchange,
                venue_trade_id=f"bulk-{o.pk}-{i}",
                price=D("0.5"),
                stake=D(1),
            )
            for o in orders
            for i in range(50)
        )
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM trading_pnldirtyday WHERE xmin = pg_current_xact_id()::xid")
            assert cur.fetchone()[0] == 1
        first = marked(account.client)[DAY2]
        Order.objects.filter(pk__in=[o.pk for o in orders]).update(settlement_status=SettlementStatus.WON)
        assert marked(account.client)[DAY2] == first, "same transaction: no new row version of the marker"

    Order.objects.filter(pk=orders[0].pk).update(settlement_status=SettlementStatus.LOST)
    assert marked(account.client)[DAY2] > first, "a later transaction bumps it again"
    assert_exact(account.client)


def _closing(fn):
    """Run ``fn`` in a thread with its own database connection, closed at the end."""

    def run() -> None:
        try:
            fn()
        finally:
            connection.close()

    return run


def _in_thread(fn) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(exc)

    thread = threading.Thread(target=_closing(run))
    thread.start()
    thread.join(30)
    assert not errors, errors


# --- rebuild, command, migration ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_rebuild_computes_every_day_with_fills(account):
    for day in (DAY1, DAY3):
        bet(fill(filled_order(account, created_at=at(day))), stake="40")
    filled_order(account, created_at=at(DAY2))
    PnlDirtyDay.objects.all().delete()  # as after a load that bypassed the triggers

    assert pnl_days_rebuild() == 2

    rows = PnlDay.objects.filter(client=account.client).order_by("day")
    assert [(r.day, r.total_turnover, r.total_fill_stake) for r in rows] == [
        (DAY1, D("40"), D("100")),
        (DAY3, D("40"), D("100")),
    ]
    assert not PnlDirtyDay.objects.exists()
    assert pnl_report(client=account.client) == pnl_summary(fills=pnl_fills(client=account.client))


@pytest.mark.django_db
def test_pnl_rollup_command(account, capsys):
    fill(filled_order(account, created_at=at(DAY1)))
    PnlDirtyDay.objects.all().delete()

    call_command("pnl_rollup", "--rebuild", "--client", account.client.name)

    out = capsys.readouterr().out
    assert "marked 1 days stale" in out and "recomputed 1 days" in out and "0 still marked" in out
    assert PnlDay.objects.filter(client=account.client, day=DAY1).exists()
    call_command("pnl_rollup")
    assert "recomputed 0 days" in capsys.readouterr().out


@pytest.mark.django_db
def test_marking_by_hand_then_refreshing_is_idempotent(account):
    fill(filled_order(account, created_at=at(DAY1)))
    pnl_days_mark()
    pnl_days_mark(client_id=account.client.pk)
    assert set(marked(account.client)) == {DAY1}
    assert pnl_days_refresh() == 1
    assert pnl_days_refresh() == 0


def _trigger_names() -> set[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE %s", ["%pnl_dirty%"])
        return {r[0] for r in cur.fetchall()}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_migration_reverses_and_reapplies_marking_existing_days():
    account = AccountFactory(client=ClientFactory(name="mig:vertex"))
    fill(filled_order(account, created_at=at(DAY1)))
    assert len(_trigger_names()) == 6
    try:
        call_command("migrate", "trading", "0002", verbosity=0)
        assert _trigger_names() == set()
        with connection.cursor() as cur:
            cur.execute("SELECT to_regclass('trading_pnlday'), to_regclass('trading_pnl_generation_seq')")
            assert cur.fetchone() == (None, None)
        fill(filled_order(account, created_at=at(DAY3)))  # written while there is no rollup
    finally:
        call_command("migrate", "trading", verbosity=0)

    assert len(_trigger_names()) == 6
    assert set(marked(account.client)) == {DAY1, DAY3}, "the migration marks every day that has fills"
    assert pnl_days_refresh() == 2
    assert_exact(account.client)
