#!/usr/bin/env python
"""Trade-to-delivery latency of the ``bbo`` stream with 1,000 subscribers (target p99 < 50 ms).

The production stack on loopback: ``daphne mmsite.asgi:application`` with PostgreSQL and the Redis
channel layer and cache. ``--subscribers`` WebSocket clients (websockets, split over ``--clients``
processes) subscribe to ``/ws/exchange/bench/bbo``; each binds its own loopback source address
(127.0.1.x), five per address, so the seed's limit of 5 connections per IP per channel stays on.

This process then trades: a ladder of one-lot asks rests on the book, and a taker lifts one level
per trade at ``--rate`` trades per second through the matching service (``order_place``), so every
trade moves the best ask. The moment each trade's transaction commits is taken where the matching
service hands its events to the streams (``exchanges.streams.publish.publish``, called on commit).
For each (subscriber, trade) the delivery is the first ``bbo`` message that subscriber received
showing the best ask at or past that trade's new best ask; latency = receive time - commit time.
Because the stream is conflated (one message per 50 ms at most), a message often carries several
trades: each of them counts with its own latency.

    .venv/bin/python bench/streams.py                          # 1,000 subscribers, 20 trades/s, 15 s
    .venv/bin/python bench/streams.py --subscribers 200 --rate 50 --seconds 10

Needs PostgreSQL at ``--server`` (database ``mmsite_bench_streams`` is created and migrated) and
Redis at ``--redis`` (databases ``--redis-db`` for the channel layer and the next one for the
cache; both are flushed at start).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_P99_MS = 50.0
SYMBOL = "bench"
TICK = Decimal("0.0001")
FIRST_ASK = Decimal("1.0000")
PER_IP = 5


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


def subscriber_process(uri: str, ips: list[str], count: int, ready, stop_at_q, out_q) -> None:
    asyncio.run(_subscribers(uri, ips, count, ready, stop_at_q, out_q))


async def _subscribers(uri, ips, count, ready, stop_at_q, out_q) -> None:
    from websockets.asyncio.client import connect

    slots = [ips[i // PER_IP] for i in range(count)]
    records: list[list[tuple[float, str | None, str]]] = [[] for _ in range(count)]
    conns: list = [None] * count
    refused = 0
    sem = asyncio.Semaphore(40)

    async def open_one(i: int) -> None:
        nonlocal refused
        async with sem:
            for attempt in range(3):
                try:
                    ws = await connect(
                        uri, local_addr=(slots[i], 0), open_timeout=30, ping_interval=None, max_queue=None
                    )
                    first = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if first.get("type") != "bbo":
                        refused += 1
                        await ws.close()
                        return
                    conns[i] = ws
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
                msg = json.loads(raw)
                records[i].append((t, msg.get("best_ask"), msg.get("timestamp")))
        except Exception:  # noqa: BLE001 - a closed socket ends the reader
            return

    tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(conns) if ws is not None]
    stop_at = await asyncio.get_running_loop().run_in_executor(None, stop_at_q.get)
    await asyncio.sleep(max(0.0, stop_at - time.time()))
    for ws in conns:
        if ws is not None:
            await ws.close()
    for task in tasks:
        task.cancel()
    out_q.put(records)


# --- the stack --------------------------------------------------------------------------------------------------


def ensure_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


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
            proc = ctx.Process(target=subscriber_process, args=(uri, my_ips, count, ready, stop_q, out_q), daemon=True)
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

        def timed_publish(events):
            committed.append(time.time())
            return real_publish(events)

        publish_module.publish = timed_publish
        time.sleep(1.0)
        start = time.monotonic()
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
    latencies: list[float] = []
    server_ms: list[float] = []  # commit -> the hub computed the message (publish, Redis, hub, conflation)
    missed = 0
    gaps: list[float] = []
    messages = 0
    for rec in records:
        messages += len(rec)
        gaps.extend((b[0] - a[0]) * 1000 for a, b in zip(rec, rec[1:], strict=False))
        j = 0
        for k in range(trades):
            target = after[k]
            while j < len(rec) and (rec[j][1] is not None and Decimal(rec[j][1]) < target):
                j += 1
            if j == len(rec):
                missed += trades - k
                break
            latencies.append((rec[j][0] - committed[k]) * 1000)
            stamped = dt.datetime.fromisoformat(rec[j][2].replace("Z", "+00:00")).timestamp()
            server_ms.append((stamped - committed[k]) * 1000)

    print(
        f"trades: {trades} in {elapsed:.1f} s ({trades / elapsed:.1f}/s); order_place p50 "
        f"{statistics.median(place_ms):.1f} ms, p99 {pct(place_ms, 99):.1f} ms"
    )
    print(f"bbo messages received: {messages} ({messages / max(1, len(records)):.0f} per subscriber)")
    print(f"deliveries measured: {len(latencies)} (subscriber x trade), missed: {missed}")
    if latencies:
        p99 = pct(latencies, 99)
        print(
            f"trade -> bbo delivery: p50 {pct(latencies, 50):.1f} ms  p90 {pct(latencies, 90):.1f} ms  "
            f"p99 {p99:.1f} ms  max {max(latencies):.1f} ms   (target p99 < {TARGET_P99_MS:.0f} ms: "
            f"{'met' if p99 < TARGET_P99_MS else 'NOT met'})"
        )
    if server_ms:
        print(
            f"  of which commit -> bbo computed by the hub: p50 {pct(server_ms, 50):.1f} ms  "
            f"p99 {pct(server_ms, 99):.1f} ms (the rest is the fan-out to every socket and the subscribers reading)"
        )
    if gaps:
        print(
            f"gap between two messages to one subscriber: min {min(gaps):.1f} ms, "
            f"p1 {pct(gaps, 1):.1f} ms (sent >= 50 ms apart by design)"
        )


if __name__ == "__main__":
    main()
