#!/usr/bin/env python
"""Order throughput of the house exchange API over HTTP on the production stack.

Creates (or reuses) its own PostgreSQL database (``mmsite_bench_exchange``), migrates and vacuums it,
makes one market and one funded trader per client (tier ``market_maker``), then starts ``--servers``
daphne processes with the production settings module (DEBUG off, PostgreSQL with a pool, Redis for the
cache, the throttles and the channel layer, in Redis database ``--redis-db``; the order gateway on,
docs/exchange-matching.md) and, with ``--matcher 1``, a ``run_order_matcher`` process they hand their
orders to; and drives them with ``--clients`` concurrent HTTP/1.1 keep-alive clients (spread over the
servers) for ``--seconds``:

    each client, in a loop: POST /api/v1/exchange/{symbol}/orders   (a limit order)
                            DELETE /api/v1/exchange/{symbol}/orders/{order_id}   (cancel it)

and then (by default; ``--batch N`` runs only one of the two) the way market makers send orders, with
the same servers and clients:

    each client, in a loop: POST /api/v1/exchange/{symbol}/orders/batch     (10 limit orders)
                            DELETE /api/v1/exchange/{symbol}/orders/batch   (their 10 ids)

Every order rests on one book (``--cross`` makes that share of the orders cross the book instead
and trade against a resting ladder, so the trade path is measured too). Prints orders/s (placements),
order operations/s (placements + cancels), p50/p99 latency per operation beside the target
(>= 1,000 orders/s on a 2-core machine; an open-source exchange stack reports 57-125 orders/s), the CPU
each side spent per operation (servers incl. the matcher, this client, PostgreSQL: together they tell
what the two cores can carry at most), then runs ``ledger_check`` on the database.

    .venv/bin/python bench/exchange_api.py                       # 1 server, 8 clients, 20 s single-order
                                                                 # requests, then 20 s batches of 10
    .venv/bin/python bench/exchange_api.py --servers 2 --matcher 1 --cross 0.2
    .venv/bin/python bench/exchange_api.py --gateway 0 --servers 3 --client httpx   # as before the gateway
    .venv/bin/python bench/exchange_api.py --bare        # daphne serving canned answers: its ceiling here

The clients are lean (``RawHTTP``: one keep-alive connection each, no HTTP library): a general client
library costs more CPU per request than the server's order path on two cores. The rate limits are lifted
for the run through ``EXCHANGE_RATE_LIMITS`` (the bench measures the matching path, not the 429 path).
Nothing else on the machine is stopped: the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_ORDERS_PER_S = 1000.0
SYMBOL = "benchx"


def symbols(n: int) -> list[str]:
    """``benchx``, ``benchx2``, … : one book each."""
    return [SYMBOL if i == 0 else f"{SYMBOL}{i + 1}" for i in range(n)]


DB_NAME = "mmsite_bench_exchange"
LIMITS = {
    "standard": {
        "public_per_minute": 10**9,
        "authenticated_per_minute": 10**9,
        "orders_per_second_per_pair": 10**9,
        "orders_per_minute": 10**9,
    },
    "market_maker": {
        "public_per_minute": 10**9,
        "authenticated_per_minute": 10**9,
        "orders_per_second_per_pair": 10**9,
        "orders_per_minute": 10**9,
    },
}


def ensure_database(server_url: str, name: str, fresh: bool) -> None:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and fresh:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def vacuum(db_url: str) -> None:
    """``VACUUM ANALYZE`` the bench database: every run leaves tens of thousands of dead order rows, and
    autovacuum may be off on the machine (it is on this one: ``SHOW autovacuum``), so without this each
    run would be slower than the one before."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        on = conn.execute("SHOW autovacuum").fetchone()[0]
    if on != "on":
        print("note: autovacuum is off on this PostgreSQL; the bench database was vacuumed before the run")


def server_env(db_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_DB_SUFFIX",)}
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="mmsite.settings.production",
        SECRET_KEY="bench-" + "x" * 60,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        DEBUG="false",
        LOG_LEVEL="WARNING",
        EXCHANGE_RATE_LIMITS=json.dumps(LIMITS),
        EXCHANGE_WITHDRAWAL_HANDLER="",
    )
    return env


def prepare(env: dict[str, str], clients: int, n_symbols: int = 1) -> list[str]:
    """Migrate, create the market and the traders (idempotent); returns one API key per client."""
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    script = f"""
import json
from decimal import Decimal
from exchanges.services.markets import market_upsert
from exchanges.services.traders import trader_get_or_create, trader_fund, trader_key_create
from exchanges.services.orders import orders_cancel_all
SYMBOLS = {symbols(n_symbols)!r}
for sym in SYMBOLS:
    market_upsert(symbol=sym, base_asset=sym.upper(), tick_size="0.0001", lot_size="1", min_order_size="1")
keys = []
for i in range({clients} + 1):
    t, _ = trader_get_or_create(username=f"bench{{i}}")
    t.tier = "market_maker"; t.save(update_fields=["tier"])
    for asset, a in [("USDC", "100000000")] + [(sym.upper(), "10000000000") for sym in SYMBOLS]:
        trader_fund(trader=t, asset=asset, amount=Decimal(a), mode="live", idempotency_key=f"bench:{{i}}:{{asset}}")
    orders_cancel_all(trader=t)
    keys.append(trader_key_create(trader=t, name="bench")[1])
print(json.dumps(keys))
"""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_matcher(env: dict[str, str]) -> subprocess.Popen:
    """``manage.py run_order_matcher`` on ``env["EXCHANGE_MATCHER_SOCKET"]``; returns once it listens."""
    path = Path(env["EXCHANGE_MATCHER_SOCKET"])
    log = Path("/tmp") / "bench_exchange_api_matcher.log"
    cmd = [sys.executable, "manage.py", "run_order_matcher"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"order matcher did not start (see {log})")
        time.sleep(0.1)
    return proc


def start_servers(env: dict[str, str], n: int, bare: bool = False) -> list[tuple[subprocess.Popen, int, Path]]:
    """``n`` daphne processes serving the project (or, ``bare``, the canned app of ``bench/bare_asgi.py``)."""
    daphne = Path(sys.executable).parent / "daphne"
    app, cwd = ("bare_asgi:app", ROOT / "bench") if bare else ("mmsite.asgi:application", ROOT)
    out = []
    for _ in range(n):
        port = free_port()
        log = Path("/tmp") / f"bench_exchange_api_daphne_{port}.log"
        cmd = [str(daphne), "-b", "127.0.0.1", "-p", str(port), app]
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        out.append((proc, port, log))
    return out


async def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"daphne on {port} exited with {proc.returncode}")
            try:
                if (await http.get("/api/v1/exchange/time")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"daphne on {port} did not answer in time")


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(math.ceil(p * len(ordered)) - 1, 0)] if ordered else float("nan")


async def seed_ladder(port: int, key: str, symbol: str) -> None:
    """A resting ask ladder (for crossing buys to trade against), from the extra trader."""
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}) as http:
        orders = [
            {"side": "sell", "quantity": "100000", "price": str(Decimal("0.6000") + Decimal("0.0001") * i)}
            for i in range(10)
        ]
        r = await http.post(f"/api/v1/exchange/{symbol}/orders/batch", json={"orders": orders})
        r.raise_for_status()


class RawHTTP:
    """A lean HTTP/1.1 keep-alive client (one connection, one request at a time): the bench measures the
    server, and a general client library costs more CPU per request than the server's order path on this
    2-core machine (``--client httpx`` uses httpx instead, as earlier runs did)."""

    def __init__(self, port: int, key: str):
        self.port, self.key = port, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {self.key}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(body or b'')}\r\n\r\n"
        self.writer.write(head.encode() + (body or b""))
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length, chunked, close = None, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(parts)
        else:
            data = await self.reader.readexactly(length or 0)
        if close:
            self.writer.close()
            self.writer = None
        return status, data


class HttpxClient:
    def __init__(self, port: int, key: str):
        import httpx

        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=30.0)

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        r = await self.http.request(method, path, content=body, headers=headers)
        return r.status_code, r.content


async def batch_loop(
    i: int, port: int, key: str, symbol: str, stop_at: float, size: int, lat: dict, errors: list, kind: str
) -> None:
    """``--batch N``: N resting orders per ``POST …/orders/batch``, then all of them in one
    ``DELETE …/orders/batch`` (each latency sample is one request of N orders)."""
    rng = random.Random(i)
    http = RawHTTP(port, key) if kind == "raw" else HttpxClient(port, key)
    while time.monotonic() < stop_at:
        orders = [
            {
                "side": "buy",
                "quantity": str(rng.randint(1, 50)),
                "price": str(Decimal("0.3000") + Decimal("0.0001") * rng.randint(0, 2000)),
            }
            for _ in range(size)
        ]
        t0 = time.perf_counter()
        status, data = await http.request(
            "POST", f"/api/v1/exchange/{symbol}/orders/batch", json.dumps({"orders": orders}).encode()
        )
        lat["place"].append(time.perf_counter() - t0)
        body = json.loads(data) if status == 200 else {}
        ids = [r["order"]["order_id"] for r in body.get("results", ()) if r.get("success")]
        if status != 200 or len(ids) != size:
            errors.append(f"batch place {status} {data[:200]!r}")
            continue
        lat["orders"].append(size)
        t0 = time.perf_counter()
        status, data = await http.request(
            "DELETE", f"/api/v1/exchange/{symbol}/orders/batch", json.dumps({"order_ids": ids}).encode()
        )
        lat["cancel"].append(time.perf_counter() - t0)
        if status != 200 or json.loads(data).get("successful") != size:
            errors.append(f"batch cancel {status} {data[:200]!r}")
        else:
            lat["cancelled"].append(size)


async def client_loop(
    i: int, port: int, key: str, symbol: str, stop_at: float, cross: float, lat: dict, errors: list, kind: str
) -> None:
    rng = random.Random(i)
    http = RawHTTP(port, key) if kind == "raw" else HttpxClient(port, key)
    while time.monotonic() < stop_at:
        crossing = rng.random() < cross
        if crossing:
            body = {"side": "buy", "quantity": "1", "price": "0.7000", "order_type": "ioc"}
        else:
            price = Decimal("0.3000") + Decimal("0.0001") * rng.randint(0, 2000)
            body = {"side": "buy", "quantity": str(rng.randint(1, 50)), "price": str(price)}
        t0 = time.perf_counter()
        status, data = await http.request("POST", f"/api/v1/exchange/{symbol}/orders", json.dumps(body).encode())
        lat["place"].append(time.perf_counter() - t0)
        if status != 201:
            errors.append(f"place {status} {data[:200]!r}")
            continue
        if crossing:
            lat["trades"].append(1)
            continue
        oid = json.loads(data)["order_id"]
        t0 = time.perf_counter()
        status, data = await http.request("DELETE", f"/api/v1/exchange/{symbol}/orders/{oid}")
        lat["cancel"].append(time.perf_counter() - t0)
        if status != 200:
            errors.append(f"cancel {status} {data[:200]!r}")


async def run(args, keys: list[str], servers) -> dict:
    ports = [p for _, p, _ in servers if p]
    for proc, port, _ in servers:
        if port:
            await wait_ready(port, proc)
    syms = symbols(args.symbols)
    for sym in syms if not args.bare else ():
        await seed_ladder(ports[0], keys[-1], sym)
    # warm-up: every server builds its book and opens its connections
    warm = {"place": [], "cancel": [], "trades": []}
    await asyncio.gather(
        *[
            client_loop(
                100 + i,
                ports[i % len(ports)],
                keys[i],
                syms[i % len(syms)],
                time.monotonic() + 2,
                0.0,
                warm,
                [],
                args.client,
            )
            for i in range(args.clients)
        ]
    )
    lat = {"place": [], "cancel": [], "trades": [], "orders": [], "cancelled": []}
    errors: list[str] = []
    cpu0 = cpu_seconds([proc.pid for proc, _, _ in servers]), cpu_seconds([os.getpid()]), cpu_seconds(postgres_pids())
    t0 = time.monotonic()
    stop_at = t0 + args.seconds
    if args.batch > 1:
        loops = [
            batch_loop(
                i, ports[i % len(ports)], keys[i], syms[i % len(syms)], stop_at, args.batch, lat, errors, args.client
            )
            for i in range(args.clients)
        ]
    else:
        loops = [
            client_loop(
                i, ports[i % len(ports)], keys[i], syms[i % len(syms)], stop_at, args.cross, lat, errors, args.client
            )
            for i in range(args.clients)
        ]
    await asyncio.gather(*loops)
    elapsed = time.monotonic() - t0
    cpu1 = cpu_seconds([proc.pid for proc, _, _ in servers]), cpu_seconds([os.getpid()]), cpu_seconds(postgres_pids())
    cpu = {name: b - a for name, a, b in zip(("servers", "client", "postgres"), cpu0, cpu1, strict=True)}
    return {"lat": lat, "errors": errors, "elapsed": elapsed, "cpu": cpu}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (and their threads) so far, from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def postgres_pids() -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() in ("postgres", "postmaster"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432"))
    ap.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"))
    ap.add_argument("--redis-db", type=int, default=14)
    ap.add_argument("--servers", type=int, default=1)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--cross", type=float, default=0.0, help="share of orders that cross the book and trade")
    ap.add_argument("--symbols", type=int, default=1, help="spread the clients over this many pairs (books)")
    ap.add_argument("--client", choices=["raw", "httpx"], default="raw", help="HTTP client of the bench (see RawHTTP)")
    ap.add_argument("--gateway", type=int, default=1, help="EXCHANGE_ORDER_GATEWAY (0: every order through Django)")
    ap.add_argument("--threads", type=int, default=1, help="EXCHANGE_GATEWAY_THREADS per server (or matcher)")
    ap.add_argument(
        "--batch",
        type=int,
        default=None,
        help="N > 1: N orders per batch place and batch cancel request; 1: single-order requests; "
        "not given: both, single-order requests then batches of 10, one report each",
    )
    ap.add_argument("--matcher", type=int, default=0, help="1: a matcher process runs the batches (run_order_matcher)")
    ap.add_argument("--fresh", action="store_true", help="drop and recreate the bench database first")
    ap.add_argument(
        "--bare",
        action="store_true",
        help="serve canned answers from a bare ASGI app (bench/bare_asgi.py): the ceiling of daphne alone",
    )
    ap.add_argument("--pool", type=int, default=4, help="DB_POOL per server process (0: CONN_MAX_AGE as in base)")
    args = ap.parse_args()

    if args.bare:
        args.batch = args.batch or 1
        return bare(args)
    ensure_database(args.pg, DB_NAME, args.fresh)
    db_url = f"{args.pg}/{DB_NAME}"
    redis_url = f"{args.redis}/{args.redis_db}"
    env = server_env(db_url, redis_url)
    env.update(
        REDIS_CACHE_DB=str(args.redis_db), REDIS_CELERY_DB=str(args.redis_db), REDIS_CHANNELS_DB=str(args.redis_db)
    )
    env["EXCHANGE_ORDER_GATEWAY"] = "true" if args.gateway else "false"
    env["EXCHANGE_GATEWAY_THREADS"] = str(args.threads)
    env["DB_POOL"] = str(args.pool)  # always set: 0 must turn the pool off (production's default is 10)
    keys = prepare(env, args.clients, args.symbols)
    vacuum(db_url)
    matcher = None
    if args.matcher:
        env["EXCHANGE_MATCHER_SOCKET"] = f"/tmp/bench_exchange_matcher_{os.getpid()}.sock"
        matcher = start_matcher(env)
    servers = start_servers(env, args.servers)
    if matcher is not None:
        servers.append((matcher, 0, Path("/tmp/bench_exchange_api_matcher.log")))
    sizes = [args.batch] if args.batch is not None else [1, 10]
    results = []
    try:
        for size in sizes:
            args.batch = size
            results.append((size, asyncio.run(run(args, keys, servers))))
    finally:
        for proc, _, _ in servers:
            proc.terminate()
        for proc, _, _ in servers:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    for size, result in results:
        args.batch = size
        report(args, result)
    check = subprocess.run(
        [sys.executable, "manage.py", "ledger_check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    print(check.stdout.strip().splitlines()[-1] if check.stdout.strip() else check.stderr.strip())


def bare(args) -> None:
    """``--bare``: the same clients and requests against daphne serving canned answers (no database, no
    Redis, no Django): what the HTTP server and the client alone cost per operation here."""
    servers = start_servers(dict(os.environ), args.servers, bare=True)
    try:
        result = asyncio.run(run(args, ["bare"] * (args.clients + 1), servers))
    finally:
        for proc, _, _ in servers:
            proc.terminate()
            proc.wait(timeout=10)
    report(args, result)


def report(args, result: dict) -> None:
    lat, elapsed = result["lat"], result["elapsed"]
    placed, cancelled, trades = len(lat["place"]), len(lat["cancel"]), len(lat["trades"])
    if args.batch > 1:  # count orders, not requests
        placed, cancelled = sum(lat["orders"]), sum(lat["cancelled"])
    all_ops = lat["place"] + lat["cancel"]
    if args.bare:
        print(
            f"\nbare daphne ({args.servers} process(es), canned answers, no application), {args.clients} clients, "
            f"{elapsed:.1f} s, client {args.client}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
    else:
        print(
            f"\nexchange API: {args.servers} daphne process(es), {args.clients} clients, {elapsed:.1f} s, "
            f"{args.symbols} pair(s), cross {args.cross:.0%}, DB_POOL {args.pool}, gateway {args.gateway} "
            f"({args.threads} threads), matcher {args.matcher}, client {args.client}, batch {args.batch}; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
    print(f"{'figure':44} {'measured':>12} {'target':>12}")
    rate = placed / elapsed
    verdict = "met" if rate >= TARGET_ORDERS_PER_S else "not met"
    print(f"{'orders placed per second':44} {rate:12.0f} {TARGET_ORDERS_PER_S:12.0f}   {verdict}")
    print(f"{'order operations per second (place+cancel)':44} {(placed + cancelled) / elapsed:12.0f} {'':>12}")
    print(f"{'trades (crossing IOC orders)':44} {trades:12d}")
    if args.batch > 1:
        print(f"  (batches of {args.batch}: orders counted one by one; latency is per request of {args.batch} orders)")
    for name, samples in (("place", lat["place"]), ("cancel", lat["cancel"]), ("all", all_ops)):
        if samples:
            print(
                f"{name + ' latency p50 / p99 (ms)':44} "
                f"{statistics.median(samples) * 1000:6.1f} / {pct(samples, 0.99) * 1000:5.1f} {'':>12}"
            )
    ops = max(placed + cancelled, 1)
    for name, seconds in result["cpu"].items():
        print(f"{'CPU per operation: ' + name + ' (ms)':44} {1000 * seconds / ops:12.2f}")
    print(f"{'errors':44} {len(result['errors']):12d}")
    for e in result["errors"][:5]:
        print("  ", e)


if __name__ == "__main__":
    main()
