"""The ``bbo`` fan-out on a real daphne server: the hub writes ready-made frames straight to each
connection's socket there (the communicator tests in ``test_streams`` take the ASGI path instead).

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
import time
from pathlib import Path

import httpx
import pytest
from channels.layers import get_channel_layer
from django.db import connection
from websockets.asyncio.client import connect as ws_connect

from exchanges.streams import reads
from exchanges.streams.publish import book_group

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
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "mmsite.asgi:application"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "mmsite.settings.test", **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"ws://127.0.0.1:{self.port}/ws/exchange/vaix/bbo"

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


async def raw_subscriber(port: int, *, rcvbuf: int | None = None) -> socket.socket:
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
            "GET /ws/exchange/vaix/bbo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
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


async def test_slow_and_dead_subscribers_do_not_hold_back_the_others(book, daphne_factory):
    """One subscriber stops reading, another vanishes without a close; the rest get the changes as
    they come, conflated to the latest top. The one that stopped reading is buffered, not skipped:
    when it reads again its stream is whole and ends on the latest top."""
    server = await daphne_factory(EXCHANGE_BBO_INTERVAL_MS="1")
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
