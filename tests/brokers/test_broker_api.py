"""The broker API: auth, scopes, tenant boundary, clients, money through the ledger, every 4xx moves nothing."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from rest_framework.test import APIClient

from brokers.choices import ALL_SCOPES, Scope
from brokers.models import Broker, BrokerApiKey, BrokerClient, Transfer, Withdrawal
from brokers.services import brokers as broker_services
from brokers.services import clients as client_services
from exchanges.ledger.selectors import ledger_violations

from .conftest import USER_WALLET, api_for, balance, fund, make_broker

pytestmark = pytest.mark.django_db

B = "/api/v1/broker"

# (method, path, scope, body) for every endpoint; {uid} a client's user_id, {wid} a withdrawal id
ENDPOINTS = [
    ("post", "/sub-brokers", Scope.SUB_BROKERS_CREATE, {"name": "sub-x"}),
    ("get", "/sub-brokers", Scope.SUB_BROKERS_LIST, None),
    ("post", "/clients/{uid}/upgrade-to-broker", Scope.SUB_BROKERS_UPGRADE, {}),
    ("get", "/balance", Scope.BALANCE_READ, None),
    ("get", "/clients", Scope.CLIENTS_LIST, None),
    ("post", "/clients", Scope.CLIENTS_CREATE, {"user_id": "new-1"}),
    ("get", "/clients/{uid}/balance", Scope.CLIENTS_BALANCE, None),
    ("get", "/clients/{uid}/orders", Scope.CLIENTS_ORDERS, None),
    ("get", "/clients/{uid}/positions", Scope.CLIENTS_POSITIONS, None),
    ("get", "/clients/{uid}/withdrawals", Scope.CLIENTS_WITHDRAWALS, None),
    ("post", "/clients/{uid}/deposit", Scope.TRANSFER_DEPOSIT, {"amount": "5"}),
    ("post", "/clients/{uid}/withdraw", Scope.TRANSFER_WITHDRAW, {"amount": "5", "wallet_address": USER_WALLET}),
    ("get", "/transfer/history", Scope.TRANSFER_HISTORY, None),
    ("get", "/withdrawal/{wid}", Scope.WITHDRAWAL_READ, None),
    ("get", "/withdrawals/pending", Scope.WITHDRAWAL_LIST, None),
    ("post", "/withdrawal/{wid}/lock", Scope.WITHDRAWAL_LOCK, None),
    ("post", "/withdrawal/{wid}/unlock", Scope.WITHDRAWAL_UNLOCK, None),
    ("post", "/withdrawal/{wid}/cancel", Scope.TRANSFER_WITHDRAW, None),  # ours, beyond the seed's table
]
CLIENT_ENDPOINTS = [e for e in ENDPOINTS if "{uid}" in e[1] or "{wid}" in e[1]]


def call(api: APIClient, method: str, path: str, body=None, **kw):
    if method == "get":
        return api.get(B + path, **kw)
    return api.post(B + path, body if body is not None else {}, format="json", **kw)


def new_client(broker, user_id="u1", amount=None):
    client = client_services.client_create(broker=broker, user_id=user_id, wallet_address=USER_WALLET)
    if amount is not None:
        client_services.client_deposit(broker=broker, client=client, amount=D(str(amount)))
    return client


def money_snapshot():
    """Every balance and hold in the ledger, plus the brokerage's rows: a rejected request changes none."""
    from exchanges.ledger.models import Hold, LedgerAccount

    return (
        sorted(LedgerAccount.objects.values_list("pk", "balance", "held")),
        sorted(Hold.objects.values_list("pk", "remaining", "status")),
        Transfer.objects.count(),
        Withdrawal.objects.count(),
    )


# --- authentication and scopes -------------------------------------------------------------------------------


def test_no_key_bad_key_and_revoked_key_answer_401_with_the_error_shape(acme):
    broker, _ = acme
    for api in (APIClient(), api_for("bk_nope"), api_for("bk_0123456789_wrong")):
        r = api.get(B + "/balance")
        assert r.status_code == 401
        assert set(r.json()) == {"error"}
    key, raw = broker_services.broker_key_create(broker=broker, scopes=ALL_SCOPES)
    assert api_for(raw).get(B + "/balance").status_code == 200
    broker_services.broker_key_revoke(api_key=key)
    assert api_for(raw).get(B + "/balance").status_code == 401


def test_keys_are_stored_hashed_and_shaped_bk():
    raw, prefix, key_hash = BrokerApiKey.generate()
    assert raw.startswith(f"bk_{prefix}_") and key_hash == BrokerApiKey.hash_key(raw) and raw not in key_hash


@pytest.mark.parametrize("method,path,scope,body", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_each_endpoint_answers_403_without_its_scope_and_moves_nothing(method, path, scope, body):
    broker, _ = make_broker("scoped")
    fund(broker, "100")
    client = new_client(broker, "u1", amount="50")
    from brokers.services.withdrawals import withdrawal_request

    wd, _ = withdrawal_request(client=client, amount=D("10"), wallet_address=USER_WALLET)
    _key, raw = broker_services.broker_key_create(broker=broker, scopes=[s for s in ALL_SCOPES if s != scope])
    before = money_snapshot()
    r = call(api_for(raw), method, path.format(uid=client.user_id, wid=wd.pk), body)
    assert r.status_code == 403, r.content
    assert r.json() == {"error": f"Missing scope: {scope}"}
    assert money_snapshot() == before


@pytest.mark.parametrize("method,path,scope,body", CLIENT_ENDPOINTS, ids=[f"{m} {p}" for m, p, *_ in CLIENT_ENDPOINTS])
def test_another_brokers_client_or_withdrawal_answers_404_by_its_correct_id(acme, rival, method, path, scope, body):
    broker, _ = acme
    _rival, rival_api = rival
    client = new_client(broker, "u1", amount="50")
    from brokers.services.withdrawals import withdrawal_request

    wd, _ = withdrawal_request(client=client, amount=D("10"), wallet_address=USER_WALLET)
    before = money_snapshot()
    r = call(rival_api, method, path.format(uid=client.user_id, wid=wd.pk), body)
    assert r.status_code == 404, r.content
    assert set(r.json()) == {"error"}
    assert money_snapshot() == before


def test_a_parent_does_not_reach_its_sub_brokers_clients_by_user_id(acme):
    parent, parent_api = acme
    sub, _ = make_broker("acme-sub", parent=parent)
    new_client(sub, "u9")
    assert parent_api.get(B + "/clients/u9/balance").status_code == 404
    assert parent_api.get(B + "/clients").json()["total"] == 0


# --- clients ---------------------------------------------------------------------------------------------------


def test_create_client_makes_a_trader_named_after_the_broker_short_code_and_409_on_duplicate(acme):
    broker, api = acme
    r = api.post(B + "/clients", {"user_id": "usr_12345", "email": "a@example.com"}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["user_id"] == "usr_12345"
    assert body["username"] == f"sso_{broker.short}_usr_12345"
    again = api.post(B + "/clients", {"user_id": "usr_12345"}, format="json")
    assert again.status_code == 409
    assert again.json() == {
        "error": "Client already exists: user_id=usr_12345",
        "username": f"sso_{broker.short}_usr_12345",
    }
    assert BrokerClient.objects.filter(broker=broker).count() == 1


@pytest.mark.parametrize("body", [{}, {"user_id": ""}, {"user_id": "a b"}, {"user_id": True}, {"user_id": "x" * 101}])
def test_create_client_refuses_bad_user_ids(acme, body):
    _broker, api = acme
    r = api.post(B + "/clients", body, format="json")
    assert r.status_code == 400 and "user_id" in r.json()["error"]
    assert BrokerClient.objects.count() == 0


def test_integer_user_id_is_the_same_account_as_its_string(acme):
    broker, api = acme
    assert api.post(B + "/clients", {"user_id": 42}, format="json").status_code == 201
    assert api.post(B + "/clients", {"user_id": "42"}, format="json").status_code == 409


def test_client_list_has_balances_pages_and_a_constant_number_of_queries(acme, django_assert_max_num_queries):
    broker, api = acme
    for i in range(7):
        new_client(broker, f"u{i}", amount=i + 1)
    with django_assert_max_num_queries(6):  # key, last_used, count, page (+ throttle none: cache)
        r = api.get(B + "/clients?page=2&page_size=3")
    body = r.json()
    assert (body["total"], body["page"], body["page_size"], body["total_pages"]) == (7, 2, 3, 3)
    assert [c["user_id"] for c in body["clients"]] == ["u3", "u4", "u5"]  # ordered by user_id
    assert body["clients"][0]["balance"] == {"asset": "DCT", "balance": 4.0, "held": 0.0, "available": 4.0}
    assert api.get(B + "/clients?page=9").json()["clients"] == []
    assert api.get(B + "/clients?page_size=0").status_code == 400
    assert api.get(B + "/clients?page=x").status_code == 400


def test_client_balance_orders_positions_and_withdrawals(acme):
    broker, api = acme
    new_client(broker, "u1", amount="12.5")
    assert api.get(B + "/clients/u1/balance").json() == {
        "user_id": "u1",
        "asset": "DCT",
        "balance": 12.5,
        "held": 0.0,
        "available": 12.5,
    }
    orders = api.get(B + "/clients/u1/orders").json()
    assert orders["user_id"] == "u1" and orders["orders"] == [] and orders["total"] == 0
    positions = api.get(B + "/clients/u1/positions").json()
    assert positions["positions"] == [{"asset": "DCT", "balance": 12.5, "held": 0.0, "available": 12.5}]
    assert api.get(B + "/clients/u1/withdrawals").json()["withdrawals"] == []


# --- deposits --------------------------------------------------------------------------------------------------


def test_deposit_moves_dct_from_the_broker_to_the_client_with_a_transfer_record(acme):
    broker, api = acme
    client = new_client(broker)
    r = api.post(B + "/clients/u1/deposit", {"amount": 100.25}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["balance"]["available"] == 100.25
    assert balance(broker.account) == (D("899.75"), D("0"))
    assert balance(client.account) == (D("100.25"), D("0"))
    t = Transfer.objects.get(client=client)
    assert (t.kind, t.amount, t.ledger_transaction_id is not None) == ("deposit", D("100.25"), True)
    history = api.get(B + "/transfer/history?type=deposit").json()
    assert [(h["type"], h["user_id"], h["amount"]) for h in history["transfers"]] == [("deposit", "u1", 100.25)]
    assert api.get(B + "/transfer/history?type=funding").json()["total"] == 1
    assert api.get(B + "/transfer/history?user_id=u1").json()["total"] == 1
    assert api.get(B + "/transfer/history?type=bogus").status_code == 400
    assert ledger_violations() == []


@pytest.mark.parametrize(
    "body,needle",
    [
        ({}, "amount is required"),
        ({"amount": -5}, "positive"),
        ({"amount": 0}, "positive"),
        ({"amount": "abc"}, "number"),
        ({"amount": "1e400"}, "too large"),
        ({"amount": "NaN"}, "finite"),
        ({"amount": True}, "number"),
        ({"amount": "0.000000001"}, "8 decimal places"),
        ({"amount": 1000.01}, "Insufficient broker balance"),
        ({"amount": [1]}, "number"),
    ],
)
def test_bad_deposits_answer_400_and_move_nothing(acme, body, needle):
    broker, api = acme
    new_client(broker)
    before = money_snapshot()
    r = api.post(B + "/clients/u1/deposit", body, format="json")
    assert r.status_code == 400, r.content
    assert needle in r.json()["error"]
    assert money_snapshot() == before


def test_malformed_json_and_non_object_bodies_answer_400(acme):
    broker, api = acme
    new_client(broker)
    before = money_snapshot()
    r = api.post(B + "/clients/u1/deposit", "{not json", content_type="application/json")
    assert r.status_code == 400 and "error" in r.json()
    r = api.post(B + "/clients/u1/deposit", [1, 2], format="json")
    assert r.status_code == 400 and r.json() == {"error": "the request body must be a JSON object"}
    assert money_snapshot() == before


def test_a_retried_deposit_with_the_same_idempotency_key_moves_money_once(acme):
    broker, api = acme
    client = new_client(broker)
    for _ in range(3):
        r = api.post(B + "/clients/u1/deposit", {"amount": "10"}, format="json", HTTP_IDEMPOTENCY_KEY="dep-1")
        assert r.status_code == 200
    assert balance(client.account) == (D("10"), D("0"))
    assert Transfer.objects.filter(client=client).count() == 1
    r = api.post(B + "/clients/u1/deposit", {"amount": "11"}, format="json", HTTP_IDEMPOTENCY_KEY="dep-1")
    assert r.status_code == 409
    assert balance(client.account) == (D("10"), D("0"))


def test_broker_balance_endpoint(acme):
    broker, api = acme
    assert api.get(B + "/balance").json() == {
        "broker_id": str(broker.pk),
        "asset": "DCT",
        "balance": 1000.0,
        "held": 0.0,
        "available": 1000.0,
    }


# --- sub-brokers and upgrade -------------------------------------------------------------------------------------


def test_sub_brokers_are_created_under_the_caller_and_listed_as_its_subtree(acme, rival):
    broker, api = acme
    body = {"name": "acme-eu", "username": "acme-eu-admin", "password": "S3cret-pass"}
    r = api.post(B + "/sub-brokers", body, format="json")
    assert r.status_code == 201, r.content
    sub = Broker.objects.get(name="acme-eu")
    assert (sub.parent_id, sub.brand_root_id) == (broker.pk, broker.pk)
    assert r.json()["parent_broker_id"] == str(broker.pk) and r.json()["role"] == "broker"
    assert sub.staff.get().user.username == "acme-eu-admin"
    make_broker("acme-eu-2", parent=sub)
    listed = api.get(B + "/sub-brokers").json()
    assert [s["name"] for s in listed["sub_brokers"]] == ["acme-eu", "acme-eu-2"]
    assert rival[1].get(B + "/sub-brokers").json()["sub_brokers"] == []
    assert api.post(B + "/sub-brokers", {"name": "acme-eu"}, format="json").status_code == 409
    assert api.post(B + "/sub-brokers", {}, format="json").status_code == 400


def test_upgrade_keeps_balance_and_takes_the_parent_from_the_original_service_broker(acme):
    broker, api = acme
    client = new_client(broker, "usr_12345", amount="40")
    r = api.post(B + "/clients/usr_12345/upgrade-to-broker", {"password": "NewBrokerPass123"}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["ok"] is True and body["role"] == "broker" and body["user_id"] == "usr_12345"
    assert body["username"] == f"sso_{broker.short}_usr_12345"
    assert body["parent_broker_id"] == str(broker.pk) and body["brand_root_id"] == str(broker.pk)
    upgraded = Broker.objects.get(pk=body["broker_id"])
    assert upgraded.account_id == client.account_id
    assert balance(upgraded.account) == (D("40"), D("0"))
    assert upgraded.user.check_password("NewBrokerPass123") and upgraded.user.is_staff
    assert BrokerClient.objects.filter(pk=client.pk, broker=broker).exists()  # still served by acme
    again = api.post(B + "/clients/usr_12345/upgrade-to-broker", {}, format="json")
    assert again.status_code == 409


def test_upgrade_by_an_ancestor_service_keeps_the_original_broker_as_parent(acme):
    """Called through the service by someone above (the console, an admin): the parent is still the client's broker."""
    broker, _api = acme
    sub, _ = make_broker("acme-sub", parent=broker)
    client = new_client(sub, "u7")
    upgraded = broker_services.client_upgrade_to_broker(client=client)
    assert upgraded.parent_id == sub.pk and upgraded.brand_root_id == broker.pk


def test_unknown_path_under_the_broker_api_is_404_json(acme):
    _broker, api = acme
    r = api.get(B + "/nope")
    assert r.status_code == 404


def test_rate_limit_per_broker_answers_429_with_retry_after(acme, settings):
    settings.BROKER_API_RATE_PER_MINUTE = 3
    _broker, api = acme
    codes = [api.get(B + "/balance").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = api.get(B + "/balance")
    assert r.status_code == 429 and "Retry-After" in r and set(r.json()) == {"error"}


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"name": "x1", "logout_redirect_url": "javascript:alert(1)"}, "logout_redirect_url"),
        ({"name": "x2", "wallet_address": "0x12"}, "wallet_address"),
        ({"name": "x3", "username": "a b", "password": "long-enough-1"}, "username"),
        ({"name": "x4", "username": "ok-user", "password": "short"}, "password"),
        ({"name": 5}, "name must be a string"),
    ],
)
def test_bad_sub_broker_requests_answer_400_and_create_nothing(acme, body, needle):
    _broker, api = acme
    r = api.post(B + "/sub-brokers", body, format="json")
    assert r.status_code == 400 and needle in r.json()["error"], r.content
    assert Broker.objects.count() == 1
