"""The exchange streams (seed 004 WebSockets) end to end through the matching service: real orders,
real commits, the in-memory channel layer (tests marked ``redis`` use the Redis layer)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal as D

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from exchanges.api.authentication import issue_jwt
from exchanges.services.orders import order_place
from exchanges.streams import consumers, reads
from exchanges.streams.publish import book_group
from exchanges.streams.routing import websocket_urlpatterns

from .conftest import make_market, make_trader

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
app = URLRouter(websocket_urlpatterns)


@pytest.fixture(autouse=True)
def _in_memory_layer(request):
    if request.node.get_closest_marker("redis"):
        yield
        return
    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        yield


@pytest.fixture
def traders(db):
    make_market("vaix")
    alice = make_trader("alice", funds={"USDC": 1000, "VAIX": 100000}, paper_funds={"USDC": 500, "VAIX": 50000})
    bob = make_trader("bob", funds={"USDC": 1000, "VAIX": 100000}, paper_funds={"USDC": 500, "VAIX": 50000})
    return alice, bob


place = database_sync_to_async(order_place)


def ws(path, ip="10.0.0.1", headers=None):
    c = WebsocketCommunicator(app, path, headers=headers)
    c.scope["client"] = (ip, 40000)
    return c


async def recv(c, timeout=2.0):
    return json.loads(await c.receive_from(timeout=timeout))


async def drain(c, quiet=0.5):
    """Every message until the stream has been quiet for ``quiet`` seconds (a timed-out receive would
    cancel the application, so ask ``receive_nothing`` first)."""
    out = []
    while not await c.receive_nothing(timeout=quiet):
        out.append(await recv(c))
    return out


async def connect(path, **kw):
    c = ws(path, **kw)
    ok, _ = await c.connect()
    assert ok
    return c


async def refused(path, code, **kw):
    c = ws(path, **kw)
    ok, _ = await c.connect()
    assert ok  # accepted, told why, closed
    err = await recv(c)
    out = await c.receive_output(timeout=2)
    assert out == {"type": "websocket.close", "code": code}
    return err


# --- book ----------------------------------------------------------------------------------------------------


async def test_book_sends_a_snapshot_then_consecutive_deltas(traders):
    alice, bob = traders
    await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("1000"), price=D("0.003"))
    c = await connect("/ws/exchange/vaix/book")
    snap = await recv(c)
    assert snap["type"] == "snapshot" and snap["symbol"] == "vaix" and snap["mode"] == "live"
    assert snap["bids"] == [["0.003", "1000"]] and snap["asks"] == []
    seq = snap["sequence"]

    await place(trader=bob, symbol="vaix", side="sell", type="limit", quantity=D("500"), price=D("0.0032"))
    up = await recv(c)
    assert up["type"] == "update" and up["sequence"] == seq + 1 and up["prev_sequence"] == seq
    assert up["asks"] == [["0.0032", "500"]] and up["bids"] == []

    # a taker sweeps the bid: the level goes to "0"
    await place(trader=bob, symbol="vaix", side="sell", type="ioc", quantity=D("1000"), price=D("0.003"))
    up2 = await recv(c)
    assert up2["sequence"] == seq + 2 and ["0.003", "0"] in up2["bids"]
    await c.disconnect()


async def test_no_delta_is_lost_or_repeated_between_snapshot_and_first_update(traders, monkeypatch):
    """Orders commit while the snapshot is being read: before the read (the snapshot includes it, its
    delta is dropped) and after the read (the delta follows the snapshot)."""
    alice, bob = traders
    real = reads._snapshot

    def racing_snapshot(symbol, mode, depth):
        order_place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("10"), price=D("0.0029"))
        snap = real(symbol, mode, depth)
        order_place(trader=bob, symbol="vaix", side="sell", type="limit", quantity=D("20"), price=D("0.0035"))
        return snap

    monkeypatch.setattr(reads, "snapshot", database_sync_to_async(racing_snapshot, thread_sensitive=False))
    c = await connect("/ws/exchange/vaix/book")
    snap = await recv(c)
    assert snap["bids"] == [["0.0029", "10"]]  # the first commit is in the snapshot
    up = await recv(c)
    assert up["sequence"] == snap["sequence"] + 1 and up["asks"] == [["0.0035", "20"]]
    assert await c.receive_nothing(timeout=0.3)  # the first commit's delta is not sent again
    await c.disconnect()


@override_settings(EXCHANGE_BOOK_GAP_WAIT_MS=100)
async def test_out_of_order_deltas_are_reordered_and_a_lost_one_brings_a_fresh_snapshot(traders):
    c = await connect("/ws/exchange/vaix/book")
    snap = await recv(c)
    s = snap["sequence"]
    layer = get_channel_layer()

    def delta(n, price):
        frame = {"type": "update", "sequence": n, "prev_sequence": n - 1, "bids": [[price, "1"]], "asks": []}
        return {"sequence": n, "frame": json.dumps(frame)}

    group = book_group("vaix", "live")
    await layer.group_send(group, {"type": "xbook.deltas", "deltas": [delta(s + 2, "2")]})
    await layer.group_send(group, {"type": "xbook.deltas", "deltas": [delta(s + 1, "1")]})
    assert [(await recv(c))["sequence"] for _ in range(2)] == [s + 1, s + 2]

    # s+3 never comes: after the wait the server sends a fresh snapshot (of the real book, at s)
    await layer.group_send(group, {"type": "xbook.deltas", "deltas": [delta(s + 4, "4")]})
    assert await c.receive_nothing(timeout=0.05)
    again = await recv(c, timeout=1)
    assert again["type"] == "snapshot" and again["sequence"] == s
    await c.disconnect()


async def test_paper_book_is_its_own_stream(traders):
    alice, _ = traders
    live = await connect("/ws/exchange/vaix/book")
    paper = await connect("/ws/exchange/vaix/book?mode=paper")
    await recv(live)
    assert (await recv(paper))["mode"] == "paper"
    await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("5"), price=D("0.001"), mode="paper")
    up = await recv(paper)
    assert up["mode"] == "paper" and up["bids"] == [["0.001", "5"]]
    assert await live.receive_nothing(timeout=0.3)
    await live.disconnect()
    await paper.disconnect()


# --- trades, price, markets ------------------------------------------------------------------------------------


async def test_trades_price_and_markets_streams_see_a_trade(traders):
    alice, bob = traders
    await place(trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("300"), price=D("0.004"))
    trades = await connect("/ws/exchange/vaix/trades")
    price = await connect("/ws/exchange/vaix/price")
    markets = await connect("/ws/exchange/markets")
    snap = await recv(markets)
    assert snap["type"] == "snapshot" and [m["symbol"] for m in snap["markets"]] == ["vaix"]
    assert await price.receive_nothing(timeout=0.1)  # never traded: no price yet

    await place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("100"), price=D("0.005"))
    t = await recv(trades)
    assert {k: t[k] for k in ("type", "price", "quantity", "side", "venue")} == {
        "type": "trade",
        "price": "0.004",
        "quantity": "100",
        "side": "buy",
        "venue": "CLOB",
    }
    assert t["timestamp"].endswith("Z") and t["trade_id"]
    p = await recv(price)
    assert p["type"] == "price" and p["price"] == "0.004"
    m = await recv(markets, timeout=3)
    assert m["type"] == "market" and m["symbol"] == "vaix" and m["price"] == "0.004" and m["volume_24h"] == "100"

    late = await connect("/ws/exchange/vaix/price")  # a new price subscriber gets the last price at once
    assert (await recv(late))["price"] == "0.004"
    for c in (trades, price, markets, late):
        await c.disconnect()


# --- bbo -------------------------------------------------------------------------------------------------------


def _stamps(msgs):
    return [dt.datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00")) for m in msgs]


async def test_bbo_is_conflated_to_one_message_per_50ms_and_ends_on_the_latest_top(traders):
    """Twelve book changes within a few milliseconds become at most three messages, 50 ms apart, the
    last carrying the latest top of book."""
    c = await connect("/ws/exchange/vaix/bbo")
    first = await recv(c)
    assert first["type"] == "bbo" and first["best_bid"] is None and first["best_ask"] is None
    layer = get_channel_layer()
    for i in range(1, 13):  # deltas 1..12 as the matching service would publish them, back to back
        frame = {"type": "update", "sequence": i, "bids": [[f"0.00{10 + i}", "10"]], "asks": []}
        delta = {"sequence": i, "frame": json.dumps(frame)}
        await layer.group_send(book_group("vaix", "live"), {"type": "xbook.deltas", "deltas": [delta]})
    got = await drain(c)
    assert 1 <= len(got) <= 3, got
    assert got[-1]["best_bid"] == "0.0022" and got[-1]["best_bid_size"] == "10"
    # the message on connect is the subscriber's own; updates after it are at least 50 ms apart
    stamps = _stamps(got)
    assert all((b - a).total_seconds() >= 0.050 for a, b in zip(stamps, stamps[1:], strict=False)), stamps
    await c.disconnect()


async def test_bbo_follows_real_orders(traders):
    alice, bob = traders
    c = await connect("/ws/exchange/vaix/bbo")
    await recv(c)
    for i in range(5):
        price = D("0.0010") + i * D("0.0001")
        await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("10"), price=price)
    await place(trader=bob, symbol="vaix", side="sell", type="limit", quantity=D("3"), price=D("0.002"))
    got = await drain(c)
    assert {k: got[-1][k] for k in ("best_bid", "best_bid_size", "best_ask", "best_ask_size")} == {
        "best_bid": "0.0014",
        "best_bid_size": "10",
        "best_ask": "0.002",
        "best_ask_size": "3",
    }
    # the message on connect is the subscriber's own; updates after it are at least 50 ms apart
    stamps = _stamps(got)
    assert all((b - a).total_seconds() >= 0.050 for a, b in zip(stamps, stamps[1:], strict=False)), stamps
    await c.disconnect()


async def test_bbo_sends_nothing_when_a_deeper_level_changes(traders):
    alice, _ = traders
    await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("10"), price=D("0.003"))
    c = await connect("/ws/exchange/vaix/bbo")
    assert (await recv(c))["best_bid"] == "0.003"
    await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("10"), price=D("0.002"))
    assert await c.receive_nothing(timeout=0.3)
    await c.disconnect()


@override_settings(EXCHANGE_BBO_INTERVAL_MS=500)
async def test_bbo_sends_the_first_change_at_once_and_folds_the_next_ones_into_one_an_interval_later(traders):
    """With a long interval the two edges are told apart on a busy machine: a change after a quiet
    interval goes out without waiting; changes right after it wait for the interval and go out as
    one message with the latest top."""
    c = await connect("/ws/exchange/vaix/bbo")
    await recv(c)
    await asyncio.sleep(0.6)  # quiet for longer than the interval
    layer = get_channel_layer()

    async def bid(seq, price):
        frame = {"type": "update", "sequence": seq, "bids": [[price, "10"]], "asks": []}
        delta = {"sequence": seq, "frame": json.dumps(frame)}
        await layer.group_send(book_group("vaix", "live"), {"type": "xbook.deltas", "deltas": [delta]})

    t0 = asyncio.get_running_loop().time()
    await bid(1, "0.0011")
    leading = await recv(c, timeout=1)
    assert leading["best_bid"] == "0.0011"
    assert asyncio.get_running_loop().time() - t0 < 0.25  # not held for the 500 ms interval
    await bid(2, "0.0012")
    await bid(3, "0.0013")
    assert await c.receive_nothing(timeout=0.3)  # inside the interval: nothing yet
    trailing = await recv(c, timeout=1)
    assert trailing["best_bid"] == "0.0013"
    stamps = _stamps([leading, trailing])
    assert (stamps[1] - stamps[0]).total_seconds() >= 0.5
    assert await c.receive_nothing(timeout=0.6)  # 0.0012 never went out on its own
    await c.disconnect()


async def test_bbo_five_connections_per_ip_and_a_slot_frees_on_disconnect(traders):
    """The conflated streams have no channel of their own; the per-IP limit holds all the same."""
    held = [await connect("/ws/exchange/vaix/bbo", ip="10.2.2.2") for _ in range(5)]
    for c in held:
        assert (await recv(c))["type"] == "bbo"
    err = await refused("/ws/exchange/vaix/bbo", consumers.CLOSE_TOO_MANY_CONNECTIONS, ip="10.2.2.2")
    assert err["error"]["code"] == "too_many_connections"
    other_ip = await connect("/ws/exchange/vaix/bbo", ip="10.2.2.3")
    await held.pop().disconnect()
    again = await connect("/ws/exchange/vaix/bbo", ip="10.2.2.2")
    assert (await recv(again))["type"] == "bbo"
    for c in [*held, other_ip, again]:
        await c.disconnect()


@override_settings(EXCHANGE_WS_SLOT_TTL_SECONDS=3)
async def test_bbo_slots_are_kept_alive_while_connected_and_freed_on_disconnect(traders):
    """The hub-fed connections' slots are refreshed together by the process: they outlive their TTL
    while the connections are open, so the limit still holds after it."""
    from exchanges.streams.slots import ConnectionSlots

    held = [await connect("/ws/exchange/vaix/bbo", ip="10.3.3.3") for _ in range(5)]
    slots = ConnectionSlots.for_connection("10.3.3.3", "bbo:vaix:live")
    await asyncio.sleep(4.5)  # past the 3 s TTL: only the refresher keeps them
    assert await slots.held() == 5
    await refused("/ws/exchange/vaix/bbo", consumers.CLOSE_TOO_MANY_CONNECTIONS, ip="10.3.3.3")
    for c in held:
        await c.disconnect()
    assert await slots.held() == 0


# --- private -----------------------------------------------------------------------------------------------------


async def test_private_stream_needs_a_valid_token(traders):
    err = await refused("/ws/exchange/private", consumers.CLOSE_UNAUTHORIZED)
    assert err["error"]["code"] == "unauthorized"
    await refused("/ws/exchange/private?token=not-a-jwt", consumers.CLOSE_UNAUTHORIZED)


async def test_private_stream_carries_only_the_tokens_traders_orders_fills_and_balances(traders):
    alice, bob = traders
    token = await database_sync_to_async(issue_jwt)(alice)
    mine = await connect(f"/ws/exchange/private?token={token}")
    await place(trader=bob, symbol="vaix", side="sell", type="limit", quantity=D("100"), price=D("0.004"))
    assert await mine.receive_nothing(timeout=0.3)  # bob's order is not alice's business

    order = await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("40"), price=D("0.004"))
    msgs = await drain(mine)
    kinds = [m["type"] for m in msgs]
    assert set(kinds) == {"order_update", "fill", "balance_update"}
    upd = next(m for m in msgs if m["type"] == "order_update")
    assert upd["order_id"] == order.order_id and upd["status"] == "filled"
    assert upd["filled_quantity"] == "40" and upd["remaining_quantity"] == "0"
    fill = next(m for m in msgs if m["type"] == "fill")
    assert {k: fill[k] for k in ("order_id", "price", "quantity", "side")} == {
        "order_id": order.order_id,
        "price": "0.004",
        "quantity": "40",
        "side": "buy",
    }
    assert fill["trade_id"] and fill["timestamp"]
    assets = {m["asset"] for m in msgs if m["type"] == "balance_update"}
    assert assets == {"USDC", "VAIX"}
    assert all(m["mode"] == "live" for m in msgs)
    await mine.disconnect()


async def test_private_stream_mode_filter(traders):
    alice, _ = traders
    token = await database_sync_to_async(issue_jwt)(alice)
    paper_only = await connect(f"/ws/exchange/private?token={token}&mode=paper")
    await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("5"), price=D("0.001"))
    assert await paper_only.receive_nothing(timeout=0.3)
    await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("5"), price=D("0.001"), mode="paper")
    assert (await recv(paper_only))["mode"] == "paper"
    await paper_only.disconnect()


# --- limits and bad input ---------------------------------------------------------------------------------------


async def test_five_connections_per_ip_per_channel(traders):
    held = [await connect("/ws/exchange/vaix/trades", ip="10.1.1.1") for _ in range(5)]
    err = await refused("/ws/exchange/vaix/trades", consumers.CLOSE_TOO_MANY_CONNECTIONS, ip="10.1.1.1")
    assert err["error"]["code"] == "too_many_connections"
    # another IP, another channel, and the paper channel are separate
    other_ip = await connect("/ws/exchange/vaix/trades", ip="10.1.1.2")
    other_channel = await connect("/ws/exchange/vaix/price", ip="10.1.1.1")
    paper = await connect("/ws/exchange/vaix/trades?mode=paper", ip="10.1.1.1")
    # a slot frees on disconnect
    await held.pop().disconnect()
    again = await connect("/ws/exchange/vaix/trades", ip="10.1.1.1")
    for c in [*held, other_ip, other_channel, paper, again]:
        await c.disconnect()


@pytest.mark.parametrize(
    ("path", "code", "error"),
    [
        ("/ws/exchange/nope/book", consumers.CLOSE_NOT_FOUND, "invalid_symbol"),
        ("/ws/exchange/nope/bbo", consumers.CLOSE_NOT_FOUND, "invalid_symbol"),
        ("/ws/exchange/vaix/book?mode=demo", consumers.CLOSE_BAD_REQUEST, "invalid_mode"),
        ("/ws/exchange/vaix/book?depth=0", consumers.CLOSE_BAD_REQUEST, "invalid_parameter"),
        ("/ws/exchange/vaix/book?depth=x", consumers.CLOSE_BAD_REQUEST, "invalid_parameter"),
        ("/ws/exchange/markets?mode=real", consumers.CLOSE_BAD_REQUEST, "invalid_mode"),
    ],
)
async def test_bad_paths_and_parameters_are_closed_with_a_reason(traders, path, code, error):
    err = await refused(path, code)
    assert err == {"type": "error", "error": {"code": error, "message": err["error"]["message"]}}


async def test_client_messages_ping_is_answered_and_garbage_is_not_a_crash(traders):
    c = await connect("/ws/exchange/vaix/trades")
    await c.send_to(text_data='{"type": "ping"}')
    assert (await recv(c))["type"] == "pong"
    await c.send_to(text_data="{not json")
    assert (await recv(c))["error"]["code"] == "invalid_message"
    await c.disconnect()


# --- the Redis channel layer (production) ---------------------------------------------------------------------------


@pytest.mark.redis
async def test_book_and_bbo_over_the_redis_layer(traders):
    from exchanges.streams import publish as publish_module

    alice, _ = traders
    book = await connect("/ws/exchange/vaix/book", ip="10.9.9.9")
    bbo = await connect("/ws/exchange/vaix/bbo", ip="10.9.9.9")
    snap = await recv(book)
    assert (await recv(bbo))["best_bid"] is None
    await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("7"), price=D("0.002"))
    await asyncio.get_running_loop().run_in_executor(None, publish_module.flush)
    up = await recv(book, timeout=3)
    assert up["sequence"] == snap["sequence"] + 1 and up["bids"] == [["0.002", "7"]]
    b = await recv(bbo, timeout=3)
    assert b["best_bid"] == "0.002" and b["best_bid_size"] == "7"
    await book.disconnect()
    await bbo.disconnect()


async def test_bbo_hub_reads_the_book_again_when_a_delta_is_lost(traders):
    alice, _ = traders
    await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("10"), price=D("0.003"))
    c = await connect("/ws/exchange/vaix/bbo")
    assert (await recv(c))["best_bid"] == "0.003"
    from exchanges.streams import hubs

    hub = next(h for h in hubs.active_hubs() if isinstance(h, hubs.BboHub) and h.symbol == "vaix")
    reads_before = hub.snapshots_read
    # a delta far ahead of the hub's mirror (its predecessors lost): the mirror cannot be trusted
    frame = {"type": "update", "bids": [["0.009", "1"]], "asks": []}
    delta = {"sequence": hub.sequence + 100, "frame": json.dumps(frame)}
    await get_channel_layer().group_send(book_group("vaix", "live"), {"type": "xbook.deltas", "deltas": [delta]})
    await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("5"), price=D("0.0031"))
    got = await drain(c)
    assert hub.snapshots_read > reads_before
    assert got[-1]["best_bid"] == "0.0031" and got[-1]["best_bid_size"] == "5"  # the database's truth
    await c.disconnect()


@override_settings(EXCHANGE_WS_AUTH_RECHECK_SECONDS=0)
async def test_private_stream_closes_when_its_token_expires(traders):
    alice, _ = traders
    token = await database_sync_to_async(issue_jwt)(alice, ttl=dt.timedelta(seconds=1))
    c = await connect(f"/ws/exchange/private?token={token}")
    await asyncio.sleep(1.2)
    await place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("5"), price=D("0.001"))
    err = await recv(c)
    assert err["type"] == "error" and err["error"]["code"] == "unauthorized"
    assert await c.receive_output(timeout=2) == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHORIZED}


async def test_a_refused_scale_ladder_publishes_nothing_and_an_accepted_one_publishes_each_order(traders):
    from exchanges.errors import ExchangeError
    from exchanges.services.scale import scale_place

    alice, _ = traders
    poor = await database_sync_to_async(make_trader)("poor", funds={"USDC": "5"})
    c = await connect("/ws/exchange/vaix/book")
    snap = await recv(c)
    ladder = {"symbol": "vaix", "side": "buy", "quantity": "10000", "price_low": "0.002", "price_high": "0.004"}
    with pytest.raises(ExchangeError):  # the first children fit the balance, the ladder does not
        await database_sync_to_async(scale_place)(trader=poor, **ladder)
    assert await c.receive_nothing(timeout=0.3)
    await database_sync_to_async(scale_place)(trader=alice, **{**ladder, "quantity": "100", "num_orders": 4})
    ups = await drain(c, quiet=0.3)
    assert [u["sequence"] for u in ups] == [snap["sequence"] + i for i in range(1, 5)]
    assert sorted(u["bids"][0][0] for u in ups) == ["0.002", "0.0027", "0.0033", "0.004"]
    await c.disconnect()
