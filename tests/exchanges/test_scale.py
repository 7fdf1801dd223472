"""Scale orders: a ladder of limit orders placed all together or not at all."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from rest_framework.test import APIClient

from exchanges.ledger.selectors import owner_balances
from exchanges.models import ExchangeOrder, LedgerTransaction
from exchanges.selectors.market_data import book_snapshot
from exchanges.services.orders import order_place
from exchanges.services.traders import trader_key_create

from .conftest import make_trader


def client_for(trader):
    c = APIClient()
    c.credentials(HTTP_X_API_KEY=trader_key_create(trader=trader)[1])
    return c


def bal(trader, mode="live"):
    return {
        r["asset"]: (r["balance"], r["held"])
        for r in owner_balances(owner_type="trader", owner_id=str(trader.pk), mode=mode)
    }


SEED_EXAMPLE = {"side": "buy", "quantity": "10000", "price_low": "0.002", "price_high": "0.004", "num_orders": 10}


def test_seed_example_places_ten_resting_buys_across_the_range(market, alice):
    resp = client_for(alice).post("/api/v1/exchange/vaix/scale", SEED_EXAMPLE, format="json")
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["num_orders"] == 10 and body["quantity"] == "10000" and body["distribution"] == "linear"
    prices = [o["price"] for o in body["orders"]]
    assert prices[0] == "0.004" and prices[-1] == "0.002" and len(set(prices)) == 10
    assert all(o["quantity"] == "1000" and o["status"] == "open" for o in body["orders"])
    # the holds are the ladder's notional: 1000 x (0.002 + ... + 0.004)
    notional = sum(D(p) * 1000 for p in prices)
    assert bal(alice)["USDC"] == (D("1000"), notional)
    assert len(book_snapshot(symbol="vaix")["bids"]) == 10


def test_exponential_sells_grow_toward_the_high_price_in_paper_mode(market, alice):
    resp = client_for(alice).post(
        "/api/v1/exchange/vaix/scale",
        {
            "side": "sell",
            "quantity": "1000",
            "price_low": "0.0050",
            "price_high": "0.0054",
            "num_orders": 5,
            "distribution": "exponential",
            "size_ratio": "2",
            "mode": "paper",
        },
        format="json",
    )
    assert resp.status_code == 201, resp.content
    orders = resp.json()["orders"]
    assert [o["price"] for o in orders] == ["0.005", "0.0051", "0.0052", "0.0053", "0.0054"]
    sizes = [D(o["quantity"]) for o in orders]
    assert sum(sizes) == 1000 and sizes == sorted(sizes) and sizes[-1] >= 15 * sizes[0]
    assert all(o["mode"] == "paper" for o in orders)
    assert bal(alice)["VAIX"] == (D("100000"), D("0"))  # live untouched
    assert bal(alice, "paper")["VAIX"] == (D("50000"), D("1000"))


def test_a_ladder_the_balance_cannot_pay_in_full_places_nothing(market):
    # enough for the first few children (the highest prices) but not all ten
    poor = make_trader("poor", funds={"USDC": "20"})
    before_balances, before_tx = bal(poor), LedgerTransaction.objects.count()
    before_book = book_snapshot(symbol="vaix")
    resp = client_for(poor).post("/api/v1/exchange/vaix/scale", SEED_EXAMPLE, format="json")
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "insufficient_balance" and "no order was placed" in err["message"]
    assert not ExchangeOrder.objects.filter(trader=poor).exists()
    assert bal(poor) == before_balances and LedgerTransaction.objects.count() == before_tx
    assert book_snapshot(symbol="vaix") == before_book


def test_a_post_only_child_that_would_cross_refuses_the_whole_ladder(market, alice, bob):
    order_place(trader=bob, symbol="vaix", side="sell", type="limit", quantity=D("10"), price=D("0.0035"))
    resp = client_for(alice).post(
        "/api/v1/exchange/vaix/scale", {**SEED_EXAMPLE, "order_type": "post_only"}, format="json"
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "post_only_would_cross"
    assert not ExchangeOrder.objects.filter(trader=alice).exists()
    assert bal(alice)["USDC"] == (D("1000"), D("0"))


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"price_low": "0.0020005"}, "price_off_tick"),
        ({"price_high": None}, "invalid_price"),
        ({"price_low": "0.005"}, "invalid_price"),
        ({"quantity": "5"}, "below_min_order_size"),
        ({"quantity": "10000.5"}, "quantity_off_lot"),
        ({"num_orders": 51}, "invalid_parameter"),
        ({"num_orders": "ten"}, "invalid_parameter"),
        ({"price_high": "0.0021"}, "invalid_parameter"),  # 2 ticks wide, 10 prices
        ({"distribution": "cubic"}, "invalid_parameter"),
        ({"distribution": "exponential", "size_ratio": "0.5"}, "invalid_parameter"),
        ({"order_type": "market"}, "invalid_order_type"),
        ({"side": "short"}, "invalid_side"),
        ({"mode": "demo"}, "invalid_mode"),
        ({"colour": "red"}, "invalid_parameter"),
    ],
)
def test_bad_scale_requests_are_refused_naming_the_problem(market, alice, override, code):
    body = {k: v for k, v in {**SEED_EXAMPLE, **override}.items() if v is not None}
    resp = client_for(alice).post("/api/v1/exchange/vaix/scale", body, format="json")
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["code"] == code
    assert not ExchangeOrder.objects.exists()
