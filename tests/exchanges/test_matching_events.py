"""What the matching service tells others after commit: stream events and ``trades_committed``;
prediction-market pairs."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from exchanges import signals
from exchanges.errors import ExchangeError
from exchanges.models import ExchangeTrade
from exchanges.services.orders import order_place

from .conftest import make_market, make_trader


def test_after_commit_publishes_documented_events_and_sends_trades_committed(
    market, alice, bob, monkeypatch, django_capture_on_commit_callbacks
):
    published: list[dict] = []
    monkeypatch.setattr("exchanges.streams.publish.publish", lambda events, audience=None: published.extend(events))
    monkeypatch.setattr("exchanges.streams.publish.listened", lambda groups: set(groups))  # everyone listens
    received = []

    def receiver(sender, trades, mode, **kwargs):
        received.append(([t.trade_id for t in trades], mode))

    signals.trades_committed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            order_place(trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("10"), price=D("0.003"))
        with django_capture_on_commit_callbacks(execute=True):
            order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("4"), price=D("0.003"))
    finally:
        signals.trades_committed.disconnect(receiver)
    trade = ExchangeTrade.objects.get()
    assert received == [([trade.trade_id], "live")]
    types = [e["type"] for e in published]
    assert {"book", "trade", "order", "fill", "balance"} <= set(types)
    books = [e for e in published if e["type"] == "book"]
    assert [e["sequence"] for e in books] == [1, 2]  # rest of the ask, then the ask level after the fill
    assert books[1]["asks"] == [(D("0.003"), D("6"))] and books[1]["symbol"] == "vaix" and books[1]["mode"] == "live"
    t = next(e for e in published if e["type"] == "trade")
    assert (t["price"], t["quantity"], t["taker_side"], t["trade_id"]) == (D("0.003"), D("4"), "buy", trade.trade_id)
    fills = [e for e in published if e["type"] == "fill"]
    assert {f["trader_id"] for f in fills} == {alice.pk, bob.pk}
    assert {f["fill"]["side"] for f in fills} == {"buy", "sell"}
    orders = [e for e in published if e["type"] == "order" and e["trader_id"] == alice.pk]
    assert orders[-1]["order"]["status"] == "partially_filled" and orders[-1]["order"]["remaining_quantity"] == "6"
    bal = [e for e in published if e["type"] == "balance" and e["trader_id"] == bob.pk and e["asset"] == "USDC"]
    assert bal[-1]["locked"] == D("0")


@pytest.mark.django_db(transaction=True)
def test_private_events_are_rendered_and_sent_only_for_traders_whose_private_stream_is_open(
    market, alice, bob, monkeypatch, settings
):
    """The audience check asks the real channel layer (Redis in CI) which groups have members: a trader
    with no private stream gets no order, fill or balance events; one with a stream gets them all."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from exchanges.streams import publish as pub

    layer = get_channel_layer()
    sent: list[tuple[list[dict], object]] = []
    real_publish = pub.publish
    monkeypatch.setattr(
        pub, "publish", lambda events, audience=None: (sent.append((events, audience)), real_publish(events, audience))
    )

    channel = f"test-private-{bob.pk}"
    async_to_sync(layer.group_add)(pub.private_group(bob.pk), channel)
    try:
        assert pub.listened([pub.private_group(alice.pk), pub.private_group(bob.pk)]) == {pub.private_group(bob.pk)}
        order_place(trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("10"), price=D("0.003"))
        order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("4"), price=D("0.003"))
        pub.flush()
        events = [e for batch, _ in sent for e in batch]
        private = [e for e in events if e["type"] in ("order", "fill", "balance")]
        assert private and {e["trader_id"] for e in private} == {bob.pk}
        assert {e["type"] for e in private} == {"order", "fill", "balance"}
        assert {"book", "trade"} <= {e["type"] for e in events}  # public events are still built
        # bob's stream got his order, fill and balances in one message (his one transaction)
        got = async_to_sync(layer.receive)(channel)
        assert got["type"] == "xprivate.events"
        kinds = {json.loads(e["frame"])["type"] for e in got["events"]}
        assert kinds == {"order_update", "fill", "balance_update"}
    finally:
        async_to_sync(layer.group_discard)(pub.private_group(bob.pk), channel)
    assert pub.listened([pub.private_group(bob.pk)]) == set()


def test_prediction_market_prices_stay_between_one_and_ninety_nine_cents(db):
    make_market(
        "ars-win",
        kind="prediction",
        base_asset="ARSWIN",
        tick_size="0.01",
        lot_size="1",
        min_order_size="1",
        fixture_ref="fx-123",
        outcome_ref="home",
    )
    t = make_trader("p1", funds={"USDC": 100, "ARSWIN": 100})
    for price in ("0.00", "1.00", "0.995"):
        with pytest.raises(ExchangeError):
            order_place(trader=t, symbol="ars-win", side="buy", type="limit", quantity=D("1"), price=D(price))
    order_place(trader=t, symbol="ars-win", side="buy", type="limit", quantity=D("10"), price=D("0.55"))
    # a stop_market buy holds against the highest price the pair allows
    o = order_place(trader=t, symbol="ars-win", side="sell", type="limit", quantity=D("1"), price=D("0.60"))
    assert o.status == "open"
    stop = order_place(
        trader=t, symbol="ars-win", side="buy", type="stop_market", quantity=D("10"), stop_price=D("0.70")
    )
    assert stop.status == "waiting_trigger" and stop.hold.amount == D("9.9")


def test_stop_market_buys_are_refused_on_uncapped_token_pairs(market, alice):
    with pytest.raises(ExchangeError) as exc:
        order_place(trader=alice, symbol="vaix", side="buy", type="stop_market", quantity=D("10"), stop_price=D("0.01"))
    assert exc.value.code == "unsupported_order_type"
