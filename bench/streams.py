#!/usr/bin/env python
"""Trade-to-delivery latency of the ``bbo`` stream with 1,000 subscribers (target p99 < 50 ms).

The production stack on loopback: ``daphne mmsite.asgi:application`` (``--web`` processes) with
PostgreSQL and the Redis channel layer and cache. ``--subscribers`` WebSocket clients, split over
``--clients`` processes, subscribe to ``/ws/exchange/bench/bbo``; each binds its own loopback source
address (127.0.1.x), five per address, so the seed's limit of 5 connections per IP per channel
stays on.

This process then trades: a ladder of one-lot asks rests on the book, and a taker lifts one level
per trade at ``--rate`` trades per second through the matching service (``order_place``), so every
trade moves the best ask. The moment each trade's transaction commits is taken where the matching
service hands its events to the streams (``exchanges.streams.publish.publish``, called on commit).
For each (subscriber, trade) the delivery is the first ``bbo`` message that subscriber received
showing the best ask at or past that trade's new best ask; latency = delivery time - commit time.
Because the stream is conflated (one message per 50 ms at most), a message often carries several
trades: each of them counts with its own latency.

**Delivery time.** The subscribers (``--client raw``, the default) are a lean frame reader on a
plain epoll loop, and the kernel stamps each segment as it reaches the subscriber's socket
(``SO_TIMESTAMPNS``): the headline figure is commit -> the message is at the subscriber, whatever
the subscriber process then takes to read it (printed too, as "read by"). The subscribers stand in
for clients on other machines but share this machine's two cores with the server; stamping in the
kernel keeps their own scheduling out of the server's figure, and ``--client-nice`` lowers their
priority so they take less of the server's CPU. ``--client websockets`` uses the websockets library
and stamps when each message is read, as the first version of this bench did.

The other lines split the time: commit -> the delta handed to Redis by the publisher thread of this
process; commit -> the hub computed the message (its ``timestamp``: publisher, Redis, hub,
conflation wait); computed -> delivered (the fan-out); and how late trades commit against their
schedule, which at one trade per conflation interval decides the conflation wait
(docs/exchange-streams.md, "What 50 ms conflation costs").

    .venv/bin/python bench/streams.py --rate 5                 # 1,000 subscribers, 5 trades/s, 15 s
    .venv/bin/python bench/streams.py                          # 20 trades/s
    .venv/bin/python bench/streams.py --subscribers 200 --rate 50 --seconds 10

Needs PostgreSQL at ``--server`` (database ``mmsite_bench_streams`` is created, migrated and
vacuumed) and Redis at ``--redis`` (databases ``--redis-db`` for the channel layer and the next one
for the cache; both are flushed at start).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import queue
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_P99_MS = 50.0
SYMBOL = "bench"
TICK = Decimal("0.0001")
FIRST_ASK = Decimal("1.0000")
PER_IP = 5
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


# --- subscriber processes --------------------------------------------------------------------------------------


def subscriber_process(client: str, nice: int, uri: str, ips: list[str], count: int, ready, stop_at_q, out_q) -> None:
    if nice:
        os.nice(nice)
    asyncio.run(_subscribers(client, uri, ips, count, ready, stop_at_q, out_q))


#: Linux ``SO_TIMESTAMPNS`` (= ``SCM_TIMESTAMPNS``; the socket module does not name it): the kernel
#: stamps each segment when it reaches the socket, so a message's delivery time does not include how
#: long this process took to get round to reading it.
SO_TIMESTAMPNS = 35


class RawSubscriber:
    """A lean WebSocket client for many connections in one process: a non-blocking socket read by an
    event-loop reader callback that stamps the time, splits the bytes into frames and keeps the
    payloads; JSON is parsed after the run. The ``websockets`` library costs several times the CPU per
    message (a task wake-up per message per connection), which on a shared 2-core machine delays the
    reading of the last sockets of each burst by tens of milliseconds and steals the server's CPU.

    Each record is ``(kernel time, read time, payload)``: when the segment reached the socket
    (``SO_TIMESTAMPNS``) and when this process read it."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.buf = b""
        self.records: list[tuple[float, float, bytes]] = []
        self.first: asyncio.Future = loop.create_future()
        self.closed = False

    @classmethod
    async def open(cls, uri: str, local_ip: str) -> RawSubscriber:
        loop = asyncio.get_running_loop()
        parts = urlsplit(uri)
        host, port = parts.hostname, parts.port or 80
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind((local_ip, 0))
            await loop.sock_connect(sock, (host, port))
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            await loop.sock_sendall(sock, request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest())
            if not head.startswith(b"HTTP/1.1 101") or accept not in head:
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        except BaseException:
            sock.close()
            raise
        sub = cls(sock, loop)
        sub.buf = rest
        loop.add_reader(sock.fileno(), sub._readable)
        if rest:
            sub._frames(time.time(), time.time())
        return sub

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(1 << 18, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        now = time.time()
        if not data:
            self.close()
            return
        kernel = now
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                kernel = sec + nsec / 1e9
        self.buf += data
        self._frames(kernel, now)

    def _frames(self, kernel: float, now: float) -> None:
        buf = self.buf
        while len(buf) >= 2:
            length, offset = buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    break
                length, offset = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    break
                length, offset = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < offset + length:
                break
            opcode, payload, buf = buf[0] & 0x0F, buf[offset : offset + length], buf[offset + length :]
            if opcode == 0x1:
                if not self.first.done():
                    self.first.set_result(payload)
                else:
                    self.records.append((kernel, now, payload))
            elif opcode == 0x9:  # ping: pong with the same payload (client frames are masked)
                self._send(0xA, payload)
            elif opcode == 0x8:
                self.close()
                return
        self.buf = buf

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with contextlib.suppress(OSError):
            self.sock.send(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())  # a no-op once the epoll loop reads it
        self._send(0x8, (1000).to_bytes(2, "big"))
        self.sock.close()
        if not self.first.done():
            self.first.set_exception(ConnectionError("closed before the first message"))


async def _subscribers(client, uri, ips, count, ready, stop_at_q, out_q) -> None:
    slots = [ips[i // PER_IP] for i in range(count)]
    records: list[list[tuple[float, float, bytes]]] = [[] for _ in range(count)]
    conns: list = [None] * count
    refused = 0
    sem = asyncio.Semaphore(40)

    async def open_one(i: int) -> None:
        nonlocal refused
        async with sem:
            for attempt in range(3):
                try:
                    if client == "raw":
                        conn = await asyncio.wait_for(RawSubscriber.open(uri, slots[i]), 30)
                        first = json.loads(await asyncio.wait_for(asyncio.shield(conn.first), 30))
                    else:
                        from websockets.asyncio.client import connect

                        conn = await connect(
                            uri, local_addr=(slots[i], 0), open_timeout=30, ping_interval=None, max_queue=None
                        )
                        first = json.loads(await asyncio.wait_for(conn.recv(), 30))
                    if first.get("type") != "bbo":
                        refused += 1
                        await _close(conn)
                        return
                    conns[i] = conn
                    return
                except (OSError, TimeoutError) as exc:
                    if attempt == 2:
                        print(f"  subscriber {i} failed: {exc!r}", flush=True)
                        refused += 1
                    await asyncio.sleep(0.5)

    await asyncio.gather(*(open_one(i) for i in range(count)))
    ready.put((len([c for c in conns if c is not None]), refused))

    async def reader(i: int, ws) -> None:
        try:
            async for raw in ws:
                t = time.time()
                records[i].append((t, t, raw))
        except Exception:  # noqa: BLE001 - a closed socket ends the reader
            return

    tasks = []
    if client == "raw":
        live = [c for c in conns if c is not None and not c.closed]  # the server may have closed some
        for conn in live:  # from here a plain epoll loop reads them: no asyncio dispatch per message
            conn.loop.remove_reader(conn.sock.fileno())
        _read_until_stop(live, stop_at_q)
    else:
        tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(conns) if ws is not None]
        stop_at = await asyncio.get_running_loop().run_in_executor(None, stop_at_q.get)
        await asyncio.sleep(max(0.0, stop_at - time.time()))
    for i, conn in enumerate(conns):
        if conn is not None:
            await _close(conn)
            if client == "raw":
                records[i] = conn.records
    for task in tasks:
        task.cancel()
    out = []
    for rec in records:
        rows = []
        for kernel, read, raw in rec:
            msg = json.loads(raw)
            rows.append((kernel, read, msg.get("best_ask"), msg.get("timestamp")))
        out.append(rows)
    out_q.put(out)


def _read_until_stop(subs: list[RawSubscriber], stop_at_q) -> None:
    """Read every subscriber's socket as data arrives until the time the main process sends."""
    poller = select.epoll()
    by_fd = {}
    for sub in subs:
        by_fd[sub.sock.fileno()] = sub
        poller.register(sub.sock.fileno(), select.EPOLLIN)
    stop_at = None
    try:
        while stop_at is None or time.time() < stop_at:
            if stop_at is None:
                with contextlib.suppress(queue.Empty):
                    stop_at = stop_at_q.get_nowait()
            for fd, _ in poller.poll(0.05):
                sub = by_fd[fd]
                sub._readable()
                if sub.closed:
                    with contextlib.suppress(OSError, KeyError):
                        poller.unregister(fd)
    finally:
        poller.close()


async def _close(conn) -> None:
    if isinstance(conn, RawSubscriber):
        conn.close()
    else:
        await conn.close()


# --- the stack --------------------------------------------------------------------------------------------------


def ensure_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def vacuum(server_url: str, name: str) -> None:
    """``VACUUM ANALYZE`` the bench database before measuring: each run leaves its orders, fills and
    holds behind as dead rows, and autovacuum may be off (it is on the 2-core bench machine), so
    without this every run's order placement gets slower and less regular than the last."""
    import psycopg

    with psycopg.connect(f"{server_url}/{name}", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def flush_redis(url: str, dbs: list[int]) -> None:
    import redis

    for db in dbs:
        redis.Redis.from_url(url, db=db).flushdb()


def prepare_book(levels: int):
    """The bench market, a maker with a ladder of one-lot asks and one bid, a funded taker."""
    from django.core.management import call_command

    from exchanges.models import ExchangeOrder
    from exchanges.services.markets import market_upsert
    from exchanges.services.orders import order_place, orders_cancel_all
    from exchanges.services.traders import trader_fund, trader_get_or_create

    call_command("migrate", verbosity=0)
    market_upsert(symbol=SYMBOL, base_asset="BENCH", tick_size=str(TICK), lot_size="1", min_order_size="1")
    stamp = str(time.time_ns())
    traders = {}
    for name in ("bench-maker", "bench-taker"):
        trader, _ = trader_get_or_create(username=name)
        for asset in ("USDC", "BENCH"):
            trader_fund(
                trader=trader, asset=asset, amount=Decimal("100000000"), idempotency_key=f"bench:{name}:{asset}:{stamp}"
            )
        orders_cancel_all(trader=trader, symbol=SYMBOL)
        traders[name] = trader
    assert not ExchangeOrder.objects.live().filter(market__symbol=SYMBOL).exists()
    maker = traders["bench-maker"]
    order_place(trader=maker, symbol=SYMBOL, side="buy", type="limit", quantity=Decimal("1000"), price=Decimal("0.5"))
    asks = [FIRST_ASK + TICK * i for i in range(levels)]
    for price in asks:
        order_place(trader=maker, symbol=SYMBOL, side="sell", type="limit", quantity=Decimal("1"), price=price)
    return traders["bench-taker"], asks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    ap.add_argument("--database", default="mmsite_bench_streams")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379")
    ap.add_argument("--redis-db", type=int, default=14, help="channel layer database; the cache uses the next one")
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=2, help="subscriber processes")
    ap.add_argument("--web", type=int, default=1, help="daphne processes (client process p uses server p mod N)")
    ap.add_argument("--rate", type=float, default=20.0, help="trades per second")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument(
        "--client",
        choices=("raw", "websockets"),
        default="raw",
        help="subscriber implementation: a lean frame reader with kernel receive stamps, or the websockets library",
    )
    ap.add_argument(
        "--client-nice",
        type=int,
        default=10,
        help="niceness of the subscriber processes: they stand in for clients on other machines, and at the "
        "default priority they take the server's CPU on a 2-core machine (0 to compete as equals)",
    )
    args = ap.parse_args()

    ensure_database(args.server, args.database)
    flush_redis(args.redis, [args.redis_db, args.redis_db + 1])
    env = {
        "DATABASE_URL": f"{args.server}/{args.database}",
        "REDIS_URL": f"{args.redis}/0",
        "REDIS_CHANNELS_DB": str(args.redis_db),
        "REDIS_CACHE_DB": str(args.redis_db + 1),
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "DJANGO_SETTINGS_MODULE": "mmsite.settings",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
    }
    os.environ.update(env)
    import django

    django.setup()

    trades = int(args.rate * args.seconds)
    taker, asks = prepare_book(trades + 20)
    vacuum(args.server, args.database)

    ports = [free_port() for _ in range(args.web)]
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mmsite.asgi:application"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=open(os.environ.get("BENCH_DAPHNE_LOG", os.devnull), "a"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        for port in ports
    ]
    procs: list[mp.Process] = []
    try:
        import httpx

        for port in ports:
            for _ in range(200):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/v1/exchange/time", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.25)
            else:
                raise SystemExit("daphne did not start")

        uris = [f"ws://127.0.0.1:{port}/ws/exchange/{SYMBOL}/bbo" for port in ports]
        ips = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range((args.subscribers + PER_IP - 1) // PER_IP)]
        ctx = mp.get_context("spawn")
        ready, out_q = ctx.Queue(), ctx.Queue()
        stop_qs = []
        per_proc = (len(ips) + args.clients - 1) // args.clients
        left = args.subscribers
        t_connect = time.monotonic()
        for p in range(args.clients):
            my_ips = ips[p * per_proc : (p + 1) * per_proc]
            count = min(left, len(my_ips) * PER_IP)
            if count <= 0:
                break
            left -= count
            stop_q = ctx.Queue()
            stop_qs.append(stop_q)
            uri = uris[p % len(uris)]  # with --web N, client process p talks to server p mod N
            proc_args = (args.client, args.client_nice, uri, my_ips, count, ready, stop_q, out_q)
            proc = ctx.Process(target=subscriber_process, args=proc_args, daemon=True)
            proc.start()
            procs.append(proc)
        connected = refused = 0
        for _ in procs:
            c, r = ready.get(timeout=300)
            connected += c
            refused += r
        print(
            f"subscribers: {connected} connected, {refused} refused or failed, in {time.monotonic() - t_connect:.1f} s"
        )

        # Drive the trades, noting when each transaction's events reach the streams.
        from exchanges.services.orders import order_place
        from exchanges.streams import publish as publish_module

        committed: list[float] = []
        real_publish = publish_module.publish

        def timed_publish(events, audience=None):
            committed.append(time.time())
            return real_publish(events, audience)

        publish_module.publish = timed_publish

        # When each trade's book delta has been handed to Redis (the publisher thread's share of the
        # time from commit to the hub).
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        real_group_send = layer.group_send
        handed: list[float] = []

        async def timed_group_send(group, message):
            await real_group_send(group, message)
            if group == f"xbook.{SYMBOL}.live":
                handed.append(time.time())

        layer.group_send = timed_group_send
        time.sleep(1.0)
        start = time.monotonic()
        start_wall = time.time()
        place_ms = []
        for k in range(trades):
            due = start + k / args.rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            t0 = time.perf_counter()
            order_place(trader=taker, symbol=SYMBOL, side="buy", type="ioc", quantity=Decimal("1"), price=asks[k])
            place_ms.append((time.perf_counter() - t0) * 1000)
        elapsed = time.monotonic() - start
        publish_module.publish = real_publish
        publish_module.flush()
        stop_at = time.time() + 2.0
        for q in stop_qs:
            q.put(stop_at)
        records = []
        for _ in procs:
            records.extend(out_q.get(timeout=120))
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        for daphne in servers:
            daphne.terminate()
            try:
                daphne.wait(15)
            except subprocess.TimeoutExpired:
                daphne.kill()

    # trade k leaves the best ask at asks[k + 1]
    after = [asks[k + 1] for k in range(trades)]
    delivered: list[float] = []  # commit -> the message reached the subscriber's socket (kernel stamp)
    read: list[float] = []  # commit -> the subscriber process read it
    server_ms: list[float] = []  # commit -> the hub computed the message (publish, Redis, hub, conflation)
    fan_out_ms: list[float] = []  # the hub computed the message -> it reached the subscriber's socket
    missed = silent = 0
    sent_gaps: list[float] = []  # between two messages to one subscriber, by the hub's timestamps
    messages = 0
    for rec in records:
        messages += len(rec)
        silent += not rec
        stamps = [dt.datetime.fromisoformat(r[3].replace("Z", "+00:00")).timestamp() for r in rec]
        sent_gaps.extend((b - a) * 1000 for a, b in zip(stamps, stamps[1:], strict=False))
        j = 0
        for k in range(trades):
            target = after[k]
            while j < len(rec) and (rec[j][2] is not None and Decimal(rec[j][2]) < target):
                j += 1
            if j == len(rec):
                missed += trades - k
                break
            delivered.append((rec[j][0] - committed[k]) * 1000)
            read.append((rec[j][1] - committed[k]) * 1000)
            server_ms.append((stamps[j] - committed[k]) * 1000)
            fan_out_ms.append((rec[j][0] - stamps[j]) * 1000)

    print(
        f"trades: {trades} in {elapsed:.1f} s ({trades / elapsed:.1f}/s); order_place p50 "
        f"{statistics.median(place_ms):.1f} ms, p99 {pct(place_ms, 99):.1f} ms, max {max(place_ms):.1f} ms"
    )
    print(
        f"bbo messages received: {messages} ({messages / max(1, len(records)):.0f} per subscriber; "
        f"{silent} subscribers got none)"
    )
    print(f"deliveries measured: {len(delivered)} (subscriber x trade), missed: {missed}")

    def line(name: str, values: list[float], verdict: bool = True) -> None:
        p99 = pct(values, 99)
        tail = f"   (target p99 < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'NOT met'})"
        print(
            f"{name}: p50 {pct(values, 50):.1f} ms  p90 {pct(values, 90):.1f} ms  p99 {p99:.1f} ms  "
            f"max {max(values):.1f} ms{tail if verdict else ''}"
        )

    if delivered:
        if args.client == "raw":
            line("trade -> bbo delivered to the subscriber's socket", delivered)
        line("trade -> bbo read by the subscriber process", read, verdict=args.client != "raw")
        line("  of which commit -> bbo computed by the hub", server_ms, verdict=False)
        line("  and computed by the hub -> delivered (the fan-out)", fan_out_ms, verdict=False)
    if len(handed) == len(committed):
        to_redis = [(h - c) * 1000 for h, c in zip(handed, committed, strict=True)]
        line("  commit -> its book delta handed to Redis (publisher thread)", to_redis, verdict=False)
    # At one trade per conflation interval, how regularly the trades commit decides the conflation
    # wait: a trade that commits late moves the hub's send grid later for every trade after it.
    late = [(c - (start_wall + k / args.rate)) * 1000 for k, c in enumerate(committed)]
    print(
        f"trade commits after their scheduled time: p1 {pct(late, 1):.1f} ms  p50 {pct(late, 50):.1f} ms  "
        f"p99 {pct(late, 99):.1f} ms  max {max(late):.1f} ms"
    )
    if sent_gaps:
        print(
            f"gap between two messages to one subscriber (hub timestamps): min {min(sent_gaps):.1f} ms, "
            f"p1 {pct(sent_gaps, 1):.1f} ms (>= {conf_interval_ms():.0f} ms by design)"
        )


def conf_interval_ms() -> float:
    from exchanges.streams import conf

    return conf.bbo_interval() * 1000


if __name__ == "__main__":
    main()
