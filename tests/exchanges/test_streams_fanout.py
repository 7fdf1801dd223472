"""The ``bbo`` fan-out on a real daphne server: the hub writes ready-made frames straight to each
connection's socket there (the communicator tests in ``test_streams`` take the ASGI path instead);
and the bound on what a client that stops reading leaves unsent (``EXCHANGE_WS_MAX_BUFFER_BYTES``).

daphne runs as a subprocess on the test database with the Redis channel layer and cache; book deltas
are published to the book's group from this process as the matching service would publish them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from channels.layers import get_channel_layer
from django.db import connection
from websockets.asyncio.client import connect as ws_connect

from exchanges.streams import reads
from exchanges.streams.publish import book_group, markets_group

from .conftest import make_market

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def book(db):
    make_market("vaix")
    return reads._snapshot("vaix", "live", 1)["sequence"]


class Daphne:
    def __init__(self, **env: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        db = connection.settings_dict
        url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        self.stderr = tempfile.TemporaryFile()  # the server's log (warnings and up under the test settings)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "mmsite.asgi:application"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "mmsite.settings.test", **env},
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        self.url = f"ws://127.0.0.1:{self.port}/ws/exchange/vaix/bbo"

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    async def ready(self) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(120):
                try:
                    if (await client.get(f"http://127.0.0.1:{self.port}/api/v1/exchange/time")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)
        raise RuntimeError("daphne did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.stderr.close()


@pytest.fixture
async def daphne_factory():
    started: list[Daphne] = []

    async def start(**env: str) -> Daphne:
        server = Daphne(**env)
        started.append(server)
        await server.ready()
        return server

    yield start
    for server in started:
        server.stop()


async def publish_bids(first_sequence: int, prices: list[str], *, pause: float = 0.0) -> None:
    """One book delta per price, each a new best bid, as the matching service would publish them.
    ``pause`` between them keeps a long burst within the layer's channel capacity (a dropped delta
    makes the hub read the book from the database, where these synthetic levels are not)."""
    layer = get_channel_layer()
    for n, price in enumerate(prices):
        frame = {"type": "update", "sequence": first_sequence + n, "bids": [[price, "10"]], "asks": []}
        delta = {"sequence": first_sequence + n, "frame": json.dumps(frame)}
        await layer.group_send(book_group("vaix", "live"), {"type": "xbook.deltas", "deltas": [delta]})
        if pause:
            await asyncio.sleep(pause)


def stamp(msg: dict) -> float:
    return dt.datetime.fromisoformat(msg["timestamp"].replace("Z", "+00:00")).timestamp()


async def raw_subscriber(port: int, *, rcvbuf: int | None = None, path: str = "/ws/exchange/vaix/bbo") -> socket.socket:
    """A handshaken WebSocket connection that reads nothing by itself."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        sock,
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await asyncio.wait_for(loop.sock_recv(sock, 1), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_first_message_then_a_change_at_once_then_changes_folded_one_interval_later(book, daphne_factory):
    """A long interval (400 ms) tells the edges apart on a busy machine: the first change after a
    quiet interval is not held back, and two quick changes after it become one message, one interval
    after the previous one, carrying the latest top."""
    server = await daphne_factory(EXCHANGE_BBO_INTERVAL_MS="400")
    clients = [await ws_connect(server.url, ping_interval=None) for _ in range(3)]
    for c in clients:
        first = json.loads(await asyncio.wait_for(c.recv(), 5))
        assert first["type"] == "bbo" and first["best_bid"] is None and first["best_ask"] is None
    await asyncio.sleep(0.5)

    t0 = time.monotonic()
    await publish_bids(book + 1, ["0.0011"])
    leading = [json.loads(await asyncio.wait_for(c.recv(), 5)) for c in clients]
    assert time.monotonic() - t0 < 0.3  # not held for the 400 ms interval
    assert {m["best_bid"] for m in leading} == {"0.0011"}

    await publish_bids(book + 2, ["0.0012", "0.0013"])
    for c, previous in zip(clients, leading, strict=True):
        trailing = json.loads(await asyncio.wait_for(c.recv(), 5))
        assert trailing["best_bid"] == "0.0013" and trailing["best_bid_size"] == "10"
        assert stamp(trailing) - stamp(previous) >= 0.4
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(c.recv(), 0.6)  # 0.0012 never went out on its own
        await c.close()


async def test_a_subscriber_that_stops_reading_skips_to_the_latest_top_and_dead_ones_hold_back_no_one(
    book, daphne_factory
):
    """One subscriber stops reading, another vanishes without a close; the rest get the changes as
    they come, conflated to the latest top. The one that stopped reading is not queued what the
    kernel will not take: its backlog stays under even a small bound (it is not closed), and when it
    reads again it gets far fewer messages than the readers did, in order, ending on the latest top."""
    server = await daphne_factory(EXCHANGE_BBO_INTERVAL_MS="1", EXCHANGE_WS_MAX_BUFFER_BYTES="16384")
    slow = await raw_subscriber(server.port, rcvbuf=4096)
    dead = await raw_subscriber(server.port)
    dead.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    readers = [await ws_connect(server.url, ping_interval=None, max_queue=None) for _ in range(3)]
    for c in readers:
        assert json.loads(await asyncio.wait_for(c.recv(), 5))["type"] == "bbo"
    dead.close()  # a reset, no close frame

    prices = [f"0.{n:05d}1" for n in range(2000)]  # ever higher bids: every flush changes the top
    received: list[list[dict]] = [[] for _ in readers]

    async def read(i: int) -> None:
        async for raw in readers[i]:
            received[i].append(json.loads(raw))
            if received[i][-1]["best_bid"] == prices[-1]:
                return

    tasks = [asyncio.create_task(read(i)) for i in range(len(readers))]
    await publish_bids(book + 1, prices, pause=0.001)
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    for got in received:
        assert len(got) > 20  # many flushes went out while the slow one sat on its backlog
        stamps = [stamp(m) for m in got]
        assert stamps == sorted(stamps)
    for c in readers:
        await c.close()

    slow_msgs = await read_frames(slow, until_bid=prices[-1])
    slow.close()
    assert slow_msgs[0]["type"] == "bbo" and slow_msgs[-1]["best_bid"] == prices[-1]
    stamps = [stamp(m) for m in slow_msgs]
    assert stamps == sorted(stamps)
    assert len(slow_msgs) < min(len(got) for got in received) / 2, (len(slow_msgs), [len(g) for g in received])
    assert "slow consumer" not in server.log()


async def read_frames(sock: socket.socket, *, until_bid: str, timeout: float = 10) -> list[dict]:
    """Parse the server's (unmasked, unfragmented) text frames off a raw socket until a message
    carries ``until_bid``."""
    loop = asyncio.get_running_loop()
    buf, out = b"", []
    deadline = time.monotonic() + timeout
    while not out or out[-1].get("best_bid") != until_bid:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), max(0.01, deadline - time.monotonic()))
        assert chunk, "the server closed the connection"
        buf += chunk
        while len(buf) >= 2:
            assert buf[0] == 0x81 and not buf[1] & 0x80, buf[:2]  # FIN + text, not masked
            n, off = buf[1], 2
            if n == 126:
                n, off = int.from_bytes(buf[2:4], "big"), 4
            if len(buf) < off + n:
                break
            out.append(json.loads(buf[off : off + n]))
            buf = buf[off + n :]
    return out


async def test_subscribers_joining_during_a_burst_get_their_first_message_first(book, daphne_factory):
    """Connections opened while the hub is flushing never get an update ahead of their first message
    or the same top twice: each one's messages have strictly increasing hub timestamps, at least one
    interval apart after the first."""
    server = await daphne_factory(EXCHANGE_BBO_INTERVAL_MS="20")
    prices = [f"0.{n:05d}1" for n in range(300)]

    async def subscriber() -> list[dict]:
        got: list[dict] = []
        async with ws_connect(server.url, ping_interval=None, max_queue=None) as c:
            async for raw in c:
                got.append(json.loads(raw))
                if got[-1]["best_bid"] == prices[-1]:
                    break
        return got

    async with ws_connect(server.url, ping_interval=None) as first:  # the hub is there before the burst
        await first.recv()
        burst = asyncio.create_task(publish_bids(book + 1, prices, pause=0.005))
        joins = []
        for _ in range(4):
            joins.append(asyncio.create_task(subscriber()))
            await asyncio.sleep(0.1)
        await burst
        results = await asyncio.wait_for(asyncio.gather(*joins), 20)
    for got in results:
        assert got[0]["type"] == "bbo" and got[-1]["best_bid"] == prices[-1]
        stamps = [stamp(m) for m in got]
        assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False)), stamps
        assert all(b - a >= 0.02 for a, b in zip(stamps[1:], stamps[2:], strict=False)), stamps


# --- slow readers on the ordinary consumers (book, trades, private) ------------------------------------------


async def publish_book_updates(first_sequence: int, count: int, *, levels: int = 50, pause: float = 0.0) -> None:
    """``count`` consecutive book deltas of ``levels`` bid levels each (about 1 KB of JSON apiece)."""
    layer = get_channel_layer()
    for n in range(count):
        seq = first_sequence + n
        bids = [[f"0.{n:05d}{i:02d}", "10"] for i in range(levels)]
        frame = {"type": "update", "symbol": "vaix", "mode": "live", "sequence": seq, "prev_sequence": seq - 1}
        frame |= {"bids": bids, "asks": []}
        delta = {"sequence": seq, "frame": json.dumps(frame)}
        await layer.group_send(book_group("vaix", "live"), {"type": "xbook.deltas", "deltas": [delta]})
        if pause:
            await asyncio.sleep(pause)


def split_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete (opcode, payload) server frames (unmasked, unfragmented) at the head of ``buf``,
    and what is left of it."""
    out = []
    while len(buf) >= 2:
        n, off = buf[1] & 0x7F, 2
        if n == 126:
            n, off = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            n, off = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < off + n:
            break
        out.append((buf[0] & 0x0F, buf[off : off + n]))
        buf = buf[off + n :]
    return out, buf


async def read_until_closed(sock: socket.socket, *, timeout: float = 10) -> tuple[list[dict], tuple[int, str] | None]:
    """Every text message on a raw socket until the server closes: the messages and the close frame's
    (code, reason), or None if the connection ended without one. Fails if it stays open."""
    loop = asyncio.get_running_loop()
    buf, out = b"", []
    deadline = time.monotonic() + timeout
    while True:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), max(0.01, deadline - time.monotonic()))
        except ConnectionResetError:
            return out, None
        if not chunk:
            return out, None
        frames, buf = split_frames(buf + chunk)
        for opcode, payload in frames:
            if opcode == 0x8:
                return out, (int.from_bytes(payload[:2], "big"), payload[2:].decode())
            if opcode == 0x1:
                out.append(json.loads(payload))


async def test_a_book_reader_that_stops_reading_is_closed_4008_and_frees_its_slot(book, daphne_factory):
    """A client that stops reading (a 4 KB receive buffer) while book updates of 1 KB go out: once
    more than the bound (64 KB) sits unsent for it in the server, it is closed with 4008
    ``slow_consumer``, readable behind the backlog; a reader of the same book gets every update in
    order; the server logs it once; and its slot is free again (two per IP here, the other held by
    the reader), so the same IP connects again."""
    server = await daphne_factory(EXCHANGE_WS_MAX_BUFFER_BYTES="65536", EXCHANGE_WS_MAX_CONNECTIONS_PER_IP="2")
    path = "/ws/exchange/vaix/book"
    url = f"ws://127.0.0.1:{server.port}{path}"
    slow = await raw_subscriber(server.port, rcvbuf=4096, path=path)
    reader = await ws_connect(url, ping_interval=None, max_queue=None)
    assert json.loads(await asyncio.wait_for(reader.recv(), 5))["type"] == "snapshot"
    async with ws_connect(url, ping_interval=None) as third:  # the two slots are taken
        assert json.loads(await asyncio.wait_for(third.recv(), 5))["error"]["code"] == "too_many_connections"

    got: list[dict] = []

    async def read_all() -> None:
        async for raw in reader:
            got.append(json.loads(raw))

    reading = asyncio.create_task(read_all())
    last = book
    while last - book < 1000 and "closing as a slow consumer" not in server.log():
        await publish_book_updates(last + 1, 50, pause=0.001)
        last += 50
    await publish_book_updates(last + 1, 50, pause=0.001)  # after the close too
    last += 50
    for _ in range(100):
        if got and got[-1]["sequence"] == last:
            break
        await asyncio.sleep(0.1)
    reading.cancel()
    assert [m["sequence"] for m in got] == list(range(book + 1, last + 1))  # no gap, no snapshot

    messages, close = await read_until_closed(slow)  # well within the 5 s the server waits
    slow.close()
    assert close == (4008, "slow_consumer")
    assert 0 < len(messages) < last - book - 50 and messages[0]["type"] == "snapshot"
    assert server.log().count("closing as a slow consumer") == 1

    deadline = time.monotonic() + 5
    while True:  # the server sees the close and the consumer releases its slot
        async with ws_connect(url, ping_interval=None) as again:
            first = json.loads(await asyncio.wait_for(again.recv(), 5))
        if first["type"] == "snapshot" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert first["type"] == "snapshot", first
    await reader.close()


def masked_text_frame(text: str) -> bytes:
    """A client's WebSocket text frame (clients must mask theirs); payloads under 126 bytes."""
    payload = text.encode()
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_bbo_client_that_pings_without_reading_is_closed_4008(book, daphne_factory):
    """The hubs skip a backlogged connection, but what daphne writes itself still counts: a ``bbo``
    client that sends pings and reads none of the pongs is closed 4008 once they pass the bound."""
    server = await daphne_factory(EXCHANGE_WS_MAX_BUFFER_BYTES="16384")
    sock = await raw_subscriber(server.port, rcvbuf=4096)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, masked_text_frame('{"type": "ping"}') * 6000)  # ~350 KB of pongs
    for _ in range(100):  # read nothing until the server has given up on it
        if "closing as a slow consumer" in server.log():
            break
        await asyncio.sleep(0.1)
    messages, close = await read_until_closed(sock)
    sock.close()
    assert close == (4008, "slow_consumer")
    assert messages[0]["type"] == "bbo" and {m["type"] for m in messages[1:]} == {"pong"}
    assert len(messages) < 6000
    assert server.log().count("closing as a slow consumer") == 1


@pytest.fixture
def second_market(book):
    make_market("abcd")


async def test_a_markets_reader_with_a_backlog_gets_the_latest_of_every_pair_it_missed(second_market, daphne_factory):
    """``markets`` supersedes per pair: a connection with a backlog (here: pongs it has not read) is
    skipped, and once it drains it gets the latest message of each pair it missed, once: a pair that
    traded while it was behind (``abcd``) is not lost behind the busier one (``vaix``)."""
    server = await daphne_factory()
    path = "/ws/exchange/markets"
    slow = await raw_subscriber(server.port, rcvbuf=4096, path=path)
    reader = await ws_connect(f"ws://127.0.0.1:{server.port}{path}", ping_interval=None, max_queue=None)
    assert json.loads(await asyncio.wait_for(reader.recv(), 5))["type"] == "snapshot"
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(slow, masked_text_frame('{"type": "ping"}') * 3000)  # ~180 KB of pongs, unread
    await asyncio.sleep(1)

    layer = get_channel_layer()
    for symbol in ("vaix", "abcd", "vaix"):  # one flush each (one per second): vaix, abcd, vaix
        await layer.group_send(markets_group("live"), {"type": "xmarkets.dirty", "symbols": [symbol]})
        await asyncio.sleep(1.1)
    received = [json.loads(await asyncio.wait_for(reader.recv(), 5)) for _ in range(3)]
    await reader.close()
    assert [m["symbol"] for m in received] == ["vaix", "abcd", "vaix"]
    latest = {m["symbol"]: m for m in received}

    buf, markets = b"", []
    while len(markets) < 2:
        chunk = await asyncio.wait_for(loop.sock_recv(slow, 65536), 5)
        assert chunk, "the server closed the connection"
        frames, buf = split_frames(buf + chunk)
        for opcode, payload in frames:
            assert opcode == 0x1
            message = json.loads(payload)
            if message["type"] == "market":
                markets.append(message)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(loop.sock_recv(slow, 65536), 1.5)  # and nothing after them
    slow.close()
    assert sorted(markets, key=lambda m: m["symbol"]) == [latest["abcd"], latest["vaix"]]
