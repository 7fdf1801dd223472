from decimal import Decimal

import pytest

from tests.factories import AccountFactory, OrderFactory
from trading.choices import OrderStatus

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
