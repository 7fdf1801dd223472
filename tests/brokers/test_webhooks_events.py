"""End to end: broker API calls produce signed webhooks, delivered over real HTTP after each commit
(the brokerage's events -> the outbox -> receivers on loopback that verify every signature)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from brokers import signing
from brokers.models import WebhookDelivery, WebhookDeliveryStatus
from brokers.services.webhooks import webhook_endpoint_set
from tests.brokers.conftest import USER_WALLET, api_for, fund, make_broker
from tests.brokers.test_webhooks import Receiver

B = "/api/v1/broker"


@pytest.fixture
def receivers():
    rs = [Receiver(), Receiver()]
    yield rs
    for r in rs:
        r.stop()


def _events(receiver, secret) -> list[dict]:
    out = []
    for req in receiver.requests:
        assert signing.verify_signature(secret, req["body"], req["headers"]["X-Webhook-Signature"])
        out.append(json.loads(req["body"]))
    return out


def test_api_calls_become_signed_webhooks_to_the_brokers_concerned(
    acme, rival, receivers, eager_celery, django_capture_on_commit_callbacks
):
    parent, parent_api = acme
    sub, sub_raw = make_broker("acme-sub", parent=parent)
    sub_api = api_for(sub_raw)
    fund(sub, "100")
    parent_secret = webhook_endpoint_set(broker=parent, url=receivers[0].url)
    sub_secret = webhook_endpoint_set(broker=sub, url=receivers[1].url)
    rival_broker, _ = rival

    with django_capture_on_commit_callbacks(execute=True):
        r = sub_api.post(B + "/clients", {"user_id": "u9", "wallet_address": USER_WALLET}, format="json")
        assert r.status_code in (200, 201), r.content
    with django_capture_on_commit_callbacks(execute=True):
        assert sub_api.post(B + "/clients/u9/deposit", {"amount": "40.5"}, format="json").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        r = sub_api.post(B + "/clients/u9/withdraw", {"amount": "10", "wallet_address": USER_WALLET}, format="json")
        assert r.status_code in (200, 201), r.content
    pending = WebhookDelivery.objects.filter(event_type="withdrawal.pending").get()
    wid = json.loads(bytes(pending.body))["data"]["withdrawal_id"]
    with django_capture_on_commit_callbacks(execute=True):  # the parent broker takes the OTC lock
        r = parent_api.post(f"{B}/withdrawal/{wid}/lock", format="json")
        assert r.status_code == 200, r.content

    sub_events = _events(receivers[1], sub_secret)
    kinds = [e["event"] for e in sub_events]
    assert kinds[:2] == ["client.created", "deposit.completed"]
    assert {"transfer.created", "withdrawal.pending", "withdrawal.broker_locked"} <= set(kinds)
    deposit = sub_events[1]["data"]
    assert deposit["user_id"] == "u9" and Decimal(deposit["amount"]) == Decimal("40.5")
    assert isinstance(deposit["amount"], str)  # money as an exact string, never a float
    assert len({e["id"] for e in sub_events}) == len(sub_events)

    # the locking broker hears of the lock too, and of nothing else of its sub-broker's
    parent_events = _events(receivers[0], parent_secret)
    assert [e["event"] for e in parent_events] == ["withdrawal.broker_locked"]
    assert parent_events[0]["data"]["locked_by_broker_id"] == str(parent.pk)
    assert not WebhookDelivery.objects.filter(broker=rival_broker).exists()
    assert not WebhookDelivery.objects.exclude(status=WebhookDeliveryStatus.DELIVERED).exists()
