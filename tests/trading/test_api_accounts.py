from decimal import Decimal

import pytest

from exchanges.choices import Exchange
from tests.factories import AccountFactory, ClientFactory
from trading.api.serializers import AccountListSchema, AccountSchema, account_row
from trading.choices import OddsFormat

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-private-key-0xdeadbeef"


def test_accounts_render_the_seed_shape(api, mm_client):
    account = AccountFactory(
        client=mm_client[0],
        username="0x1234...abcd",
        max_outcome_stake=Decimal("1000"),
        balance=Decimal("50000.25"),
    )

    resp = api.get("/api/v1/accounts")

    assert resp.status_code == 200
    assert resp.json() == {
        "oddsFormat": "decimal",
        "accounts": [
            {
                "username": "0x1234...abcd",
                "exchange": "polymarket",
                "active": True,
                "maxOutcomeStake": 1000.0,
                "balance": 50000.25,
                "createdAt": account.created_at.isoformat().replace("+00:00", "Z"),
            }
        ],
        "count": 1,
    }


def test_odds_format_is_the_callers(api, mm_client):
    client = mm_client[0]
    client.odds_format = OddsFormat.AMERICAN
    client.save(update_fields=["odds_format"])

    assert api.get("/api/v1/accounts").json()["oddsFormat"] == "american"


def test_only_the_callers_accounts_are_listed_oldest_first(api, mm_client, other_client):
    first = AccountFactory(client=mm_client[0], exchange=Exchange.POLYMARKET)
    second = AccountFactory(client=mm_client[0], exchange=Exchange.KALSHI, active=False)
    AccountFactory(client=other_client[0], username="theirs")

    body = api.get("/api/v1/accounts").json()

    assert [a["username"] for a in body["accounts"]] == [first.username, second.username]
    assert body["count"] == 2
    assert body["accounts"][1]["active"] is False
    assert "theirs" not in str(body)


def test_accounts_filter_by_exchange(api, mm_client):
    AccountFactory(client=mm_client[0], exchange=Exchange.POLYMARKET)
    kalshi = AccountFactory(client=mm_client[0], exchange=Exchange.KALSHI)

    body = api.get("/api/v1/accounts?exchange=kalshi").json()

    assert [a["username"] for a in body["accounts"]] == [kalshi.username] and body["count"] == 1


def test_unknown_exchange_filter_is_400(api):
    resp = api.get("/api/v1/accounts?exchange=nasdaq")
    assert resp.status_code == 400 and resp.json()["parameter"] == "exchange"


def test_credentials_never_appear_even_when_set(api, mm_client):
    account = AccountFactory(client=mm_client[0])
    account.set_credentials({"privateKey": SECRET, "apiKey": "key-123", "passphrase": "pw-456"})
    account.save()
    assert account.has_credentials  # given: credentials really are stored

    resp = api.get("/api/v1/accounts")

    text = resp.content.decode()
    assert resp.status_code == 200
    for needle in (SECRET, "key-123", "pw-456", account.credentials_encrypted, "credential", "privateKey"):
        assert needle not in text
    assert set(resp.json()["accounts"][0]) == set(AccountSchema().fields)


def test_a_client_with_no_accounts_gets_an_empty_list(api):
    assert api.get("/api/v1/accounts").json() == {"oddsFormat": "decimal", "accounts": [], "count": 0}


def test_fifty_accounts_cost_a_constant_number_of_queries(api, mm_client, django_assert_max_num_queries):
    for _ in range(50):
        AccountFactory(client=mm_client[0])

    with django_assert_max_num_queries(3):  # key lookup, last-used stamp, the accounts
        assert api.get("/api/v1/accounts").json()["count"] == 50


def test_another_clients_accounts_are_invisible_even_when_it_is_the_only_one(api, db):
    stranger = ClientFactory(name="stranger")
    AccountFactory(client=stranger, username="stranger-wallet")

    assert api.get("/api/v1/accounts").json()["accounts"] == []


def test_account_schema_fields_equal_the_rendered_keys(mm_client, api):
    assert set(AccountSchema().fields) == set(account_row(AccountFactory(client=mm_client[0])))
    assert set(AccountListSchema().fields) == set(api.get("/api/v1/accounts").json())
