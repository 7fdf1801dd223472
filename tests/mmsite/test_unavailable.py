"""A database that cannot serve a request now (pool timeout, connection lost, lock timeout) is the
server's trouble: every API family answers 503 in its own error shape with ``Retry-After``, never a
500, and the request changes nothing. And the order gateway's threads do not starve the request threads
of pooled connections."""

from __future__ import annotations

import threading
from decimal import Decimal as D

import pytest
from django.db import OperationalError, connection
from rest_framework.test import APIClient

from exchanges.api.gateway import reserve_pool_connections
from exchanges.ledger.selectors import owner_balances
from exchanges.models import ExchangeOrder
from exchanges.services.traders import trader_key_create
from tests.exchanges.conftest import make_market, make_trader

POOL_TIMEOUT = OperationalError("couldn't get a connection after 10.00 sec")


def _raise(*args, **kwargs):
    raise POOL_TIMEOUT


def test_mm_api_answers_a_database_outage_with_503_in_its_shape(api, monkeypatch):
    monkeypatch.setattr("trading.selectors.accounts.accounts_for_client", _raise)
    resp = api.get("/api/v1/accounts")
    assert resp.status_code == 503
    assert resp["Retry-After"] == "1"
    assert resp.json() == {"error": "service_unavailable", "message": "The service is busy, try again shortly"}


@pytest.mark.django_db
def test_exchange_api_answers_a_database_outage_with_503_busy_and_changes_nothing(monkeypatch, settings):
    make_market("vaix")
    trader = make_trader("alice", funds={"USDC": "100"})
    c = APIClient()
    c.credentials(HTTP_X_API_KEY=trader_key_create(trader=trader)[1])
    monkeypatch.setattr("exchanges.services.matching._lock_book_state", _raise)
    resp = c.post(
        "/api/v1/exchange/vaix/orders",
        {"side": "buy", "order_type": "limit", "quantity": "10", "price": "0.5"},
        format="json",
    )
    assert resp.status_code == 503, resp.json()
    assert resp["Retry-After"] == "1"
    assert resp.json()["error"]["code"] == "busy"
    assert not ExchangeOrder.objects.exists()
    rows = owner_balances(owner_type="trader", owner_id=str(trader.pk), mode="live")
    assert {r["asset"]: (r["balance"], r["held"]) for r in rows}["USDC"] == (D("100"), D("0"))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a psycopg pool needs PostgreSQL")
@pytest.mark.django_db
def test_the_gateway_grows_the_pool_by_the_connections_its_threads_keep():
    """A pool of 2 with 3 connections held for good by gateway threads: grown to 5, the request
    threads still get their 2 (before, they waited for the pool's timeout and failed)."""
    from psycopg_pool import ConnectionPool

    params = connection.get_connection_params()
    # created closed, as Django creates it (a process whose first database use is the gateway's: the matcher)
    pool = ConnectionPool(kwargs=params, min_size=1, max_size=2, timeout=2, open=False)
    try:
        reserve_pool_connections(pool, 3)
        assert pool.max_size == 5
        held = [pool.getconn() for _ in range(3)]  # the gateway's threads
        got, errors = [], []

        def request_thread():
            try:
                got.append(pool.getconn(timeout=2))
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=request_thread) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(got) == 2
        for conn in held + got:
            pool.putconn(conn)
    finally:
        pool.close()
    reserve_pool_connections(None, 3)  # no pool configured: nothing to grow
