"""The exchange REST API: every endpoint of seed 004, auth, errors, tenant isolation."""

from __future__ import annotations

import re
from decimal import Decimal as D

import pytest
from rest_framework.test import APIClient

from exchanges.api.authentication import issue_jwt
from exchanges.ledger.selectors import owner_balances
from exchanges.models import ExchangeOrder, ExchangeWithdrawal
from exchanges.services.traders import trader_key_create

from .conftest import make_market

BASE = "/api/v1/exchange"


def client_for(trader, *, jwt=False):
    c = APIClient()
    if jwt:
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_jwt(trader)}")
    else:
        c.credentials(HTTP_X_API_KEY=trader_key_create(trader=trader)[1])
    return c


@pytest.fixture(autouse=True)
def _generous_limits(settings):
    settings.EXCHANGE_RATE_LIMITS = {
        "standard": {
            "public_per_minute": 10_000,
            "authenticated_per_minute": 10_000,
            "orders_per_second_per_pair": 10_000,
            "orders_per_minute": 10_000,
        }
    }


def bal(trader, mode="live"):
    return {
        r["asset"]: (r["balance"], r["held"])
        for r in owner_balances(owner_type="trader", owner_id=str(trader.pk), mode=mode)
    }


def test_place_get_cancel_and_book_over_http(market, alice, bob):
    a, b = client_for(alice), client_for(bob, jwt=True)
    r = a.post(
        f"{BASE}/vaix/orders",
        {"side": "sell", "quantity": "1000", "price": "0.003", "order_type": "limit"},
        format="json",
    )
    assert r.status_code == 201, r.content
    oid = r.json()["order_id"]
    assert oid.startswith("ord_") and r.json()["status"] == "open" and r.json()["quantity"] == "1000"
    book = APIClient().get(f"{BASE}/vaix/book?depth=30").json()
    assert book["asks"] == [["0.003", "1000"]] and book["bids"] == [] and book["sequence"] == 1
    hybrid = APIClient().get(f"{BASE}/vaix/book/hybrid?depth=30").json()
    assert hybrid["asks"][0]["source"] == "clob" and hybrid["amm_configured"] is False
    bbo = APIClient().get(f"{BASE}/vaix/bbo").json()
    assert bbo["best_ask"] == "0.003" and bbo["best_bid"] is None
    r = b.post(f"{BASE}/vaix/orders", {"side": "buy", "quantity": "400", "price": "0.003"}, format="json")
    assert r.status_code == 201 and r.json()["status"] == "filled" and len(r.json()["fills"]) == 1
    fill = r.json()["fills"][0]
    assert fill["side"] == "buy" and fill["role"] == "taker" and fill["price"] == "0.003"
    mine = a.get(f"{BASE}/vaix/trades/mine?limit=20").json()["trades"]
    assert mine[0]["side"] == "sell" and mine[0]["role"] == "maker" and mine[0]["order_id"] == oid
    assert APIClient().get(f"{BASE}/vaix/trades").json()["trades"][0]["quantity"] == "400"
    got = a.get(f"{BASE}/vaix/orders/{oid}").json()
    assert got["filled_quantity"] == "400" and got["status"] == "partially_filled"
    assert b.get(f"{BASE}/vaix/orders/{oid}").status_code == 404  # another trader's order
    assert b.delete(f"{BASE}/vaix/orders/{oid}").status_code == 404
    r = a.delete(f"{BASE}/vaix/orders/{oid}?mode=live")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert a.get(f"{BASE}/vaix/orders/open").json()["orders"] == []
    hist = a.get(f"{BASE}/vaix/orders/history?limit=50&offset=0").json()
    assert hist["total"] == 1 and hist["orders"][0]["order_id"] == oid


def test_error_shape_and_codes(market, alice):
    a = client_for(alice)
    before = bal(alice)
    cases = [
        ({"side": "hold", "quantity": "10", "price": "0.003"}, 400, "invalid_side"),
        ({"side": "buy", "quantity": "10", "price": "0.003", "order_type": "x"}, 400, "invalid_order_type"),
        ({"side": "buy", "quantity": "-1", "price": "0.003"}, 400, "invalid_quantity"),
        ({"side": "buy", "quantity": "0", "price": "0.003"}, 400, "invalid_quantity"),
        ({"side": "buy", "quantity": 10.5, "price": "0.003"}, 400, "quantity_off_lot"),
        ({"side": "buy", "quantity": "10", "price": "0.00301"}, 400, "price_off_tick"),
        ({"side": "buy", "quantity": "10", "price": 0.003}, 201, None),
        ({"side": "buy", "quantity": "1", "price": "0.003"}, 201, None),
        ({"side": "buy", "quantity": "100000000", "price": "0.003"}, 400, "insufficient_balance"),
        ({"side": "buy", "quantity": "10", "price": "abc"}, 400, "invalid_price"),
        ({"side": "buy", "quantity": ["1"], "price": "0.003"}, 400, "invalid_quantity"),
        ({"side": "buy", "quantity": "10", "price": "0.003", "bogus": 1}, 400, "invalid_parameter"),
    ]
    for body, status, code in cases:
        r = a.post(f"{BASE}/vaix/orders", body, format="json")
        assert r.status_code == status, (body, r.content)
        if code:
            assert r.json()["error"]["code"] == code, (body, r.json())
            assert r.json()["error"]["message"]
    make_market("big", min_order_size="100")
    r = a.post(f"{BASE}/big/orders", {"side": "buy", "quantity": "10", "price": "0.003"}, format="json")
    assert r.json()["error"]["code"] == "below_min_order_size"
    r = a.post(f"{BASE}/nope/orders", {"side": "buy", "quantity": "10", "price": "0.003"}, format="json")
    assert r.status_code == 404 and r.json()["error"]["code"] == "invalid_symbol"
    r = a.post(f"{BASE}/vaix/orders", data="{not json", content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    r = a.get(f"{BASE}/vaix/orders/ord_nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_order"
    assert a.get(f"{BASE}/vaix/orders/history?limit=100000").status_code == 400
    assert a.get(f"{BASE}/vaix/orders/history?offset=-1").status_code == 400
    r = a.post(
        f"{BASE}/vaix/orders/batch",
        {"orders": [{"side": "buy", "quantity": "1", "price": "0.001"}] * 11},
        format="json",
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "batch_too_large"
    assert APIClient().post(f"{BASE}/vaix/orders", {"side": "buy"}, format="json").status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")
    assert bad.get(f"{BASE}/vaix/orders/open").status_code == 401
    # two orders were accepted (11 quote held); every refusal left the balance as it was
    assert bal(alice)["USDC"] == (before["USDC"][0], D("0.033"))


def test_batch_place_and_cancel_each_on_its_own(market, alice):
    a = client_for(alice)
    orders = [
        {"side": "buy", "quantity": "500", "price": "0.003", "order_type": "limit"},
        {"side": "buy", "quantity": "500", "price": "0.0029", "order_type": "limit"},
        {"side": "buy", "quantity": "5", "price": "0.00295"},
    ]
    r = a.post(f"{BASE}/vaix/orders/batch", {"orders": orders}, format="json")
    assert r.status_code == 200
    body = r.json()
    assert (body["total"], body["successful"], body["failed"]) == (3, 2, 1)
    assert body["results"][2]["error"]["code"] == "price_off_tick"
    r = a.post(f"{BASE}/vaix/orders/batch", orders[:1], format="json")  # the SDK sends a bare array
    assert r.json()["successful"] == 1
    ids = [x["order"]["order_id"] for x in body["results"] if x["success"]] + ["ord_missing"]
    r = a.delete(f"{BASE}/vaix/orders/batch", {"order_ids": ids}, format="json")
    assert (r.json()["successful"], r.json()["failed"]) == (2, 1)


BOOK_LOCK = re.compile(r"FROM exchanges_bookstate WHERE market_id = \d+ AND mode = '\w+' FOR UPDATE")


def test_a_batch_is_one_transaction_per_book_and_each_order_keeps_its_own_answer(market, alice):
    """Ten orders in one request: the book is locked once for all of them (one transaction), and yet each
    is answered as if alone: funds count what the earlier orders of the batch hold, a client_order_id
    used twice in the batch is refused the second time, paper orders go to the paper book; a batch
    cancel of them is one transaction too, with 404/409 per order as a single cancel gives."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    a = client_for(alice)
    orders = [{"side": "buy", "quantity": "100000", "price": "0.003"} for _ in range(4)]  # 300 USDC each
    orders += [
        {"side": "buy", "quantity": "1", "price": "0.003", "client_order_id": "twice"},
        {"side": "buy", "quantity": "1", "price": "0.003", "client_order_id": "twice"},
        {"side": "buy", "quantity": "1", "price": "0.003", "mode": "paper"},
        {"side": "sell", "quantity": "10", "price": "0.004"},
        {"side": "buy", "quantity": "1", "price": "0.00305"},  # off tick
        {"side": "sell", "quantity": "5", "price": "0.005"},
    ]
    with CaptureQueriesContext(connection) as q:
        r = a.post(f"{BASE}/vaix/orders/batch", {"orders": orders}, format="json")
    assert r.status_code == 200
    res = r.json()["results"]
    codes = [x["success"] or x["error"]["code"] for x in res]
    assert codes == [
        True,
        True,
        True,
        "insufficient_balance",  # 1,000 USDC: three of these fit, not four
        True,
        "duplicate_client_order_id",
        True,
        True,
        "price_off_tick",
        True,
    ]
    assert res[6]["order"]["mode"] == "paper"
    book_locks = [x["sql"] for x in q.captured_queries if BOOK_LOCK.search(x["sql"])]
    if connection.vendor == "postgresql":  # SQLite has no FOR UPDATE to count
        assert len(book_locks) == 2  # the live book once, the paper book once
    assert bal(alice)["USDC"][1] == D("900.003")  # three 300s and one 0.003 held, nothing for refusals

    placed = [x["order"]["order_id"] for x in res if x["success"]]
    a.delete(f"{BASE}/vaix/orders/{placed[0]}")
    with CaptureQueriesContext(connection) as q:
        r = a.delete(f"{BASE}/vaix/orders/batch", {"order_ids": [*placed, "ord_nope"]}, format="json")
    res = r.json()["results"]
    assert [x["success"] or x["error"]["code"] for x in res] == [
        "order_not_open",
        True,
        True,
        True,
        True,  # the paper order: found in its own book
        True,
        True,
        "unknown_order",
    ]
    book_locks = [x["sql"] for x in q.captured_queries if BOOK_LOCK.search(x["sql"])]
    if connection.vendor == "postgresql":
        assert len(book_locks) == 2
    assert bal(alice)["USDC"][1] == 0


def test_amend_cancel_all_kill_switch(market, alice):
    make_market("sbio")
    a = client_for(alice)
    oid = a.post(f"{BASE}/vaix/orders", {"side": "buy", "quantity": "100", "price": "0.003"}, format="json").json()[
        "order_id"
    ]
    r = a.patch(f"{BASE}/vaix/orders/{oid}", {"price": "0.0025", "quantity": "50"}, format="json")
    assert r.status_code == 200 and r.json()["price"] == "0.0025" and r.json()["quantity"] == "50"
    a.post(f"{BASE}/vaix/orders", {"side": "buy", "quantity": "10", "price": "0.001"}, format="json")
    a.post(f"{BASE}/sbio/orders", {"side": "buy", "quantity": "10", "price": "0.001"}, format="json")
    a.post(f"{BASE}/sbio/orders", {"side": "buy", "quantity": "10", "price": "0.001", "mode": "paper"}, format="json")
    r = a.delete(f"{BASE}/vaix/orders")
    assert r.json()["cancelled"] == 2
    r = a.delete(f"{BASE}/orders/all")
    assert r.json()["cancelled"] == 2  # sbio live and paper
    assert not ExchangeOrder.objects.live().exists()
    assert bal(alice)["USDC"][1] == 0 and bal(alice, "paper")["USDC"][1] == 0


def test_market_data_endpoints(market, alice, bob):
    a, b = client_for(alice), client_for(bob)
    a.post(f"{BASE}/vaix/orders", {"side": "sell", "quantity": "100", "price": "0.004"}, format="json")
    b.post(f"{BASE}/vaix/orders", {"side": "buy", "quantity": "60", "price": "0.004"}, format="json")
    pub = APIClient()
    pairs = pub.get(f"{BASE}/pairs").json()
    assert pairs[0]["base_symbol"] == "VAIX" and pairs[0]["tick_size"] == "0.0001" and pairs[0]["lot_size"] == "1"
    assert pub.get(f"{BASE}/markets").json()[0]["price"] == "0.004"
    stats = pub.get(f"{BASE}/vaix/stats").json()
    assert stats["volume_24h"] == "60" and stats["trades_24h"] == 1
    chart = pub.get(f"{BASE}/vaix/chart?interval=4h&limit=200").json()
    assert chart["candles"][0]["open"] == "0.004" and chart["candles"][0]["volume"] == "60"
    for interval in ("1m", "5m", "15m", "1h", "1d"):
        assert pub.get(f"{BASE}/vaix/chart?interval={interval}").status_code == 200
    assert pub.get(f"{BASE}/vaix/chart?interval=2h").status_code == 400
    assert pub.get(f"{BASE}/vaix/venues").json()["venues"][0]["venue"] == "CLOB"
    assert pub.get(f"{BASE}/vaix/ticker").json()["last_price"] == "0.004"
    assert "timestamp_us" in pub.get(f"{BASE}/time").json()
    assert pub.get(f"{BASE}/fee-schedule").json()["tiers"][0]["name"]
    assert b.get(f"{BASE}/my-fees").json()["tier"] == "standard"
    bal_body = a.get(f"{BASE}/vaix/balance").json()
    assert bal_body["base_asset"] == "VAIX" and bal_body["quote_asset"] == "USDC"


def test_withdraw_holds_funds_pending_without_a_handler(market, alice, settings):
    settings.EXCHANGE_WITHDRAWAL_HANDLER = ""
    a = client_for(alice)
    r = a.post(f"{BASE}/vaix/withdraw", {"amount": "500", "destination": "0xabc"}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "pending"
    assert bal(alice)["VAIX"] == (D("100000"), D("500"))
    w = ExchangeWithdrawal.objects.get()
    assert w.hold.reference == f"withdrawal:{w.withdrawal_id}"
    r = a.post(f"{BASE}/vaix/withdraw", {"amount": "1e9", "destination": "0xabc"}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "insufficient_balance"
    r = a.post(f"{BASE}/vaix/withdraw", {"amount": "5", "destination": ""}, format="json")
    assert r.json()["error"]["code"] == "invalid_destination"


def test_login_with_email_and_password_returns_the_sdk_shape(market, alice):
    r = APIClient().post("/auth/login", {"email": "alice@example.com", "password": "pw-alice"}, format="json")
    assert r.status_code == 200
    body = r.json()
    assert body["access_token"] and body["refresh_token"] and body["expires_in"] == 900
    assert body["user"]["id"] == str(alice.pk)
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert c.get(f"{BASE}/vaix/orders/open").status_code == 200
    r = APIClient().post("/auth/refresh", {"refresh_token": body["refresh_token"]}, format="json")
    assert r.status_code == 200 and r.json()["access_token"]
    # a refresh token is not an access token, and a wrong password is a 401
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {body['refresh_token']}")
    assert c.get(f"{BASE}/vaix/orders/open").status_code == 401
    r = APIClient().post("/auth/login", {"email": "alice@example.com", "password": "nope"}, format="json")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"


def test_jwt_algorithm_is_pinned_and_exp_required(market, alice, settings):
    import jwt as pyjwt

    from exchanges.api.authentication import _secret, authenticate_jwt

    none_token = pyjwt.encode({"sub": str(alice.pk), "typ": "access"}, key="", algorithm="none")
    assert authenticate_jwt(none_token) is None
    no_exp = pyjwt.encode(
        {"sub": str(alice.pk), "typ": "access", "iat": 1, "iss": "mmsite-exchange"}, _secret(), "HS256"
    )
    assert authenticate_jwt(no_exp) is None
    assert authenticate_jwt(issue_jwt(alice)) == alice
    from datetime import timedelta

    assert authenticate_jwt(issue_jwt(alice, ttl=timedelta(seconds=-1))) is None


def test_the_sdks_amend_path(market, alice, bob):
    a = client_for(alice)
    oid = a.post(f"{BASE}/vaix/orders", {"side": "buy", "quantity": "100", "price": "0.003"}, format="json").json()[
        "order_id"
    ]
    r = a.patch(f"/api/v1/clob/orders/{oid}", {"quantity": "60"}, format="json")
    assert r.status_code == 200 and r.json()["quantity"] == "60" and r.json()["price"] == "0.003"
    assert client_for(bob).patch(f"/api/v1/clob/orders/{oid}", {"quantity": "50"}, format="json").status_code == 404


def test_hybrid_book_merges_configured_depth_sources_and_says_so_per_level(market, alice):
    market.depth_sources = [
        {"venue": "uniswap", "chain": "base", "levels": [["sell", "0.004", "500"], ["buy", "0.002", "700"]]}
    ]
    market.save()
    client_for(alice).post(f"{BASE}/vaix/orders", {"side": "sell", "quantity": "100", "price": "0.004"}, format="json")
    body = APIClient().get(f"{BASE}/vaix/book/hybrid?depth=30").json()
    assert body["amm_configured"] is True and body["sources"] == ["CLOB", "uniswap"]
    assert body["asks"] == [
        {"price": "0.004", "size": "600", "clob_size": "100", "amm_size": "500", "source": "clob+amm"}
    ]
    assert body["bids"][0]["source"] == "amm"
    assert APIClient().get(f"{BASE}/vaix/book?depth=30").json()["asks"] == [["0.004", "100"]]
    venues = APIClient().get(f"{BASE}/vaix/venues").json()["venues"]
    assert [v["venue"] for v in venues] == ["CLOB", "uniswap"]


def test_chart_buckets_trades_into_ohlc_candles(market, alice, bob):
    from datetime import UTC, datetime, timedelta

    from exchanges.models import ExchangeTrade
    from exchanges.selectors.market_data import candles

    a, b = client_for(alice), client_for(bob)
    for price in ("0.004", "0.006", "0.003", "0.005"):
        a.post(f"{BASE}/vaix/orders", {"side": "sell", "quantity": "10", "price": price}, format="json")
        b.post(f"{BASE}/vaix/orders", {"side": "buy", "quantity": "10", "price": price}, format="json")
    base = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    for i, t in enumerate(ExchangeTrade.objects.order_by("trade_no")):
        t.created_at = base + timedelta(minutes=[1, 2, 61, 62][i])
        t.save(update_fields=["created_at"])
    got = candles(market=market, interval="1h", limit=5, now=base + timedelta(hours=3))
    assert [(c["open"], c["high"], c["low"], c["close"], c["volume"]) for c in got] == [
        (D("0.004"), D("0.006"), D("0.004"), D("0.006"), D("20")),
        (D("0.003"), D("0.005"), D("0.003"), D("0.005"), D("20")),
    ]
    assert got[0]["timestamp"] == int(base.timestamp())


def test_wrong_json_types_are_4xx_not_500(market, alice):
    a = client_for(alice)
    base = {"side": "buy", "quantity": "1", "price": "0.003"}
    for field, value in [
        ("order_type", {}),
        ("order_type", []),
        ("side", {}),
        ("stp_mode", {"a": 1}),
        ("stp_mode", ["x"]),
        ("mode", {}),
        ("expire_at", {}),
        ("display_qty", []),
        ("client_order_id", {}),
        ("stop_price", {}),
        ("time_in_force_ms", 1.5),
    ]:
        r = a.post(f"{BASE}/vaix/orders", {**base, field: value}, format="json")
        assert r.status_code == 400, (field, value, r.content)
        assert r.json()["error"]["code"]
    r = a.post(f"{BASE}/vaix/orders/batch", {"orders": [{**base, "order_type": {}}]}, format="json")
    assert r.status_code == 200 and r.json()["failed"] == 1
    r = a.post(f"{BASE}/vaix/orders/batch", {"orders": [base], "mode": {}}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_mode"
    assert a.post(f"{BASE}/vaix/orders/batch", [1, 2], format="json").json()["failed"] == 2
    assert a.delete(f"{BASE}/vaix/orders/batch", {"order_ids": [{}]}, format="json").status_code == 400
    assert a.post(f"{BASE}/vaix/withdraw", {"amount": {}, "destination": "x"}, format="json").status_code == 400
    assert (
        a.post(f"{BASE}/vaix/withdraw", {"amount": "1", "destination": "x", "asset": {}}, format="json").status_code
        == 400
    )
    assert a.post(f"{BASE}/vaix/orders", [base], format="json").status_code == 400


def test_a_placements_request_count_goes_with_its_order_counts_and_keeps_the_old_refusals(
    market, alice, settings, monkeypatch
):
    """POST /orders counts its per-trader request window with the order windows in one round trip: a
    request over the request limit is refused (429) without counting orders, and a request that fails
    before its orders are counted (a malformed body) still counts as a request."""
    from django.core.cache import cache

    import exchanges.api.throttling as x
    import mmsite.api.throttling as m

    now = [1_800_000_000.2]
    monkeypatch.setattr(x.time, "time", lambda: now[0])
    monkeypatch.setattr(m.time, "time", lambda: now[0])
    settings.EXCHANGE_RATE_LIMITS = {
        "standard": {
            "public_per_minute": 10_000,
            "authenticated_per_minute": 3,
            "orders_per_second_per_pair": 10_000,
            "orders_per_minute": 10_000,
        }
    }
    a = client_for(alice)
    body = {"side": "buy", "quantity": "1", "price": "0.001"}
    assert a.post(f"{BASE}/vaix/orders", body, format="json").status_code == 201  # request 1, order 1
    r = a.post(f"{BASE}/vaix/orders", "{not json", content_type="application/json")  # request 2
    assert r.status_code == 400
    assert a.get(f"{BASE}/vaix/orders/open").status_code == 200  # request 3
    r = a.post(f"{BASE}/vaix/orders", body, format="json")  # request 4: over the request limit
    assert r.status_code == 429 and int(r["Retry-After"]) >= 1
    start = int(now[0] // 60) * 60
    assert cache.get(f"throttle:xauth:{alice.pk}:{start}") == 4
    assert cache.get(f"throttle:xord:m:{alice.pk}:{start}") == 1  # the refused request counted no order
    assert ExchangeOrder.objects.filter(trader=alice).count() == 1


def test_login_with_a_nul_in_the_email_is_refused_not_a_server_error(alice):
    """PostgreSQL refuses NUL in text: such an email is wrong credentials (401), never a 500 (found by the
    fuzz test)."""
    r = APIClient().post("/auth/login", {"email": "a\x00b@example.com", "password": "pw"}, format="json")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"
