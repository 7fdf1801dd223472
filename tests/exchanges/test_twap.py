"""TWAP orders: slices over time through the matching service, each placed once, price limit, cancel."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal as D

import pytest
from django.db import connection
from rest_framework.test import APIClient

from exchanges.models import ExchangeOrder, TwapOrder, TwapSlice
from exchanges.services.orders import order_place
from exchanges.services.traders import trader_key_create
from exchanges.services.twap import twap_slice_run, twaps_run_due

from .conftest import make_trader


def client_for(trader):
    c = APIClient()
    c.credentials(HTTP_X_API_KEY=trader_key_create(trader=trader)[1])
    return c


def asks(trader, *levels, mode="live"):
    for price, qty in levels:
        order_place(trader=trader, symbol="vaix", side="sell", type="limit", quantity=D(qty), price=D(price), mode=mode)


def twap_orders(twap_id):
    return ExchangeOrder.objects.filter(client_order_id__startswith=twap_id + "-")


def test_twap_works_the_quantity_in_slices_on_schedule_each_placed_once(
    market, alice, bob, eager_celery, django_capture_on_commit_callbacks
):
    asks(bob, ("0.003", "1000"))
    api = client_for(alice)
    with django_capture_on_commit_callbacks(execute=True):  # slice 0 is queued right after commit (eager here)
        resp = api.post(
            "/api/v1/exchange/vaix/twap",
            {"side": "buy", "quantity": "100", "duration_minutes": 4, "num_slices": 4},
            format="json",
        )
    assert resp.status_code == 201, resp.content
    body = resp.json()
    twap_id = body["twap_id"]
    assert body["status"] == "active" and body["num_slices"] == 4 and body["price_limit"] == "0"
    assert [s["quantity"] for s in body["slices"]] == ["25"] * 4
    t = TwapOrder.objects.get(twap_id=twap_id)
    assert t.slices.get(index=0).status == "placed" and t.executed_quantity == D("25")

    start = t.created_at
    assert twaps_run_due(now=start + dt.timedelta(seconds=59)) == 0  # slice 1 is due at +1 min
    assert twaps_run_due(now=start + dt.timedelta(minutes=1, seconds=1)) == 1
    assert twaps_run_due(now=start + dt.timedelta(minutes=1, seconds=2)) == 0  # a second sweep: nothing
    # a retried task for a slice already placed places nothing
    twap_slice_run(slice_id=t.slices.get(index=1).pk, now=start + dt.timedelta(minutes=5))
    assert twap_orders(twap_id).count() == 2

    assert twaps_run_due(now=start + dt.timedelta(minutes=4)) == 2
    t.refresh_from_db()
    assert t.status == "completed" and t.executed_quantity == D("100") and t.slices_done == 4
    assert twap_orders(twap_id).count() == 4
    assert all(o.order_type == "market" and o.status == "filled" for o in twap_orders(twap_id))
    assert api.get("/api/v1/exchange/vaix/twap").json() == {"twaps": []}  # no longer active


def test_price_limit_fills_only_at_the_limit_or_better_and_never_rests(market, alice, bob):
    asks(bob, ("0.003", "30"), ("0.005", "1000"))
    api = client_for(alice)
    resp = api.post(
        "/api/v1/exchange/vaix/twap",
        {"side": "buy", "quantity": "100", "num_slices": 2, "duration_minutes": 2, "price_limit": "0.004"},
        format="json",
    )
    assert resp.status_code == 201
    t = TwapOrder.objects.get(twap_id=resp.json()["twap_id"])
    twaps_run_due(now=t.created_at + dt.timedelta(minutes=3))
    t.refresh_from_db()
    # slice 0 (50) took the 30 at 0.003; nothing at 0.004 or better was left for the rest or slice 1
    assert t.status == "completed" and t.executed_quantity == D("30")
    assert [s.filled_quantity for s in t.slices.all()] == [D("30"), D("0")]
    assert all(o.order_type == "ioc" and o.price == D("0.004") for o in twap_orders(t.twap_id))
    assert not ExchangeOrder.objects.live().filter(trader=alice).exists()
    detail = api.get(f"/api/v1/exchange/vaix/twap/{t.twap_id}").json()
    assert detail["price_limit"] == "0.004" and detail["avg_price"] == "0.003"


def test_cancel_stops_further_slices_and_is_scoped_to_its_trader(market, alice, bob):
    asks(bob, ("0.003", "1000"))
    api = client_for(alice)
    twap_id = api.post(
        "/api/v1/exchange/vaix/twap", {"side": "buy", "quantity": "90", "num_slices": 3}, format="json"
    ).json()["twap_id"]
    t = TwapOrder.objects.get(twap_id=twap_id)
    twaps_run_due(now=t.created_at)
    listed = api.get("/api/v1/exchange/vaix/twap").json()["twaps"]
    assert [x["twap_id"] for x in listed] == [twap_id] and listed[0]["slices_done"] == 1

    assert client_for(bob).delete(f"/api/v1/exchange/vaix/twap/{twap_id}").status_code == 404  # not bob's
    assert api.delete(f"/api/v1/exchange/vaix/twap/{twap_id}").json()["status"] == "cancelled"
    assert api.delete(f"/api/v1/exchange/vaix/twap/{twap_id}").status_code == 200  # idempotent
    assert twaps_run_due(now=t.created_at + dt.timedelta(hours=2)) == 0
    assert list(t.slices.values_list("status", flat=True)) == ["placed", "cancelled", "cancelled"]
    assert twap_orders(twap_id).count() == 1
    assert api.get("/api/v1/exchange/vaix/twap").json() == {"twaps": []}
    assert api.delete("/api/v1/exchange/vaix/twap/twap_nope").json()["error"]["code"] == "unknown_twap"


def test_a_refused_slice_is_recorded_and_the_twap_goes_on(market, bob):
    poor = make_trader("poor", funds={"USDC": "0.1"})
    asks(bob, ("0.003", "1000"))
    t_id = (
        client_for(poor)
        .post("/api/v1/exchange/vaix/twap", {"side": "buy", "quantity": "100", "num_slices": 2}, format="json")
        .json()["twap_id"]
    )
    t = TwapOrder.objects.get(twap_id=t_id)
    twaps_run_due(now=t.created_at + dt.timedelta(hours=1))
    t.refresh_from_db()
    first, second = t.slices.all()
    # 50 x 0.003 = 0.15 USDC: the first slice cannot be paid; nor the second
    assert (first.status, first.error_code) == ("failed", "insufficient_balance")
    assert second.status == "failed" and t.status == "completed" and t.executed_quantity == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"side": "buy", "quantity": "5", "num_slices": 10}, 400, "below_min_order_size"),
        ({"side": "buy", "quantity": "100", "duration_minutes": 0}, 400, "invalid_parameter"),
        ({"side": "buy", "quantity": "100", "duration_minutes": "soon"}, 400, "invalid_parameter"),
        ({"side": "buy", "quantity": "100", "num_slices": 1001}, 400, "invalid_parameter"),
        ({"side": "buy", "quantity": "100", "price_limit": "0.00305"}, 400, "price_off_tick"),
        ({"side": "buy", "quantity": "100", "price_limit": "-1"}, 400, "invalid_price"),
        ({"side": "buy", "quantity": "100.5"}, 400, "quantity_off_lot"),
        ({"side": "buy", "quantity": "lots"}, 400, "invalid_quantity"),
        ({"side": "buy", "quantity": True}, 400, "invalid_quantity"),
        ({"side": "hold", "quantity": "100"}, 400, "invalid_side"),
        ({"quantity": "100"}, 400, "invalid_side"),
        ({"side": "buy", "quantity": "100", "mode": "demo"}, 400, "invalid_mode"),
        ({"side": "buy", "quantity": "100", "slices": 3}, 400, "invalid_parameter"),
    ],
)
def test_bad_twap_requests_are_refused_and_write_nothing(market, alice, body, status, code):
    resp = client_for(alice).post("/api/v1/exchange/vaix/twap", body, format="json")
    assert resp.status_code == status and resp.json()["error"]["code"] == code
    assert not TwapOrder.objects.exists() and not TwapSlice.objects.exists()


def test_twap_needs_auth_and_a_known_symbol(market, alice):
    assert APIClient().post("/api/v1/exchange/vaix/twap", {}, format="json").status_code == 401
    resp = client_for(alice).post("/api/v1/exchange/nope/twap", {"side": "buy", "quantity": "1"}, format="json")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "invalid_symbol"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_running_the_same_slice_at_once_place_one_order(market, alice, bob):
    asks(bob, ("0.003", "1000"))
    api = client_for(alice)
    resp = api.post("/api/v1/exchange/vaix/twap", {"side": "buy", "quantity": "40", "num_slices": 2}, format="json")
    t = TwapOrder.objects.get(twap_id=resp.json()["twap_id"])
    piece = t.slices.get(index=1)
    barrier = threading.Barrier(2)
    errors = []

    def worker():
        try:
            barrier.wait()
            twap_slice_run(slice_id=piece.pk, now=t.created_at + dt.timedelta(hours=1))
        except Exception as exc:  # noqa: BLE001 - collected and asserted on
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert ExchangeOrder.objects.filter(client_order_id=f"{t.twap_id}-1").count() == 1
    t.refresh_from_db()
    assert t.executed_quantity == D("20") and t.slices_done == 1


def test_paper_sell_twap_with_a_minimum_price_sells_only_at_or_above_it(market, alice, bob):
    for price, qty in (("0.0050", "10"), ("0.0040", "1000")):
        order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D(qty), price=D(price), mode="paper")
    api = client_for(alice)
    resp = api.post(
        "/api/v1/exchange/vaix/twap",
        {"side": "sell", "quantity": "40", "num_slices": 2, "price_limit": "0.0045", "mode": "paper"},
        format="json",
    )
    assert resp.status_code == 201 and resp.json()["mode"] == "paper"
    t = TwapOrder.objects.get(twap_id=resp.json()["twap_id"])
    twaps_run_due(now=t.created_at + dt.timedelta(hours=2))
    t.refresh_from_db()
    assert t.executed_quantity == D("10") and t.executed_notional == D("0.05")  # only the bid at 0.005
    assert not ExchangeOrder.objects.filter(trader=alice, mode="live").exists()
