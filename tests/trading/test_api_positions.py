"""GET /api/v1/positions and /positions/summary (seed 000, step 4).

Expected figures are worked out by hand in each test from the orders it creates.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exchanges.choices import Exchange
from tests.factories import AccountFactory, FixtureFactory, OrderFactory
from trading.choices import MatchedStatus, OrderStatus, SettlementStatus

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def poly(mm_client):
    return AccountFactory(client=mm_client[0], exchange=Exchange.POLYMARKET)


@pytest.fixture
def kalshi(mm_client):
    return AccountFactory(client=mm_client[0], exchange=Exchange.KALSHI)


def order(account, fixture, *, status=OrderStatus.PLACED, stake="100", matched="0", cents="0.45", **kw):
    matched_status = (
        MatchedStatus.NOT_MATCHED
        if D(matched) == 0
        else MatchedStatus.FULLY_MATCHED
        if D(matched) == D(stake)
        else MatchedStatus.PARTIALLY_MATCHED
    )
    return OrderFactory(
        account=account,
        fixture=fixture,
        order_status=status,
        order_stake=D(stake),
        matched_stake=D(matched),
        matched_status=matched_status,
        order_cents=D(cents),
        **kw,
    )


def positions(api, query=""):
    resp = api.get(f"/api/v1/positions{query}")
    assert resp.status_code == 200, resp.content
    return resp.json()


# --- shape and arithmetic ---------------------------------------------------------------------------


def test_active_orders_of_one_outcome_roll_up_into_one_position_with_seed_shape(api, poly):
    fx = FixtureFactory(fixture_id="id1000000861624412")
    order(poly, fx, status=OrderStatus.PLACED, stake="100", matched="30", cents="0.40")  # partly matched, open
    order(poly, fx, status=OrderStatus.FILLED, stake="50", matched="50", cents="0.50")  # matched, undecided
    order(poly, fx, status=OrderStatus.PENDING_PLACEMENT, stake="20", cents="0.45")  # open, unmatched
    # not active: settled, or never matched and finished
    order(poly, fx, status=OrderStatus.FILLED, stake="70", matched="70", settlement_status=SettlementStatus.WON)
    order(poly, fx, status=OrderStatus.CANCELLED, stake="90")

    body = positions(api)

    # total 100+50+20; matched 30+50; open (100-30)+(20-0); avg (30*0.40 + 50*0.50) / 80 = 37/80
    assert body == {
        "positions": [
            {
                "fixtureId": "id1000000861624412",
                "outcomeId": 161,
                "playerId": 0,
                "exchange": "polymarket",
                "orderCount": 3,
                "totalStake": 170.0,
                "matchedStake": 80.0,
                "openStake": 90.0,
                "avgPrice": 0.4625,
            }
        ],
        "count": 1,
    }


def test_avg_price_is_stake_weighted_when_nothing_matched(api, poly):
    fx = FixtureFactory()
    order(poly, fx, stake="100", cents="0.40")
    order(poly, fx, stake="300", cents="0.60")

    [row] = positions(api)["positions"]

    assert row["avgPrice"] == 0.55  # (100*0.40 + 300*0.60) / 400 = 220/400
    assert row["matchedStake"] == 0.0 and row["openStake"] == 400.0


def test_avg_price_is_rounded_half_up_to_four_places(api, poly):
    fx = FixtureFactory()
    order(poly, fx, stake="1", cents="0.01")
    order(poly, fx, stake="1", cents="0.02")
    order(poly, fx, stake="1", cents="0.02")
    order(poly, fx, stake="5", cents="0.02")

    [row] = positions(api)["positions"]

    assert row["avgPrice"] == 0.0188  # (0.01 + 7*0.02) / 8 = 0.01875 -> 0.0188


def test_positions_split_by_exchange_outcome_and_player_and_are_ordered(api, poly, kalshi):
    a, b = FixtureFactory(fixture_id="idA"), FixtureFactory(fixture_id="idB")
    order(poly, b, stake="10")
    order(kalshi, a, stake="20")
    order(poly, a, stake="30", outcome_id=162)
    order(poly, a, stake="40", player_id=7)
    order(poly, a, stake="50")

    rows = positions(api)["positions"]

    keys = [(r["fixtureId"], r["outcomeId"], r["playerId"], r["exchange"], r["totalStake"]) for r in rows]
    assert keys == [
        ("idA", 161, 0, "kalshi", 20.0),
        ("idA", 161, 0, "polymarket", 50.0),
        ("idA", 161, 7, "polymarket", 40.0),
        ("idA", 162, 0, "polymarket", 30.0),
        ("idB", 161, 0, "polymarket", 10.0),
    ]


def test_positions_are_one_query_however_many_groups(api, poly):
    for i in range(5):
        order(poly, FixtureFactory(), outcome_id=100 + i)

    with CaptureQueriesContext(connection) as ctx:
        assert positions(api)["count"] == 5

    assert len([q for q in ctx.captured_queries if "trading_order" in q["sql"]]) == 1


# --- status filter ------------------------------------------------------------------------------------


@pytest.fixture
def one_order_per_kind(poly):
    """One order per position status on its own fixture, named by fixture id."""
    order(poly, FixtureFactory(fixture_id="open"), status=OrderStatus.PLACED)
    order(poly, FixtureFactory(fixture_id="pending"), status=OrderStatus.PENDING_PLACEMENT)
    order(poly, FixtureFactory(fixture_id="cancelled-part-matched"), status=OrderStatus.CANCELLED, matched="10")
    order(
        poly,
        FixtureFactory(fixture_id="filled-won"),
        status=OrderStatus.FILLED,
        matched="100",
        settlement_status=SettlementStatus.WON,
    )
    order(poly, FixtureFactory(fixture_id="filled-undecided"), status=OrderStatus.FILLED, matched="100")
    order(poly, FixtureFactory(fixture_id="cancelled-unmatched"), status=OrderStatus.CANCELLED)
    order(poly, FixtureFactory(fixture_id="expired"), status=OrderStatus.EXPIRED)
    order(poly, FixtureFactory(fixture_id="failed"), status=OrderStatus.FAILED)


@pytest.mark.parametrize(
    "status,expected",
    [
        ("", {"open", "pending", "cancelled-part-matched", "filled-undecided"}),  # default: active
        ("active", {"open", "pending", "cancelled-part-matched", "filled-undecided"}),
        ("open", {"open", "pending"}),
        ("matched", {"cancelled-part-matched", "filled-won", "filled-undecided"}),
        ("filled", {"filled-won", "filled-undecided"}),
        ("cancelled", {"cancelled-part-matched", "cancelled-unmatched"}),
        ("open,filled", {"open", "pending", "filled-won", "filled-undecided"}),
        ("cancelled,matched", {"cancelled-part-matched", "cancelled-unmatched", "filled-won", "filled-undecided"}),
        ("open,active", {"open", "pending", "cancelled-part-matched", "filled-undecided"}),
    ],
)
def test_status_selects_its_orders_and_several_statuses_are_a_union(api, one_order_per_kind, status, expected):
    query = f"?status={status}" if status else ""
    assert {r["fixtureId"] for r in positions(api, query)["positions"]} == expected


def test_open_stake_counts_only_open_orders_even_when_other_statuses_are_selected(api, poly):
    fx = FixtureFactory()
    order(poly, fx, status=OrderStatus.PLACED, stake="100", matched="25")
    order(poly, fx, status=OrderStatus.CANCELLED, stake="100", matched="40")  # 60 unmatched, but not open

    [row] = positions(api, "?status=open,cancelled")["positions"]

    assert (row["totalStake"], row["matchedStake"], row["openStake"]) == (200.0, 65.0, 75.0)


# --- other filters ------------------------------------------------------------------------------------


def test_fixture_and_exchange_filters_narrow_the_positions(api, poly, kalshi):
    a, b = FixtureFactory(fixture_id="idA"), FixtureFactory(fixture_id="idB")
    order(poly, a, stake="1")
    order(kalshi, a, stake="2")
    order(poly, b, stake="4")

    assert [r["totalStake"] for r in positions(api, "?fixtureId=idA")["positions"]] == [2.0, 1.0]
    assert [r["totalStake"] for r in positions(api, "?exchange=polymarket")["positions"]] == [1.0, 4.0]
    assert [r["totalStake"] for r in positions(api, "?fixtureId=idA&exchange=kalshi")["positions"]] == [2.0]
    assert positions(api, "?fixtureId=unknown") == {"positions": [], "count": 0}


def test_date_range_is_whole_utc_days_of_order_creation_inclusive(api, poly):
    fx = FixtureFactory()
    utc = dt.UTC
    for stake, created in [
        ("1", dt.datetime(2026, 1, 31, 23, 59, 59, tzinfo=utc)),
        ("2", dt.datetime(2026, 2, 1, 0, 0, 0, tzinfo=utc)),
        ("4", dt.datetime(2026, 2, 2, 23, 59, 59, 999999, tzinfo=utc)),
        ("8", dt.datetime(2026, 2, 3, 0, 0, 0, tzinfo=utc)),
    ]:
        order(poly, fx, stake=stake, created_at=created)

    def total(query):
        [row] = positions(api, query)["positions"]
        return row["totalStake"]

    assert total("?fromDate=2026-02-01&toDate=2026-02-02") == 6.0
    assert total("?fromDate=2026-02-01") == 14.0
    assert total("?toDate=2026-02-01") == 3.0
    assert total("?fromDate=2026-02-03&toDate=2026-02-03") == 8.0


# --- isolation and bad input --------------------------------------------------------------------------


def test_another_clients_orders_never_appear(api, poly, other_client):
    fx = FixtureFactory(fixture_id="shared")
    order(poly, fx, stake="10")
    theirs = AccountFactory(client=other_client[0], exchange=Exchange.POLYMARKET)
    order(theirs, fx, stake="1000")
    order(theirs, FixtureFactory(fixture_id="theirs-only"), stake="1000")

    body = positions(api, "?status=open,matched,filled,cancelled,active")
    summary = api.get("/api/v1/positions/summary?status=open,matched,filled,cancelled,active").json()

    assert [(r["fixtureId"], r["totalStake"], r["orderCount"]) for r in body["positions"]] == [("shared", 10.0, 1)]
    assert positions(api, "?fixtureId=theirs-only")["count"] == 0
    assert (summary["orderCount"], summary["totalStake"], summary["fixtureCount"]) == (1, 10.0, 1)


@pytest.mark.parametrize("endpoint", ["/api/v1/positions", "/api/v1/positions/summary"])
@pytest.mark.parametrize(
    "query,parameter",
    [
        ("status=bogus", "status"),
        ("status=open,bogus", "status"),
        ("status=OPEN", "status"),
        ("status=open,,active", "status"),
        ("status=open,", "status"),
        ("status=PLACED", "status"),
        ("exchange=nasdaq", "exchange"),
        ("fromDate=2026-02-30", "fromDate"),
        ("toDate=02/01/2026", "toDate"),
        ("fromDate=2026-02-02&toDate=2026-02-01", "fromDate"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_parameter(api, endpoint, query, parameter):
    resp = api.get(f"{endpoint}?{query}")

    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "invalid_parameter" and body["parameter"] == parameter


@pytest.mark.parametrize("endpoint", ["/api/v1/positions", "/api/v1/positions/summary"])
def test_positions_need_an_api_key(client, endpoint):
    resp = client.get(endpoint)
    assert resp.status_code == 401 and resp.json()["error"] == "unauthorized"


# --- summary ------------------------------------------------------------------------------------------


def test_summary_rolls_every_position_up_with_a_breakdown_per_exchange(api, poly, kalshi):
    a, b = FixtureFactory(), FixtureFactory()
    order(poly, a, status=OrderStatus.PLACED, stake="100", matched="20", cents="0.40")
    order(poly, a, status=OrderStatus.FILLED, stake="60", matched="60", cents="0.50")  # same position
    order(poly, a, status=OrderStatus.PLACED, stake="10", cents="0.30", outcome_id=162)
    order(poly, b, status=OrderStatus.PLACED, stake="30", cents="0.60")
    order(kalshi, a, status=OrderStatus.PENDING_PLACEMENT, stake="50", cents="0.20")
    order(poly, b, status=OrderStatus.FILLED, stake="999", matched="999", settlement_status=SettlementStatus.LOST)

    body = api.get("/api/v1/positions/summary").json()

    # polymarket: positions (a,161) (a,162) (b,161); fixtures a, b; stake 100+60+10+30 = 200;
    #   matched 20+60 = 80; open 80+10+30 = 120; avg (20*0.40 + 60*0.50) / 80 = 38/80 = 0.475
    # kalshi: one position, nothing matched: avg is the stake-weighted 0.20
    # all: 4 positions on 2 fixtures, 5 orders, stake 250, matched 80, open 170, avg 0.475
    assert body == {
        "positionCount": 4,
        "fixtureCount": 2,
        "orderCount": 5,
        "totalStake": 250.0,
        "matchedStake": 80.0,
        "openStake": 170.0,
        "avgPrice": 0.475,
        "byExchange": [
            {
                "exchange": "kalshi",
                "positionCount": 1,
                "fixtureCount": 1,
                "orderCount": 1,
                "totalStake": 50.0,
                "matchedStake": 0.0,
                "openStake": 50.0,
                "avgPrice": 0.2,
            },
            {
                "exchange": "polymarket",
                "positionCount": 3,
                "fixtureCount": 2,
                "orderCount": 4,
                "totalStake": 200.0,
                "matchedStake": 80.0,
                "openStake": 120.0,
                "avgPrice": 0.475,
            },
        ],
    }


def test_summary_counts_match_the_positions_list_under_the_same_filters(api, poly, kalshi):
    a, b = FixtureFactory(), FixtureFactory()
    order(poly, a, player_id=1)
    order(poly, a, player_id=2)
    order(kalshi, a, player_id=1)
    order(poly, b, status=OrderStatus.CANCELLED)

    for query in ["", "?status=cancelled", "?status=open,cancelled", "?exchange=kalshi"]:
        listed = positions(api, query)
        summary = api.get(f"/api/v1/positions/summary{query}").json()
        assert summary["positionCount"] == listed["count"]
        assert summary["orderCount"] == sum(r["orderCount"] for r in listed["positions"])


def test_summary_of_nothing_is_zeros(api):
    assert api.get("/api/v1/positions/summary").json() == {
        "positionCount": 0,
        "fixtureCount": 0,
        "orderCount": 0,
        "totalStake": 0.0,
        "matchedStake": 0.0,
        "openStake": 0.0,
        "avgPrice": 0.0,
        "byExchange": [],
    }


def test_active_position_index_condition_is_the_active_status_definition():
    # PostgreSQL uses the partial index only if the query's WHERE implies its condition;
    # both come from one definition each, so they must not drift apart.
    from trading.models import Order
    from trading.selectors.positions import POSITION_STATUS_Q

    [index] = [i for i in Order._meta.indexes if i.name == "order_active_position"]
    assert index.condition == POSITION_STATUS_Q["active"]
