"""GET /api/v1/pnl (seed 000, step 5).

Stakes are contracts paying 1 each. Every expected figure is worked out by hand in the test
from the fills and bets it creates (model: docs/api/mm-positions-pnl.md).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hedging.choices import BetSettlementStatus, BetStatus
from tests.factories import AccountFactory, FillFactory, HedgeBetFactory, OrderFactory
from trading.choices import MatchedStatus, OrderStatus, SettlementStatus

pytestmark = pytest.mark.django_db

D = Decimal
ZEROS = {
    "totalTurnover": 0.0,
    "validTurnover": 0.0,
    "netRealizedSpread": 0.0,
    "nakedPnl": 0.0,
    "unhedgedStake": 0.0,
    "unhedgedStakePct": 0.0,
    "avgHedgePriceDrift": 0.0,
    "settledPairCount": 0,
    "nakedSettledCount": 0,
    "fromDate": None,
    "toDate": None,
}


@pytest.fixture
def account(mm_client):
    return AccountFactory(client=mm_client[0])


def filled_order(account, *, stake="100", back=True, settlement=SettlementStatus.UNDECIDED, **kw):
    return OrderFactory(
        account=account,
        order_status=OrderStatus.FILLED,
        matched_status=MatchedStatus.FULLY_MATCHED,
        order_stake=D(stake),
        matched_stake=D(stake),
        back=back,
        settlement_status=settlement,
        **kw,
    )


def fill(order, *, stake="100", price="0.40"):
    return FillFactory(order=order, stake=D(stake), price=D(price))


def bet(fill_, *, stake="100", odds="2.0", status=BetStatus.PLACED, settlement=BetSettlementStatus.UNDECIDED):
    return HedgeBetFactory(
        fill=fill_, placed_stake=D(stake), placed_price=D(odds), bet_status=status, settlement_status=settlement
    )


def pnl(api, query=""):
    resp = api.get(f"/api/v1/pnl{query}")
    assert resp.status_code == 200, resp.content
    return resp.json()


# --- shape --------------------------------------------------------------------------------------------


def test_no_fills_is_all_zeros_with_null_dates_and_exactly_the_seed_fields(api):
    body = pnl(api)
    assert body == ZEROS
    assert list(body) == list(ZEROS)  # the seed's eleven fields, in the seed's order


def test_figures_render_as_json_numbers_and_dates_echo_as_given(api, account):
    f = fill(filled_order(account, created_at=dt.datetime(2026, 1, 30, tzinfo=dt.UTC)), stake="100", price="0.40")
    bet(f, stake="80", odds="2.5")

    resp = api.get("/api/v1/pnl?fromDate=2026-01-29&toDate=2026-02-01")

    assert b'"totalTurnover":80.0' in resp.content and b'"fromDate":"2026-01-29"' in resp.content
    body = resp.json()
    assert body["fromDate"] == "2026-01-29" and body["toDate"] == "2026-02-01"
    assert isinstance(body["unhedgedStakePct"], float) and isinstance(body["settledPairCount"], int)


# --- exchange leg: every settlement status, both sides --------------------------------------------------


@pytest.mark.parametrize(
    "back,settlement,expected",
    [
        # bought 100 at 0.40: win 100*(1-0.40) = 60, lose 100*0.40 = 40
        (True, SettlementStatus.WON, 60.0),
        (True, SettlementStatus.LOST, -40.0),
        (True, SettlementStatus.HALF_WON, 30.0),
        (True, SettlementStatus.HALF_LOST, -20.0),
        (True, SettlementStatus.VOID, 0.0),
        # sold 100 at 0.40: keep 100*0.40 = 40, pay 100*(1-0.40) = 60
        (False, SettlementStatus.WON, 40.0),
        (False, SettlementStatus.LOST, -60.0),
        (False, SettlementStatus.HALF_WON, 20.0),
        (False, SettlementStatus.HALF_LOST, -30.0),
        (False, SettlementStatus.VOID, 0.0),
    ],
)
def test_naked_settled_fill_pnl_for_each_side_and_settlement(api, account, back, settlement, expected):
    fill(filled_order(account, back=back, settlement=settlement), stake="100", price="0.40")

    body = pnl(api)

    assert body["nakedPnl"] == expected
    assert body["nakedSettledCount"] == 1
    assert (body["unhedgedStake"], body["unhedgedStakePct"]) == (100.0, 100.0)
    assert (body["netRealizedSpread"], body["settledPairCount"], body["totalTurnover"]) == (0.0, 0, 0.0)


def test_fill_price_not_order_price_drives_the_pnl(api, account):
    fill(filled_order(account, settlement=SettlementStatus.WON, order_cents=D("0.45")), stake="10", price="0.42")

    assert pnl(api)["nakedPnl"] == 5.8  # 10 * (1 - 0.42)


def test_undecided_naked_fill_is_unhedged_stake_but_not_pnl(api, account):
    fill(filled_order(account, back=False), stake="100", price="0.40")

    body = pnl(api)

    assert (body["nakedPnl"], body["nakedSettledCount"]) == (0.0, 0)
    assert (body["unhedgedStake"], body["unhedgedStakePct"]) == (100.0, 100.0)


# --- bookmaker leg: every settlement status -----------------------------------------------------------


@pytest.mark.parametrize(
    "settlement,expected,pairs",
    [
        # bet 100 at 2.5: won 100*(2.5-1) = 150, lost -100
        (BetSettlementStatus.WON, 150.0, 1),
        (BetSettlementStatus.LOST, -100.0, 1),
        (BetSettlementStatus.HALF_WON, 75.0, 1),
        (BetSettlementStatus.HALF_LOST, -50.0, 1),
        (BetSettlementStatus.VOID, 0.0, 1),
        (BetSettlementStatus.UNDECIDED, 0.0, 0),  # one leg not terminal: not a settled pair
    ],
)
def test_pair_bet_pnl_for_each_settlement(api, account, settlement, expected, pairs):
    # A VOID exchange leg contributes 0, so the pair's spread is the bet's PnL alone.
    f = fill(filled_order(account, settlement=SettlementStatus.VOID), stake="100", price="0.40")
    bet(f, stake="100", odds="2.5", settlement=settlement)

    body = pnl(api)

    assert (body["netRealizedSpread"], body["settledPairCount"]) == (expected, pairs)
    assert (body["nakedPnl"], body["nakedSettledCount"], body["unhedgedStake"]) == (0.0, 0, 0.0)


def test_settled_pair_adds_both_legs(api, account):
    # bought 100 at 0.45 and won: +55; hedge 55 at 2.10 on the other side lost: -55 -> spread 0
    # sold 200 at 0.30 and lost: -140; hedge 100 at 2.50 won: +150 -> spread +10
    f1 = fill(filled_order(account, settlement=SettlementStatus.WON), stake="100", price="0.45")
    bet(f1, stake="55", odds="2.10", settlement=BetSettlementStatus.LOST)
    f2 = fill(
        filled_order(account, back=False, settlement=SettlementStatus.LOST, stake="200"), stake="200", price="0.3"
    )
    bet(f2, stake="100", odds="2.50", settlement=BetSettlementStatus.WON)

    body = pnl(api)

    assert (body["netRealizedSpread"], body["settledPairCount"]) == (10.0, 2)
    assert body["totalTurnover"] == 155.0


def test_pair_with_unsettled_exchange_leg_is_not_realized(api, account):
    f = fill(filled_order(account), stake="100", price="0.40")
    bet(f, stake="100", odds="2.5", settlement=BetSettlementStatus.WON)

    body = pnl(api)

    assert (body["netRealizedSpread"], body["settledPairCount"]) == (0.0, 0)
    assert (body["nakedPnl"], body["nakedSettledCount"], body["unhedgedStake"]) == (0.0, 0, 0.0)


# --- pairs versus naked fills ---------------------------------------------------------------------------


def test_partial_hedge_two_fills_on_one_order_one_hedged_one_declined(api, account):
    # order bought 100 at 0.40, WON, filled as 60 + 40
    o = filled_order(account, settlement=SettlementStatus.WON)
    hedged, declined = fill(o, stake="60", price="0.40"), fill(o, stake="40", price="0.40")
    bet(hedged, stake="60", odds="2.0", settlement=BetSettlementStatus.LOST)
    bet(declined, stake="40", odds="2.0", status=BetStatus.DECLINED)

    body = pnl(api)

    assert body == {
        **ZEROS,
        "totalTurnover": 60.0,  # the declined bet does not count
        "validTurnover": 60.0,  # min(60, 60*(2.0-1))
        "netRealizedSpread": -24.0,  # 60*0.60 - 60
        "settledPairCount": 1,
        "nakedPnl": 24.0,  # 40*0.60
        "nakedSettledCount": 1,
        "unhedgedStake": 40.0,
        "unhedgedStakePct": 40.0,  # 100 * 40 / 100
        "avgHedgePriceDrift": -0.192,  # order's bookmaker price 1.808 - placed 2.0
    }


def test_pending_bet_leaves_the_fill_naked(api, account):
    f = fill(filled_order(account, settlement=SettlementStatus.LOST), stake="50", price="0.20")
    bet(f, stake="50", odds="5.0", status=BetStatus.PENDING)

    body = pnl(api)

    assert (body["nakedPnl"], body["nakedSettledCount"]) == (-10.0, 1)  # -50*0.20
    assert (body["totalTurnover"], body["unhedgedStake"]) == (0.0, 50.0)


def test_unhedged_pct_is_of_all_fill_stake_rounded_to_two_places(api, account):
    for stake in ("100", "100"):
        bet(fill(filled_order(account), stake=stake), stake=stake)
    fill(filled_order(account), stake="100")

    body = pnl(api)

    assert (body["unhedgedStake"], body["unhedgedStakePct"]) == (100.0, 33.33)  # 100 / 300


def test_money_is_rounded_half_up_to_cents(api, account):
    # bought 0.25 at 0.50 and won: 0.125 -> 0.13 (half up, not half even)
    fill(filled_order(account, settlement=SettlementStatus.WON), stake="0.25", price="0.50")

    assert pnl(api)["nakedPnl"] == 0.13


# --- turnover and drift ---------------------------------------------------------------------------------


def test_valid_turnover_is_the_lesser_of_stake_and_winnings(api, account):
    bet(fill(filled_order(account)), stake="100", odds="1.1")  # counts 100*0.1 = 10
    bet(fill(filled_order(account)), stake="100", odds="3.0")  # counts 100
    bet(fill(filled_order(account)), stake="100", odds="1.5", status=BetStatus.DECLINED)  # not placed

    body = pnl(api)

    assert (body["totalTurnover"], body["validTurnover"]) == (200.0, 110.0)


def test_hedge_price_drift_is_bet_stake_weighted(api, account):
    # (100 * (2.00 - 1.95) + 300 * (3.00 - 3.10)) / 400 = (5 - 30) / 400 = -0.0625
    bet(fill(filled_order(account, bookmaker_outcome_price=D("2.00"))), stake="100", odds="1.95")
    bet(fill(filled_order(account, bookmaker_outcome_price=D("3.00"))), stake="300", odds="3.10")
    # not in the average: no trigger price, or no placed bet
    bet(fill(filled_order(account, bookmaker_outcome_price=None)), stake="500", odds="9.0")
    bet(fill(filled_order(account, bookmaker_outcome_price=D("2.00"))), stake="500", odds="9.0", status="declined")

    assert pnl(api)["avgHedgePriceDrift"] == -0.0625


def test_drift_is_rounded_to_four_places(api, account):
    bet(fill(filled_order(account, bookmaker_outcome_price=D("2.0000"))), stake="3", odds="1.9999")
    bet(fill(filled_order(account, bookmaker_outcome_price=D("2.0000"))), stake="3", odds="2.0000")
    bet(fill(filled_order(account, bookmaker_outcome_price=D("2.0000"))), stake="1", odds="2.0000")

    assert pnl(api)["avgHedgePriceDrift"] == 0.0  # 3 * 0.0001 / 7 = 0.0000428...


# --- date range, isolation, queries ---------------------------------------------------------------------


def test_date_range_is_on_the_orders_created_date_in_whole_utc_days(api, account):
    utc = dt.UTC
    for stake, created in [
        ("1", dt.datetime(2026, 1, 28, 23, 59, 59, tzinfo=utc)),
        ("2", dt.datetime(2026, 1, 29, 0, 0, tzinfo=utc)),
        ("4", dt.datetime(2026, 2, 1, 23, 59, 59, tzinfo=utc)),
        ("8", dt.datetime(2026, 2, 2, 0, 0, tzinfo=utc)),
    ]:
        f = fill(filled_order(account, stake=stake, created_at=created), stake=stake)
        # the fill itself is dated later: only the order's date counts
        type(f).objects.filter(pk=f.pk).update(matched_at=created + dt.timedelta(days=5))

    assert pnl(api, "?fromDate=2026-01-29&toDate=2026-02-01")["unhedgedStake"] == 6.0
    assert pnl(api, "?fromDate=2026-01-29")["unhedgedStake"] == 14.0
    assert pnl(api, "?toDate=2026-01-29")["unhedgedStake"] == 3.0
    body = pnl(api, "?fromDate=2026-02-02")
    assert (body["unhedgedStake"], body["fromDate"], body["toDate"]) == (8.0, "2026-02-02", None)


def test_another_clients_fills_and_bets_never_count(api, account, other_client):
    fill(filled_order(account, settlement=SettlementStatus.WON), stake="10", price="0.50")
    theirs = AccountFactory(client=other_client[0])
    f = fill(filled_order(theirs, settlement=SettlementStatus.WON), stake="1000", price="0.50")
    bet(f, stake="1000", odds="2.0", settlement=BetSettlementStatus.LOST)
    fill(filled_order(theirs, settlement=SettlementStatus.LOST), stake="1000", price="0.50")

    body = pnl(api)

    assert body == {**ZEROS, "nakedPnl": 5.0, "nakedSettledCount": 1, "unhedgedStake": 10.0, "unhedgedStakePct": 100.0}


def test_pnl_is_one_query(api, account):
    for _ in range(3):
        bet(fill(filled_order(account, settlement=SettlementStatus.WON)), settlement=BetSettlementStatus.LOST)

    with CaptureQueriesContext(connection) as ctx:
        assert pnl(api)["settledPairCount"] == 3

    assert len([q for q in ctx.captured_queries if "trading_fill" in q["sql"]]) == 1


@pytest.mark.parametrize(
    "query,parameter",
    [
        ("fromDate=2026-02-30", "fromDate"),
        ("fromDate=yesterday", "fromDate"),
        ("toDate=2026/02/01", "toDate"),
        ("fromDate=2026-02-02&toDate=2026-02-01", "fromDate"),
    ],
)
def test_bad_dates_are_400_naming_the_parameter(api, query, parameter):
    resp = api.get(f"/api/v1/pnl?{query}")

    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_parameter" and resp.json()["parameter"] == parameter


def test_pnl_needs_an_api_key(client):
    assert client.get("/api/v1/pnl").status_code == 401


def test_worked_example_of_the_docs(api, account):
    """docs/api/mm-positions-pnl.md, 'Worked example': every figure as the document derives it."""
    day = dt.datetime(2026, 1, 30, 12, tzinfo=dt.UTC)
    bs = BetSettlementStatus
    a = filled_order(account, settlement=SettlementStatus.WON, bookmaker_outcome_price=D("1.80"), created_at=day)
    bet(fill(a, stake="60", price="0.45"), stake="50", odds="1.75", settlement=bs.LOST)
    bet(fill(a, stake="40", price="0.44"), stake="40", odds="1.75", status=BetStatus.DECLINED)
    b = filled_order(
        account, back=False, settlement=SettlementStatus.LOST, bookmaker_outcome_price=D("3.40"), created_at=day
    )
    bet(fill(b, stake="200", price="0.30"), stake="100", odds="3.50", settlement=bs.WON)
    c = filled_order(account, bookmaker_outcome_price=D("1.60"), created_at=day)
    bet(fill(c, stake="50", price="0.60"), stake="40", odds="1.62")
    d = filled_order(account, settlement=SettlementStatus.LOST, bookmaker_outcome_price=D("4.80"), created_at=day)
    bet(fill(d, stake="100", price="0.20"), stake="25", odds="4.70", status=BetStatus.PENDING)

    assert pnl(api, "?fromDate=2026-01-29&toDate=2026-02-01") == {
        "totalTurnover": 190.0,
        "validTurnover": 162.3,
        "netRealizedSpread": 93.0,
        "nakedPnl": 2.4,
        "unhedgedStake": 140.0,
        "unhedgedStakePct": 31.11,
        "avgHedgePriceDrift": -0.0437,
        "settledPairCount": 2,
        "nakedSettledCount": 2,
        "fromDate": "2026-01-29",
        "toDate": "2026-02-01",
    }


# --- PostgreSQL: the rollup (design and the rest of its tests: tests/trading/test_pnl_rollup.py) -------


@pytest.mark.postgres
def test_worked_example_from_the_rollup_reads_no_fill(api, account):
    """After the refresh, /pnl sums rollup rows only, and gives exactly the live answer."""
    from trading.services.pnl import pnl_days_refresh

    test_worked_example_of_the_docs(api, account)  # written, and answered with every day stale
    live = pnl(api, "?fromDate=2026-01-29&toDate=2026-02-01")
    assert pnl_days_refresh() == 1

    with CaptureQueriesContext(connection) as ctx:
        assert pnl(api, "?fromDate=2026-01-29&toDate=2026-02-01") == live
        assert pnl(api) == {**live, "fromDate": None, "toDate": None}
        assert pnl(api, "?toDate=2026-01-29") == ZEROS | {"toDate": "2026-01-29"}

    assert not [q for q in ctx.captured_queries if "trading_fill" in q["sql"]]


@pytest.mark.postgres
def test_a_settlement_after_the_refresh_counts_at_once(api, account):
    from trading.services.pnl import pnl_days_refresh

    o = filled_order(account)
    bet(fill(o, stake="100", price="0.40"), stake="100", odds="2.5", settlement=BetSettlementStatus.WON)
    pnl_days_refresh()
    assert pnl(api)["settledPairCount"] == 0

    type(o).objects.filter(pk=o.pk).update(settlement_status=SettlementStatus.LOST)  # the pair is now settled

    body = pnl(api)
    assert (body["netRealizedSpread"], body["settledPairCount"]) == (110.0, 1)  # -40 + 150
