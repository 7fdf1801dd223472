"""Fill webhooks: a live trade on the house exchange by a broker's client becomes a ``fill`` event to
that broker (exchanges.signals.trades_committed -> brokers.receivers), delivered over real HTTP."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.utils import timezone

from brokers.models import WebhookDelivery, WebhookDeliveryStatus
from brokers.services.clients import client_create
from brokers.services.webhooks import webhook_endpoint_set, webhook_fills_emit
from brokers.tasks.webhooks import fill_webhooks_sweep_task
from exchanges.models import ExchangeTrade
from exchanges.services import matching
from exchanges.services.orders import order_place
from exchanges.services.traders import trader_fund
from tests.brokers.conftest import make_broker
from tests.brokers.test_webhooks import Receiver
from tests.exchanges.conftest import make_market, make_trader


@pytest.fixture(autouse=True)
def _fresh_books():
    matching.local_books_clear()
    matching.accounts_cache_clear()
    yield
    matching.local_books_clear()
    matching.accounts_cache_clear()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _fund(trader, mode="live"):
    for asset, amount in (("USDC", "1000"), ("VAIX", "100000")):
        trader_fund(
            trader=trader,
            asset=asset,
            amount=Decimal(amount),
            mode=mode,
            idempotency_key=f"t:{trader.pk}:{asset}:{mode}",
        )


@pytest.fixture
def setup(db, receiver):
    make_market("vaix")
    broker, _raw = make_broker("fills-broker")
    webhook_endpoint_set(broker=broker, url=receiver.url)
    client = client_create(broker=broker, user_id="trader-7")
    _fund(client.trader)
    _fund(client.trader, mode="paper")
    outsider = make_trader("outsider", funds={"USDC": 1000, "VAIX": 100000}, paper_funds={"USDC": 1000, "VAIX": 100000})
    return broker, client, outsider


def test_a_live_fill_of_a_broker_client_is_posted_to_its_broker(
    setup, receiver, eager_celery, django_capture_on_commit_callbacks
):
    broker, client, outsider = setup
    with django_capture_on_commit_callbacks(execute=True):
        order_place(
            trader=outsider, symbol="vaix", side="sell", type="limit", quantity=Decimal("1000"), price=Decimal("0.003")
        )
    with django_capture_on_commit_callbacks(execute=True):
        taker = order_place(
            trader=client.trader,
            symbol="vaix",
            side="buy",
            type="limit",
            quantity=Decimal("400"),
            price=Decimal("0.004"),
            client_order_id="my-7",
        )

    trade = ExchangeTrade.objects.get()
    delivery = WebhookDelivery.objects.get(event_type="fill")
    assert (delivery.broker_id, delivery.event_type, delivery.status) == (
        broker.pk,
        "fill",
        WebhookDeliveryStatus.DELIVERED,
    )
    fills = [r for r in receiver.requests if r["headers"]["X-Webhook-Event"] == "fill"]
    assert len(fills) == 1
    event = json.loads(fills[0]["body"])
    assert event["event"] == "fill"
    data = event["data"]
    assert data["trade_id"] == trade.trade_id
    assert (data["user_id"], data["symbol"], data["side"], data["role"]) == ("trader-7", "vaix", "buy", "taker")
    assert Decimal(data["price"]) == Decimal("0.003") and Decimal(data["quantity"]) == Decimal("400")
    assert (data["order_id"], data["client_order_id"]) == (taker.order_id, "my-7")
    assert Decimal(data["fee"]) == trade.taker_fee and data["fee_asset"] == "VAIX"  # a buyer pays in the base


def test_fills_are_emitted_once_per_trade_and_side(setup, receiver):
    broker, client, outsider = setup
    order_place(
        trader=client.trader, symbol="vaix", side="sell", type="limit", quantity=Decimal("10"), price=Decimal("0.003")
    )
    order_place(
        trader=outsider, symbol="vaix", side="buy", type="limit", quantity=Decimal("10"), price=Decimal("0.003")
    )
    trade = ExchangeTrade.objects.get()
    first = webhook_fills_emit(trade_ids=[trade.pk])
    again = webhook_fills_emit(trade_ids=[trade.pk])
    assert [d.pk for d in first] == [d.pk for d in again]
    assert WebhookDelivery.objects.filter(event_type="fill").count() == 1
    assert json.loads(bytes(first[0].body))["data"]["role"] == "maker"
    assert json.loads(bytes(first[0].body))["data"]["side"] == "sell"


def test_paper_fills_and_outsiders_send_nothing(setup, receiver, eager_celery, django_capture_on_commit_callbacks):
    broker, client, outsider = setup
    with django_capture_on_commit_callbacks(execute=True):
        order_place(
            trader=outsider,
            symbol="vaix",
            side="sell",
            type="limit",
            quantity=Decimal("10"),
            price=Decimal("0.003"),
            mode="paper",
        )
        order_place(
            trader=client.trader,
            symbol="vaix",
            side="buy",
            type="limit",
            quantity=Decimal("10"),
            price=Decimal("0.003"),
            mode="paper",
        )
    assert ExchangeTrade.objects.filter(mode="paper").count() == 1
    other = make_trader("other", funds={"USDC": 1000, "VAIX": 100000})
    with django_capture_on_commit_callbacks(execute=True):
        order_place(
            trader=outsider, symbol="vaix", side="sell", type="limit", quantity=Decimal("10"), price=Decimal("0.003")
        )
        order_place(
            trader=other, symbol="vaix", side="buy", type="limit", quantity=Decimal("10"), price=Decimal("0.003")
        )
    assert ExchangeTrade.objects.filter(mode="live").count() == 1
    assert not WebhookDelivery.objects.filter(event_type="fill").exists()
    assert [r["headers"]["X-Webhook-Event"] for r in receiver.requests] == []  # nothing was posted


def test_the_sweep_writes_fills_whose_receiver_never_ran_and_only_those(setup, receiver):
    broker, client, outsider = setup
    # trades committed without their after-commit signal (the process died): no on-commit callbacks run
    order_place(
        trader=client.trader, symbol="vaix", side="sell", type="limit", quantity=Decimal("10"), price=Decimal("0.003")
    )
    order_place(
        trader=outsider, symbol="vaix", side="buy", type="limit", quantity=Decimal("10"), price=Decimal("0.003")
    )
    assert not WebhookDelivery.objects.filter(event_type="fill").exists()
    ExchangeTrade.objects.update(created_at=timezone.now() - dt.timedelta(seconds=30))

    fill_webhooks_sweep_task()
    fill_webhooks_sweep_task()  # again: nothing new
    fill = WebhookDelivery.objects.get(event_type="fill")
    assert json.loads(bytes(fill.body))["data"]["trade_id"] == ExchangeTrade.objects.get().trade_id

    # too old for the sweep's window: left alone
    WebhookDelivery.objects.all().delete()
    ExchangeTrade.objects.update(created_at=timezone.now() - dt.timedelta(hours=1))
    fill_webhooks_sweep_task()
    assert not WebhookDelivery.objects.filter(event_type="fill").exists()
