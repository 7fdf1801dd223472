import datetime as dt
from decimal import Decimal

import pytest

from exchanges.choices import Exchange
from tests.factories import AccountFactory, OrderFactory
from trading.api.serializers import OpenOrdersSchema, OrderSchema, OrderSummarySchema, order_row
from trading.choices import MatchedStatus, OrderStatus

pytestmark = pytest.mark.django_db


def test_orders_list_renders_the_seed_shape(api, mm_client):
    account = AccountFactory(client=mm_client[0], username="0x1234...abcd")
    order = OrderFactory(account=account, order_status=OrderStatus.FILLED, matched_stake=Decimal("100"))

    resp = api.get("/api/v1/orders?exchange=polymarket&status=FILLED")

    assert resp.status_code == 200
    body = resp.json()
    assert body["total"] == 1 and body["page"] == 1 and body["pageSize"] == 50 and body["totalPages"] == 1
    row = body["data"][0]
    assert row["orderId"] == order.id
    assert row["account"] == "0x1234...abcd"
    assert row["orderCents"] == 0.45 and row["orderStake"] == 100.0 and row["matchedStake"] == 100.0
    assert row["side"] == "buy" and row["back"] is True
    assert row["settledAt"] is None and row["createdAt"].endswith("Z")


def test_missing_key_is_401_with_json_body(client):
    resp = client.get("/api/v1/orders")
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"


def test_other_clients_order_is_404(api, other_client):
    theirs = OrderFactory(account=AccountFactory(client=other_client[0]))
    resp = api.get(f"/api/v1/orders/{theirs.id}")
    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "query,parameter",
    [
        ("pageSize=2001", "pageSize"),
        ("pageSize=0", "pageSize"),
        ("page=x", "page"),
        ("status=BOGUS", "status"),
        ("fromDate=2026-13-01", "fromDate"),
        ("exchange=nasdaq", "exchange"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_parameter(api, query, parameter):
    resp = api.get(f"/api/v1/orders?{query}")
    assert resp.status_code == 400
    assert resp.json()["parameter"] == parameter


# --- helpers ------------------------------------------------------------------------------------------------


def at(text: str) -> dt.datetime:
    """An aware UTC datetime from ``YYYY-MM-DDTHH:MM:SS[.ffffff]``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def ids(resp) -> list[int]:
    return [row["orderId"] for row in resp.json()["data"]]


@pytest.fixture
def account(mm_client):
    return AccountFactory(client=mm_client[0])


# --- GET /orders: filters, pagination, ordering -------------------------------------------------------------


def test_orders_are_listed_newest_first_and_only_the_callers(api, account, other_client):
    old = OrderFactory(account=account, created_at=at("2026-02-14T10:00:00"))
    new = OrderFactory(account=account, created_at=at("2026-02-15T10:00:00"))
    OrderFactory(account=AccountFactory(client=other_client[0]))

    resp = api.get("/api/v1/orders")

    assert ids(resp) == [new.id, old.id]
    assert resp.json()["total"] == 2


def test_orders_filter_by_fixture_and_exchange(api, mm_client, account):
    kalshi = AccountFactory(client=mm_client[0], exchange=Exchange.KALSHI)
    target = OrderFactory(account=account)
    OrderFactory(account=account)  # another fixture
    OrderFactory(account=kalshi, fixture=target.fixture)  # same fixture, other exchange

    resp = api.get(f"/api/v1/orders?fixtureId={target.fixture.fixture_id}&exchange=polymarket")

    assert ids(resp) == [target.id]


def test_orders_status_filter_takes_a_comma_separated_list(api, account):
    placed = OrderFactory(account=account, order_status=OrderStatus.PLACED)
    filled = OrderFactory(account=account, order_status=OrderStatus.FILLED)
    OrderFactory(account=account, order_status=OrderStatus.CANCELLED)

    resp = api.get("/api/v1/orders?status=PLACED,FILLED")

    assert sorted(ids(resp)) == sorted([placed.id, filled.id])


def test_order_dates_are_whole_utc_days_with_to_date_inclusive(api, account):
    before = OrderFactory(account=account, created_at=at("2026-02-14T23:59:59.999999"))
    first = OrderFactory(account=account, created_at=at("2026-02-15T00:00:00"))
    last = OrderFactory(account=account, created_at=at("2026-02-16T23:59:59.999999"))
    after = OrderFactory(account=account, created_at=at("2026-02-17T00:00:00"))

    both = api.get("/api/v1/orders?fromDate=2026-02-15&toDate=2026-02-16")
    from_only = api.get("/api/v1/orders?fromDate=2026-02-15")
    to_only = api.get("/api/v1/orders?toDate=2026-02-16")

    assert sorted(ids(both)) == sorted([first.id, last.id])
    assert sorted(ids(from_only)) == sorted([first.id, last.id, after.id])
    assert sorted(ids(to_only)) == sorted([before.id, first.id, last.id])


def test_a_single_day_range_covers_that_whole_day(api, account):
    inside = OrderFactory(account=account, created_at=at("2026-02-15T23:59:59"))
    OrderFactory(account=account, created_at=at("2026-02-16T00:00:00"))

    resp = api.get("/api/v1/orders?fromDate=2026-02-15&toDate=2026-02-15")

    assert ids(resp) == [inside.id]


def test_pages_split_the_list_and_a_page_past_the_end_is_empty(api, account):
    orders = [OrderFactory(account=account, created_at=at(f"2026-02-1{i}T10:00:00")) for i in range(5)]
    newest_first = [o.id for o in reversed(orders)]

    page2 = api.get("/api/v1/orders?pageSize=2&page=2").json()
    page3 = api.get("/api/v1/orders?pageSize=2&page=3").json()
    past = api.get("/api/v1/orders?pageSize=2&page=9").json()

    assert [r["orderId"] for r in page2["data"]] == newest_first[2:4]
    assert [r["orderId"] for r in page3["data"]] == newest_first[4:]
    assert past == {"data": [], "total": 5, "page": 9, "pageSize": 2, "totalPages": 3}


def test_empty_list_has_zero_total_pages(api):
    assert api.get("/api/v1/orders").json() == {"data": [], "total": 0, "page": 1, "pageSize": 50, "totalPages": 0}


def test_page_size_of_2000_is_accepted(api, account):
    OrderFactory(account=account)
    body = api.get("/api/v1/orders?pageSize=2000").json()
    assert body["pageSize"] == 2000 and body["total"] == 1 and body["totalPages"] == 1


@pytest.mark.parametrize(
    "query,parameter",
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=1.5", "page"),
        ("pageSize=-5", "pageSize"),
        ("pageSize=abc", "pageSize"),
        ("status=filled", "status"),  # order statuses are upper case, as the seed spells them
        ("status=PLACED,BOGUS", "status"),
        ("toDate=2026-02-30", "toDate"),
        ("fromDate=15/02/2026", "fromDate"),
        ("fromDate=2026-02-16&toDate=2026-02-15", "fromDate"),
    ],
)
def test_more_bad_order_query_parameters_are_400_naming_the_parameter(api, query, parameter):
    resp = api.get(f"/api/v1/orders?{query}")
    body = resp.json()
    assert resp.status_code == 400
    assert body["error"] == "invalid_parameter" and body["parameter"] == parameter and body["message"]


def test_a_page_of_50_orders_costs_a_constant_number_of_queries(api, mm_client, django_assert_max_num_queries):
    for _ in range(50):  # every order on its own account and fixture: an N+1 would show
        OrderFactory(account=AccountFactory(client=mm_client[0]))

    # key lookup, key last-used stamp, count, the page (its pks as a subquery)
    with django_assert_max_num_queries(4):
        resp = api.get("/api/v1/orders?pageSize=50")

    assert len(resp.json()["data"]) == 50


# --- GET /orders/{id} ---------------------------------------------------------------------------------------


def test_order_detail_is_the_same_object_as_in_the_list(api, account):
    order = OrderFactory(account=account)

    detail = api.get(f"/api/v1/orders/{order.id}")

    assert detail.status_code == 200
    assert detail.json() == api.get("/api/v1/orders").json()["data"][0]


@pytest.mark.parametrize("raw", ["abc", "0", "-3", "1.0", "99999999999999999999"])
def test_malformed_order_ids_are_400_naming_the_id(api, raw):
    resp = api.get(f"/api/v1/orders/{raw}")
    assert resp.status_code == 400
    assert resp.json()["parameter"] == "id"


def test_another_clients_order_looks_exactly_like_a_missing_one(api, other_client):
    theirs = OrderFactory(account=AccountFactory(client=other_client[0]))

    foreign = api.get(f"/api/v1/orders/{theirs.id}")
    missing = api.get(f"/api/v1/orders/{theirs.id + 1000}")

    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


# --- GET /orders/open ---------------------------------------------------------------------------------------


def test_open_orders_are_pending_or_placed_only_without_pagination(api, account, other_client):
    pending = OrderFactory(account=account, order_status=OrderStatus.PENDING_PLACEMENT, exchange_order_id=None)
    placed = OrderFactory(account=account, order_status=OrderStatus.PLACED)
    for status in (OrderStatus.FILLED, OrderStatus.FAILED, OrderStatus.CANCELLED, OrderStatus.EXPIRED):
        OrderFactory(account=account, order_status=status)
    OrderFactory(account=AccountFactory(client=other_client[0]), order_status=OrderStatus.PLACED)

    resp = api.get("/api/v1/orders/open?pageSize=1")

    body = resp.json()
    assert resp.status_code == 200
    assert set(body) == {"data", "count"}
    assert body["count"] == 2
    assert sorted(r["orderId"] for r in body["data"]) == sorted([pending.id, placed.id])
    assert body["data"][0].keys() == set(OrderSchema().fields)


def test_open_orders_filter_by_fixture_and_exchange(api, mm_client, account):
    target = OrderFactory(account=account)
    OrderFactory(account=account)
    OrderFactory(account=AccountFactory(client=mm_client[0], exchange=Exchange.KALSHI), fixture=target.fixture)

    by_fixture = api.get(f"/api/v1/orders/open?fixtureId={target.fixture.fixture_id}").json()
    by_both = api.get(f"/api/v1/orders/open?fixtureId={target.fixture.fixture_id}&exchange=polymarket").json()

    assert by_fixture["count"] == 2
    assert [r["orderId"] for r in by_both["data"]] == [target.id]


def test_open_orders_refuse_an_unknown_exchange(api):
    resp = api.get("/api/v1/orders/open?exchange=nasdaq")
    assert resp.status_code == 400 and resp.json()["parameter"] == "exchange"


def test_open_orders_cost_a_constant_number_of_queries(api, mm_client, django_assert_max_num_queries):
    for _ in range(50):
        OrderFactory(account=AccountFactory(client=mm_client[0]))

    with django_assert_max_num_queries(3):  # key lookup, last-used stamp, the orders
        resp = api.get("/api/v1/orders/open")

    assert resp.json()["count"] == 50


# --- GET /orders/summary ------------------------------------------------------------------------------------


def test_order_summary_of_no_orders_has_every_status_at_zero(api):
    body = api.get("/api/v1/orders/summary").json()

    assert body == {
        "totalOrders": 0,
        "byOrderStatus": {s: 0 for s in OrderStatus.values},
        "byMatchedStatus": {s: 0 for s in MatchedStatus.values},
        "totalStake": 0,
        "matchedStake": 0,
        "openStake": 0,
    }


def test_order_summary_counts_statuses_and_sums_stakes(api, account, other_client):
    OrderFactory(account=account, order_stake=Decimal("100"), matched_stake=Decimal("0"))  # PLACED, open 100
    OrderFactory(
        account=account,
        order_stake=Decimal("50.5"),
        matched_stake=Decimal("20.25"),
        matched_status=MatchedStatus.PARTIALLY_MATCHED,
    )  # PLACED, open 30.25
    OrderFactory(
        account=account,
        order_status=OrderStatus.FILLED,
        matched_status=MatchedStatus.FULLY_MATCHED,
        order_stake=Decimal("10"),
        matched_stake=Decimal("10"),
    )
    OrderFactory(
        account=account,
        order_status=OrderStatus.CANCELLED,
        order_stake=Decimal("40"),
        matched_stake=Decimal("15"),
        matched_status=MatchedStatus.PARTIALLY_MATCHED,
    )  # the cancelled remainder is not open
    OrderFactory(account=AccountFactory(client=other_client[0]), order_stake=Decimal("999"))

    body = api.get("/api/v1/orders/summary").json()

    assert body["totalOrders"] == 4
    assert body["byOrderStatus"] == {
        "PENDING_PLACEMENT": 0,
        "PLACED": 2,
        "FILLED": 1,
        "FAILED": 0,
        "CANCELLED": 1,
        "EXPIRED": 0,
    }
    assert body["byMatchedStatus"] == {"NOT_MATCHED": 1, "PARTIALLY_MATCHED": 2, "FULLY_MATCHED": 1}
    assert Decimal(str(body["totalStake"])) == Decimal("200.5")
    assert Decimal(str(body["matchedStake"])) == Decimal("45.25")
    assert Decimal(str(body["openStake"])) == Decimal("130.25")


def test_order_summary_applies_the_order_filters(api, account):
    fixture_order = OrderFactory(account=account, created_at=at("2026-02-15T12:00:00"))
    OrderFactory(account=account, fixture=fixture_order.fixture, order_status=OrderStatus.FILLED)
    OrderFactory(account=account, created_at=at("2026-02-15T13:00:00"))  # other fixture

    by_fixture = api.get(f"/api/v1/orders/summary?fixtureId={fixture_order.fixture.fixture_id}").json()
    by_status = api.get(f"/api/v1/orders/summary?fixtureId={fixture_order.fixture.fixture_id}&status=FILLED").json()
    by_day = api.get("/api/v1/orders/summary?fromDate=2026-02-15&toDate=2026-02-15").json()

    assert by_fixture["totalOrders"] == 2
    assert by_status["totalOrders"] == 1 and by_status["byOrderStatus"]["FILLED"] == 1
    assert by_day["totalOrders"] == 2


@pytest.mark.parametrize(
    "query,parameter",
    [("status=OPEN", "status"), ("exchange=nyse", "exchange"), ("toDate=yesterday", "toDate")],
)
def test_order_summary_refuses_bad_filters(api, query, parameter):
    resp = api.get(f"/api/v1/orders/summary?{query}")
    assert resp.status_code == 400 and resp.json()["parameter"] == parameter


def test_order_summary_is_one_aggregate_query(api, mm_client, django_assert_max_num_queries):
    for _ in range(20):
        OrderFactory(account=AccountFactory(client=mm_client[0]))

    with django_assert_max_num_queries(3):  # key lookup, last-used stamp, one aggregate
        body = api.get("/api/v1/orders/summary").json()

    assert body["totalOrders"] == 20


# --- schemas document exactly what is rendered --------------------------------------------------------------


def test_order_schema_fields_equal_the_rendered_keys(account):
    order = OrderFactory(account=account)
    assert set(OrderSchema().fields) == set(order_row(order))


def test_order_summary_schema_fields_equal_the_rendered_keys(api, account):
    OrderFactory(account=account)
    body = api.get("/api/v1/orders/summary").json()
    schema = OrderSummarySchema()

    assert set(schema.fields) == set(body)
    assert set(schema.fields["byOrderStatus"].fields) == set(body["byOrderStatus"])
    assert set(schema.fields["byMatchedStatus"].fields) == set(body["byMatchedStatus"])


def test_open_orders_schema_fields_equal_the_rendered_keys(api):
    assert set(OpenOrdersSchema().fields) == set(api.get("/api/v1/orders/open").json())
