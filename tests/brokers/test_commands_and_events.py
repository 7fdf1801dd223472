"""``manage.py create_broker`` and the webhook events the brokerage writes in its transactions."""

from __future__ import annotations

import io
from decimal import Decimal as D

import pytest
from django.core.management import CommandError, call_command

from brokers.errors import BadRequest
from brokers.models import Broker, BrokerApiKey
from brokers.services import clients as client_services
from brokers.services import withdrawals as withdrawal_services
from brokers.services.brokers import broker_sso_secret

from .conftest import USER_WALLET, api_for, fund, make_broker

pytestmark = pytest.mark.django_db


def run(*args) -> list[str]:
    out = io.StringIO()
    call_command("create_broker", *args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_create_broker_prints_a_working_key_alone_on_the_last_line_and_is_rerunnable():
    lines = run("acme", "--all-scopes", "--tenant-code", "rock-3", "--wallet", "0x" + "ab" * 20)
    raw = lines[-1]
    assert raw.startswith("bk_") and " " not in raw
    broker = Broker.objects.get(name="acme")
    assert broker.tenant_code == "rock-3" and broker.wallet_address == "0x" + "ab" * 20
    assert len(broker_sso_secret(broker)) >= 32
    assert not any(broker_sso_secret(broker) in part for part in [broker.sso_secret_encrypted])  # encrypted at rest
    assert api_for(raw).get("/api/v1/broker/balance").status_code == 200
    lines2 = run("acme", "--scopes", "balance:read")
    assert Broker.objects.filter(name="acme").count() == 1
    assert BrokerApiKey.objects.get(prefix=BrokerApiKey.parse_prefix(lines2[-1])).scopes == ["balance:read"]
    assert api_for(lines2[-1]).get("/api/v1/broker/clients").status_code == 403


def test_create_broker_under_a_parent_and_its_refusals():
    run("acme", "--all-scopes")
    run("acme-sub", "--parent", "acme", "--scopes", "clients:list", "clients:create")
    sub = Broker.objects.get(name="acme-sub")
    assert sub.parent.name == "acme" and sub.path.startswith(sub.parent.path)
    with pytest.raises(CommandError):
        run("x", "--parent", "nope", "--all-scopes")
    with pytest.raises(CommandError):
        run("y", "--scopes", "not:a-scope")
    with pytest.raises(CommandError):
        run("z")


def test_create_broker_with_a_webhook_url_prints_its_secret_once():
    lines = run("hooked", "--all-scopes", "--webhook-url", "https://example.com/hook")
    assert any("signing secret (shown once)" in line for line in lines)
    assert lines[-1].startswith("bk_")


def test_events_are_written_to_the_outbox_in_the_transaction_of_the_change():
    from brokers.models.webhooks import WebhookDelivery
    from brokers.services.webhooks import webhook_endpoint_set

    broker, _ = make_broker("evented")
    webhook_endpoint_set(broker=broker, url="https://example.com/hook")
    fund(broker, "100")
    client = client_services.client_create(broker=broker, user_id="u1")
    client_services.client_deposit(broker=broker, client=client, amount=D("50"))
    w, _ = withdrawal_services.withdrawal_request(client=client, amount=D("10"), wallet_address=USER_WALLET)
    withdrawal_services.withdrawal_lock(broker=broker, withdrawal_id=w.pk)
    types = list(WebhookDelivery.objects.filter(broker=broker).order_by("id").values_list("event_type", flat=True))
    assert types == [
        "transfer.created",  # the funding
        "client.created",
        "deposit.completed",
        "transfer.created",
        "withdrawal.pending",
        "withdrawal.broker_locked",
    ]
    # a refused deposit writes no event
    with pytest.raises(BadRequest):
        client_services.client_deposit(broker=broker, client=client, amount=D("1000"))
    assert WebhookDelivery.objects.filter(broker=broker).count() == len(types)


def test_fund_broker_credits_once_per_key():
    run("acme", "--all-scopes")
    broker = Broker.objects.get(name="acme")
    for _ in range(2):
        call_command("fund_broker", "acme", "250.5", "--key", "ops-1", stdout=io.StringIO())
    broker.account.refresh_from_db()
    assert broker.account.balance == D("250.5")
    with pytest.raises(CommandError):
        call_command("fund_broker", "acme", "-1", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("fund_broker", "nope", "1", stdout=io.StringIO())
