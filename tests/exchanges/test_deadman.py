"""The dead-man's switch: heartbeats keep it armed; when they stop every order is cancelled."""

from __future__ import annotations

import datetime as dt
import os
import threading
from decimal import Decimal as D

import pytest
from django.db import connection
from rest_framework.test import APIClient

from exchanges.ledger.selectors import owner_balances
from exchanges.models import DeadMansSwitch, ExchangeOrder
from exchanges.services.deadman import dms_trigger_due
from exchanges.services.orders import order_place
from exchanges.services.traders import trader_key_create
from exchanges.tasks.algos import deadman_sweep

from .conftest import make_market

DMS = "/api/v1/exchange/dead-mans-switch"


def client_for(trader):
    c = APIClient()
    c.credentials(HTTP_X_API_KEY=trader_key_create(trader=trader)[1])
    return c


def held(trader, mode="live"):
    return {r["asset"]: r["held"] for r in owner_balances(owner_type="trader", owner_id=str(trader.pk), mode=mode)}


def rest(trader, symbol, side, qty, price, mode="live"):
    return order_place(
        trader=trader, symbol=symbol, side=side, type="limit", quantity=D(qty), price=D(price), mode=mode
    )


def test_activate_heartbeat_deactivate(market, alice):
    api = client_for(alice)
    assert api.get(DMS).json()["active"] is False
    on = api.post(DMS, {"timeout_ms": 5000}, format="json").json()
    assert on["active"] is True and on["timeout_ms"] == 5000
    first_deadline = on["expires_at"]
    beat = api.post(f"{DMS}/heartbeat")
    assert beat.status_code == 200 and beat.json()["expires_at"] >= first_deadline
    off = api.delete(DMS).json()
    assert off["active"] is False and off["expires_at"] is None
    assert api.delete(DMS).status_code == 200  # idempotent
    resp = api.post(f"{DMS}/heartbeat")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "dms_not_active"
    assert api.post(DMS, format="json").json()["timeout_ms"] == 60000  # the SDK's default


def test_no_heartbeat_cancels_every_order_in_both_modes_and_releases_the_holds(market, alice, bob):
    make_market("sbio")
    rest(alice, "vaix", "buy", "1000", "0.003")
    rest(alice, "vaix", "sell", "500", "0.004")
    rest(alice, "vaix", "buy", "100", "0.002", mode="paper")
    bobs = rest(bob, "vaix", "sell", "100", "0.005")
    api = client_for(alice)
    api.post(DMS, {"timeout_ms": 1000}, format="json")
    switch = DeadMansSwitch.objects.get(trader=alice)
    assert held(alice)["USDC"] == D("3") and held(alice)["VAIX"] == D("500")

    assert dms_trigger_due(now=switch.expires_at - dt.timedelta(milliseconds=1)) == 0  # not yet
    assert ExchangeOrder.objects.live().filter(trader=alice).count() == 3
    assert dms_trigger_due(now=switch.expires_at) == 1

    assert not ExchangeOrder.objects.live().filter(trader=alice).exists()
    assert set(held(alice).values()) == {D("0")} and set(held(alice, "paper").values()) == {D("0")}
    assert ExchangeOrder.objects.get(pk=bobs.pk).status == "open"  # nobody else's
    switch.refresh_from_db()
    assert switch.active is False and switch.triggered_cancelled == 3
    resp = api.post(f"{DMS}/heartbeat")
    assert resp.status_code == 409 and "cancelled your orders" in resp.json()["error"]["message"]
    assert dms_trigger_due(now=switch.expires_at + dt.timedelta(hours=1)) == 0  # a second sweep: nothing


def test_heartbeats_keep_the_orders(market, alice):
    rest(alice, "vaix", "buy", "10", "0.003")
    api = client_for(alice)
    api.post(DMS, {"timeout_ms": 1000}, format="json")
    switch = DeadMansSwitch.objects.get(trader=alice)
    DeadMansSwitch.objects.filter(pk=switch.pk).update(expires_at=switch.expires_at - dt.timedelta(seconds=10))
    api.post(f"{DMS}/heartbeat")  # pushes the deadline to now + 1 s
    assert deadman_sweep() == 0
    assert ExchangeOrder.objects.live().filter(trader=alice).count() == 1


def test_the_sweep_task_fires_an_expired_switch(market, alice):
    rest(alice, "vaix", "buy", "10", "0.003")
    client_for(alice).post(DMS, {"timeout_ms": 1000}, format="json")
    DeadMansSwitch.objects.filter(trader=alice).update(expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert deadman_sweep() == 1 and deadman_sweep() == 0
    assert not ExchangeOrder.objects.live().filter(trader=alice).exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"timeout_ms": 999}, "invalid_timeout"),
        ({"timeout_ms": 86_400_001}, "invalid_timeout"),
        ({"timeout_ms": "soon"}, "invalid_timeout"),
        ({"timeout_ms": True}, "invalid_timeout"),
        ({"timeout": 5000}, "invalid_parameter"),
    ],
)
def test_bad_activation_is_refused(market, alice, body, code):
    resp = client_for(alice).post(DMS, body, format="json")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == code
    assert not DeadMansSwitch.objects.exists()


def test_dead_mans_switch_needs_auth(db):
    assert APIClient().post(DMS, {"timeout_ms": 5000}, format="json").status_code == 401


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_fire_each_switch_once(market, alice, bob):
    for trader in (alice, bob):
        rest(trader, "vaix", "buy", "10", "0.003")
        client_for(trader).post(DMS, {"timeout_ms": 1000}, format="json")
    DeadMansSwitch.objects.update(expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    barrier = threading.Barrier(2)
    fired, errors = [], []

    def sweep():
        try:
            barrier.wait()
            fired.append(dms_trigger_due())
        except Exception as exc:  # noqa: BLE001 - asserted on below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and sum(fired) == 2
    assert not ExchangeOrder.objects.live().exists()
    assert sorted(DeadMansSwitch.objects.values_list("triggered_cancelled", flat=True)) == [1, 1]


def test_the_run_exchange_algos_command_fires_switches_and_runs_slices(market, alice):
    from django.core.management import call_command

    rest(alice, "vaix", "buy", "10", "0.003")
    client_for(alice).post(DMS, {"timeout_ms": 1000}, format="json")
    DeadMansSwitch.objects.filter(trader=alice).update(expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    call_command("run_exchange_algos", "--once", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert not ExchangeOrder.objects.live().filter(trader=alice).exists()
