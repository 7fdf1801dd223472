import datetime as dt
from decimal import Decimal

import pytest

from hedging.choices import BetSettlementStatus, BetStatus
from hedging.models import Bookmaker, HedgeBet
from tests.factories import AccountFactory, FillFactory, HedgeBetFactory, OrderFactory
from trading.api.serializers import BetSchema, BetSummarySchema, bet_row

pytestmark = pytest.mark.django_db


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def bet_for(client, *, order=None, created_at: dt.datetime | None = None, **fields) -> HedgeBet:
    """A hedge bet of ``client`` (on a new order unless one is given)."""
    order = order or OrderFactory(account=AccountFactory(client=client))
    bet = HedgeBetFactory(fill=FillFactory(order=order), **fields)
    if created_at is not None:  # auto_now_add: set it the way a migration or backfill would
        HedgeBet.objects.filter(pk=bet.pk).update(created_at=created_at)
        bet.refresh_from_db()
    return bet


def ids(resp) -> list[int]:
    return [row["betId"] for row in resp.json()["data"]]


# --- GET /bets ----------------------------------------------------------------------------------------------


def test_bets_list_renders_the_seed_shape(api, mm_client):
    client = mm_client[0]
    order = OrderFactory(account=AccountFactory(client=client))
    bet = bet_for(client, order=order, bookmaker_bet_id="789", placed_price=Decimal("1.808"))

    resp = api.get(f"/api/v1/bets?orderId={order.id}")

    assert resp.status_code == 200
    body = resp.json()
    assert (body["total"], body["page"], body["pageSize"], body["totalPages"]) == (1, 1, 50, 1)
    assert body["data"] == [
        {
            "betId": bet.id,
            "orderId": order.id,
            "client": "demo:vertex",
            "bookmaker": "vertex",
            "bookmakerBetId": "789",
            "placedPrice": 1.808,
            "placedStake": 100.0,
            "betStatus": "placed",
            "settlementStatus": "undecided",
            "placedAt": bet.placed_at.isoformat().replace("+00:00", "Z"),
        }
    ]


def test_a_pending_bet_has_no_placed_at_yet(api, mm_client):
    bet_for(mm_client[0], bet_status=BetStatus.PENDING, placed_at=None, bookmaker_bet_id="")

    row = api.get("/api/v1/bets").json()["data"][0]

    assert row["betStatus"] == "pending" and row["placedAt"] is None and row["bookmakerBetId"] == ""


def test_bets_are_newest_first_and_only_the_callers(api, mm_client, other_client):
    old = bet_for(mm_client[0], created_at=at("2026-02-14T10:00:00"))
    new = bet_for(mm_client[0], created_at=at("2026-02-15T10:00:00"))
    bet_for(other_client[0])

    assert ids(api.get("/api/v1/bets")) == [new.id, old.id]


def test_bets_filter_by_order(api, mm_client):
    order = OrderFactory(account=AccountFactory(client=mm_client[0]))
    first = bet_for(mm_client[0], order=order)
    second = bet_for(mm_client[0], order=order)
    bet_for(mm_client[0])

    assert sorted(ids(api.get(f"/api/v1/bets?orderId={order.id}"))) == sorted([first.id, second.id])


def test_bets_filter_by_bookmaker_code(api, mm_client):
    other_book = Bookmaker.objects.create(name="pinnacle")
    vertex = bet_for(mm_client[0])
    pinnacle = bet_for(mm_client[0], bookmaker=other_book)

    assert ids(api.get("/api/v1/bets?bookmaker=vertex")) == [vertex.id]
    assert ids(api.get("/api/v1/bets?bookmaker=pinnacle")) == [pinnacle.id]
    assert ids(api.get("/api/v1/bets?bookmaker=nobody")) == []


def test_bets_status_filter_takes_a_comma_separated_list(api, mm_client):
    placed = bet_for(mm_client[0], bet_status=BetStatus.PLACED)
    pending = bet_for(mm_client[0], bet_status=BetStatus.PENDING)
    declined = bet_for(mm_client[0], bet_status=BetStatus.DECLINED)

    assert ids(api.get("/api/v1/bets?status=declined")) == [declined.id]
    assert sorted(ids(api.get("/api/v1/bets?status=placed,pending"))) == sorted([placed.id, pending.id])


def test_bet_dates_are_whole_utc_days_with_to_date_inclusive(api, mm_client):
    client = mm_client[0]
    bet_for(client, created_at=at("2026-02-14T23:59:59.999999"))
    first = bet_for(client, created_at=at("2026-02-15T00:00:00"))
    last = bet_for(client, created_at=at("2026-02-15T23:59:59.999999"))
    bet_for(client, created_at=at("2026-02-16T00:00:00"))

    resp = api.get("/api/v1/bets?fromDate=2026-02-15&toDate=2026-02-15")

    assert sorted(ids(resp)) == sorted([first.id, last.id])


def test_bet_pages_and_a_page_past_the_end(api, mm_client):
    for i in range(3):
        bet_for(mm_client[0], created_at=at(f"2026-02-1{i}T10:00:00"))

    page2 = api.get("/api/v1/bets?pageSize=2&page=2").json()
    past = api.get("/api/v1/bets?pageSize=2&page=3").json()
    big = api.get("/api/v1/bets?pageSize=2000").json()

    assert len(page2["data"]) == 1 and page2["totalPages"] == 2
    assert past == {"data": [], "total": 3, "page": 3, "pageSize": 2, "totalPages": 2}
    assert big["pageSize"] == 2000 and len(big["data"]) == 3


@pytest.mark.parametrize(
    "query,parameter",
    [
        ("orderId=abc", "orderId"),
        ("orderId=1.5", "orderId"),
        ("orderId=0", "orderId"),
        ("orderId=99999999999999999999", "orderId"),
        ("status=PLACED", "status"),  # bet statuses are lower case, as the seed spells them
        ("status=placed,won", "status"),
        ("fromDate=2026-02-31", "fromDate"),
        ("toDate=20260215", "toDate"),
        ("fromDate=2026-02-16&toDate=2026-02-15", "fromDate"),
        ("page=0", "page"),
        ("pageSize=0", "pageSize"),
        ("pageSize=2001", "pageSize"),
    ],
)
def test_bad_bet_query_parameters_are_400_naming_the_parameter(api, query, parameter):
    resp = api.get(f"/api/v1/bets?{query}")
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_parameter" and resp.json()["parameter"] == parameter


def test_a_page_of_50_bets_costs_a_constant_number_of_queries(api, mm_client, django_assert_max_num_queries):
    books = [Bookmaker.objects.create(name=f"book{i}") for i in range(5)]
    for i in range(50):
        bet_for(mm_client[0], bookmaker=books[i % 5])

    with django_assert_max_num_queries(4):  # key lookup, last-used stamp, count, page
        resp = api.get("/api/v1/bets?pageSize=50")

    assert len(resp.json()["data"]) == 50


# --- GET /bets/{id} -----------------------------------------------------------------------------------------


def test_bet_detail_is_the_same_object_as_in_the_list(api, mm_client):
    bet = bet_for(mm_client[0])

    resp = api.get(f"/api/v1/bets/{bet.id}")

    assert resp.status_code == 200
    assert resp.json() == api.get("/api/v1/bets").json()["data"][0]


@pytest.mark.parametrize("raw", ["abc", "0", "1e3", "99999999999999999999"])
def test_malformed_bet_ids_are_400(api, raw):
    resp = api.get(f"/api/v1/bets/{raw}")
    assert resp.status_code == 400 and resp.json()["parameter"] == "id"


def test_another_clients_bet_looks_exactly_like_a_missing_one(api, other_client):
    theirs = bet_for(other_client[0])

    foreign = api.get(f"/api/v1/bets/{theirs.id}")
    missing = api.get(f"/api/v1/bets/{theirs.id + 1000}")

    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


# --- GET /bets/summary --------------------------------------------------------------------------------------


def test_bet_summary_of_no_bets_has_every_status_at_zero_and_no_average(api):
    assert api.get("/api/v1/bets/summary").json() == {
        "totalBets": 0,
        "byBetStatus": {s: 0 for s in BetStatus.values},
        "bySettlementStatus": {s: 0 for s in BetSettlementStatus.values},
        "totalStake": 0,
        "avgPrice": None,
    }


def test_bet_summary_counts_statuses_and_weights_the_price_by_stake(api, mm_client, other_client):
    client = mm_client[0]
    bet_for(client, placed_price=Decimal("2.0"), placed_stake=Decimal("100"))
    bet_for(client, placed_price=Decimal("3.0"), placed_stake=Decimal("300"), settlement_status="won")
    bet_for(client, placed_price=Decimal("1.5"), placed_stake=Decimal("50"), bet_status=BetStatus.DECLINED)
    bet_for(other_client[0], placed_price=Decimal("9.0"), placed_stake=Decimal("1000"))

    body = api.get("/api/v1/bets/summary").json()
    placed_only = api.get("/api/v1/bets/summary?status=placed").json()

    assert body["totalBets"] == 3
    assert body["byBetStatus"] == {"pending": 0, "placed": 2, "declined": 1}
    assert body["bySettlementStatus"]["won"] == 1 and body["bySettlementStatus"]["undecided"] == 2
    assert Decimal(str(body["totalStake"])) == Decimal("450")
    # (2*100 + 3*300 + 1.5*50) / 450 = 1175 / 450
    assert Decimal(str(body["avgPrice"])) == Decimal("2.6111")
    # the same filters as /bets: only accepted bets
    assert placed_only["totalBets"] == 2
    assert Decimal(str(placed_only["totalStake"])) == Decimal("400")
    assert Decimal(str(placed_only["avgPrice"])) == Decimal("2.75")


def test_bet_summary_applies_order_and_date_filters(api, mm_client):
    order = OrderFactory(account=AccountFactory(client=mm_client[0]))
    bet_for(mm_client[0], order=order, created_at=at("2026-02-15T08:00:00"))
    bet_for(mm_client[0], created_at=at("2026-02-15T09:00:00"))
    bet_for(mm_client[0], created_at=at("2026-02-16T09:00:00"))

    assert api.get(f"/api/v1/bets/summary?orderId={order.id}").json()["totalBets"] == 1
    assert api.get("/api/v1/bets/summary?toDate=2026-02-15").json()["totalBets"] == 2


@pytest.mark.parametrize("query,parameter", [("status=won", "status"), ("orderId=x", "orderId")])
def test_bet_summary_refuses_bad_filters(api, query, parameter):
    resp = api.get(f"/api/v1/bets/summary?{query}")
    assert resp.status_code == 400 and resp.json()["parameter"] == parameter


def test_bet_summary_is_one_aggregate_query(api, mm_client, django_assert_max_num_queries):
    for _ in range(10):
        bet_for(mm_client[0])

    with django_assert_max_num_queries(3):  # key lookup, last-used stamp, one aggregate
        assert api.get("/api/v1/bets/summary").json()["totalBets"] == 10


# --- schemas document exactly what is rendered --------------------------------------------------------------


def test_bet_schema_fields_equal_the_rendered_keys(mm_client):
    assert set(BetSchema().fields) == set(bet_row(bet_for(mm_client[0])))


def test_bet_summary_schema_fields_equal_the_rendered_keys(api):
    body = api.get("/api/v1/bets/summary").json()
    schema = BetSummarySchema()

    assert set(schema.fields) == set(body)
    assert set(schema.fields["byBetStatus"].fields) == set(body["byBetStatus"])
    assert set(schema.fields["bySettlementStatus"].fields) == set(body["bySettlementStatus"])
