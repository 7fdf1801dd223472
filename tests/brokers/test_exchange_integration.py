"""The brokerage with the house exchange: an SSO session trades and withdraws, the broker reads the orders."""

from __future__ import annotations

import time
from decimal import Decimal as D

import jwt
import pytest
from rest_framework.test import APIClient

from brokers.models import Withdrawal
from brokers.services import clients as client_services
from brokers.services.brokers import broker_sso_secret_set
from exchanges.services import fees as fee_service
from exchanges.services import matching
from exchanges.services.markets import market_upsert

from .conftest import USER_WALLET, api_for, balance, fund, make_broker

pytestmark = pytest.mark.django_db
EX = "/api/v1/exchange"
SECRET = "x" * 40


@pytest.fixture(autouse=True)
def _fresh_exchange_caches():
    matching.local_books_clear()
    matching.accounts_cache_clear()
    fee_service.tiers_reset()
    yield
    matching.local_books_clear()
    matching.accounts_cache_clear()
    fee_service.tiers_reset()


@pytest.fixture
def setup():
    broker, raw = make_broker("acme", tenant_code="acme-1")
    broker_sso_secret_set(broker=broker, secret=SECRET)
    fund(broker, "1000")
    client = client_services.client_create(broker=broker, user_id="u1")
    client_services.client_deposit(broker=broker, client=client, amount=D("100"))
    market_upsert(symbol="dct", base_asset="DCT", tick_size="0.0001", lot_size="1", min_order_size="1")
    sso = jwt.encode({"user_id": "u1", "tenant_code": "acme-1", "exp": int(time.time()) + 60}, SECRET, "HS256")
    session = APIClient().post("/api/auth/sso/token", {"token": sso}, format="json").json()["token"]
    trader_api = APIClient()
    trader_api.credentials(HTTP_AUTHORIZATION=f"Bearer {session}")
    return broker, api_for(raw), client, trader_api


def test_an_sso_session_withdraws_through_the_exchange_into_the_otc_state_machine(setup):
    broker, broker_api, client, trader_api = setup
    r = trader_api.post(f"{EX}/dct/withdraw", {"amount": "40", "destination": USER_WALLET}, format="json")
    assert r.status_code in (200, 201, 202), r.content
    w = Withdrawal.objects.get(client=client)
    assert (w.status, w.amount, w.net_amount) == ("pending", D("40"), D("39.6"))
    assert balance(client.account) == (D("100"), D("40"))  # the exchange's hold, adopted: held once
    listed = broker_api.get("/api/v1/broker/withdrawals/pending").json()["withdrawals"]
    assert [x["id"] for x in listed] == [str(w.pk)]
    lock = broker_api.post(f"/api/v1/broker/withdrawal/{w.pk}/lock").json()
    assert (lock["status"], lock["amount"], lock["userWalletAddress"]) == ("broker_locked", 39.6, USER_WALLET)


def test_the_broker_reads_its_clients_exchange_orders_and_positions(setup):
    _broker, broker_api, client, trader_api = setup
    r = trader_api.post(f"{EX}/dct/orders", {"side": "sell", "quantity": "10", "price": "2.5"}, format="json")
    assert r.status_code in (200, 201), r.content
    orders = broker_api.get("/api/v1/broker/clients/u1/orders").json()
    assert orders["total"] == 1
    o = orders["orders"][0]
    assert (o["symbol"], o["side"], o["quantity"], o["status"]) == ("dct", "sell", 10.0, "open")
    positions = broker_api.get("/api/v1/broker/clients/u1/positions").json()
    assert positions["open_orders"] == 1
    assert positions["positions"] == [{"asset": "DCT", "balance": 100.0, "held": 10.0, "available": 90.0}]


def test_the_clients_trade_history_lists_its_fills_with_its_own_side(setup):
    from decimal import Decimal

    from exchanges.api.authentication import issue_jwt
    from exchanges.services.traders import trader_fund, trader_get_or_create

    _broker, broker_api, _client, trader_api = setup
    buyer, _ = trader_get_or_create(username="buyer")
    trader_fund(trader=buyer, asset="USDC", amount=Decimal("1000"), mode="live", idempotency_key="t:buyer")
    buyer_api = APIClient()
    buyer_api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_jwt(buyer)}")
    assert trader_api.post(
        f"{EX}/dct/orders", {"side": "sell", "quantity": "10", "price": "2.5"}, format="json"
    ).status_code in (200, 201)
    r = buyer_api.post(f"{EX}/dct/orders", {"side": "buy", "quantity": "4", "price": "2.5"}, format="json")
    assert r.status_code in (200, 201), r.content
    body = broker_api.get("/api/v1/broker/clients/u1/orders").json()
    assert [(t["side"], t["role"], t["price"], t["quantity"]) for t in body["trades"]] == [("sell", "maker", 2.5, 4.0)]
    assert body["orders"][0]["filled_quantity"] == 4.0


def test_the_exchanges_withdrawal_row_follows_the_brokerage_to_its_end(setup):
    """Paid out by the platform: the exchange's row says completed; cancelled by the user in the
    brokerage: cancelled (it used to stay ``submitted`` for ever)."""
    from datetime import timedelta

    from django.utils import timezone

    from brokers.services import withdrawals as wsvc
    from exchanges.models import ExchangeWithdrawal

    _broker, _broker_api, client, trader_api = setup
    first = trader_api.post(f"{EX}/dct/withdraw", {"amount": "30", "destination": USER_WALLET}, format="json")
    second = trader_api.post(f"{EX}/dct/withdraw", {"amount": "20", "destination": USER_WALLET}, format="json")
    assert first.status_code == second.status_code == 202
    rows = {r.withdrawal_id: r for r in ExchangeWithdrawal.objects.all()}
    assert {r.status for r in rows.values()} == {"submitted"}
    paid, cancelled = (Withdrawal.objects.get(client=client, amount=D(a)) for a in ("30", "20"))

    wsvc.withdrawal_cancel(withdrawal_id=cancelled.pk, client=client)
    Withdrawal.objects.filter(pk=paid.pk).update(cooling_ends_at=timezone.now() - timedelta(seconds=1))
    wsvc.withdrawal_start_processing(withdrawal_id=paid.pk)
    wsvc.withdrawal_platform_pay(withdrawal_id=paid.pk)

    assert ExchangeWithdrawal.objects.get(withdrawal_id=first.json()["withdrawal_id"]).status == "completed"
    assert ExchangeWithdrawal.objects.get(withdrawal_id=second.json()["withdrawal_id"]).status == "cancelled"
    assert balance(client.account) == (D("70"), D("0"))
