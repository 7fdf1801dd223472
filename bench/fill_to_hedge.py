"""Benchmark: from a venue fill reaching our code to the bookmaker receiving the hedge request.

The production stack: PostgreSQL (database ``mmsite_bench_fills``, created by this script and
migrated), Redis (Celery broker, cache, channel layer, on databases of their own), a real Celery
worker started by this script on the ``fills`` and ``hedging`` queues with production settings
(``mmsite.settings.production``: acks late, prefetch 1, persistent DB connections), and the
simulated venue and bookmaker (both DB-backed, as in the demo).

For each of ``--fills`` fills (default 1,000):

1. a taker trades 1 contract against one of our resting orders on the simulated venue (the venue's
   side: not timed);
2. **t0**: the venue fill reaches our code: ``fill_apply`` (what the stream runner calls for a
   ``fill`` event): order row locked, dedupe, Fill row, commit, ``hedging.hedge_fill`` sent to
   Redis on commit;
3. the worker takes the task: ``hedge_fill`` writes and commits the HedgeBet row, then calls the
   bookmaker; **t1**: the simulated bookmaker receives the request (its ``SimBookmakerBet`` row's
   ``received_at``, stamped as the request enters ``place_bet``, before any check).

Reported: p50 / p90 / p99 / max of t1 - t0 (target p99 < 50 ms), and of the part spent in
``fill_apply`` before the task is on the broker. Fills arrive at ``--rate`` per second (default
100; 0 = back to back), so queueing shows if the worker cannot keep up.

Run:  .venv/bin/python bench/fill_to_hedge.py [--fills 1000] [--rate 100] [--concurrency 2]
      [--server postgres://postgres@127.0.0.1:5432] [--redis redis://127.0.0.1:6379]
Not a test; not timed in CI. Needs PostgreSQL and Redis; uses (and flushes) Redis database
``--redis-db`` (default 11) for the broker, the cache and the channel layer, each under its prefix.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DB_NAME = "mmsite_bench_fills"
TARGET_P99_MS = 50.0


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--fills", type=int, default=1000)
    p.add_argument("--rate", type=float, default=100.0, help="fills per second (0: back to back)")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes")
    p.add_argument("--orders", type=int, default=50, help="resting orders the fills are spread over")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--redis", default="redis://127.0.0.1:6379")
    p.add_argument("--redis-db", type=int, default=11, help="Redis database (broker, cache, channels; flushed)")
    return p.parse_args()


def environment(args) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "mmsite.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "localhost",
        "DATABASE_URL": f"{args.server.rstrip('/')}/{DB_NAME}",
        "REDIS_URL": args.redis,
        "REDIS_CACHE_DB": str(args.redis_db),
        "REDIS_CELERY_DB": str(args.redis_db),
        "REDIS_CHANNELS_DB": str(args.redis_db),
        "CACHE_KEY_PREFIX": "benchfills",
        "CHANNELS_PREFIX": "benchfills-asgi",
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }


def create_database(server: str) -> None:
    import psycopg

    with psycopg.connect(f"{server.rstrip('/')}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
            print(f"created database {DB_NAME}")


def flush_redis(url: str, db: int) -> None:
    import redis

    redis.Redis.from_url(f"{url.rstrip('/')}/{db}").flushdb()


def start_worker(env: dict[str, str], concurrency: int) -> subprocess.Popen:
    cmd = [
        str(Path(sys.executable).with_name("celery")),
        "-A",
        "mmsite",
        "worker",
        "-Q",
        "fills,hedging",
        "-c",
        str(concurrency),
        "-l",
        "warning",
        "-n",
        f"benchfills-{os.getpid()}@%h",
    ]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, start_new_session=True)


def setup_book(n_orders: int):
    """A client hedging on a simulated bookmaker, one account, and ``n_orders`` resting sells."""
    import datetime as dt

    from django.utils import timezone

    from exchanges.connectors.base import PlaceRequest
    from exchanges.connectors.registry import get_connector
    from hedging.models import Bookmaker
    from trading.choices import OrderStatus
    from trading.models import Client, ExchangeAccount, Fixture, Order, Tournament

    tag = f"{int(time.time())}"
    bookmaker, _ = Bookmaker.objects.get_or_create(name="benchbook", defaults={"simulated": True})
    client = Client.objects.create(name=f"bench{tag}:benchbook", hedge_bookmaker=bookmaker)
    account = ExchangeAccount.objects.create(
        client=client, exchange="polymarket", username=f"0xbench{tag}", max_outcome_stake=Decimal("100000")
    )
    tournament, _ = Tournament.objects.get_or_create(tournament_id=990001, defaults={"name": "Bench League"})
    fixture = Fixture.objects.create(
        fixture_id=f"idbench{tag}",
        tournament=tournament,
        participant1_name="Home",
        participant2_name="Away",
        start_time=timezone.now() + dt.timedelta(days=1),
    )
    venue = get_connector("polymarket")
    orders = []
    for i in range(n_orders):
        coid = f"mm-bench-{tag}-{i}"
        vo = venue.place(PlaceRequest(coid, account.username, f"tok-{i}", "sell", Decimal("0.55"), Decimal("1000")))
        orders.append(
            Order.objects.create(
                client=client,
                account=account,
                fixture=fixture,
                exchange="polymarket",
                outcome_id=101 + i,
                player_id=0,
                client_order_id=coid,
                exchange_order_id=vo.venue_order_id,
                exchange_outcome_id=f"tok-{i}",
                order_status=OrderStatus.PLACED,
                order_cents=Decimal("0.55"),
                order_stake=Decimal("1000"),
                back=False,
                bookmaker_outcome_price=Decimal("1.808"),
                bookmaker_outcome_limit=Decimal("5000"),
            )
        )
    return venue, orders


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def run_fills(venue, orders, n: int, rate: float) -> list[tuple[int, float, float]]:
    from trading.services.fills import fill_apply

    out = []
    interval = 1.0 / rate if rate > 0 else 0.0
    next_at = time.perf_counter()
    for i in range(n):
        order = orders[i % len(orders)]
        venue_fill = venue.match(venue_order_id=order.exchange_order_id, size=Decimal("1"))
        if interval:
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            next_at += interval
        t0 = time.time()
        fill = fill_apply(exchange=order.exchange, venue_fill=venue_fill, source="stream")
        t_sent = time.time()
        out.append((fill.pk, t0, t_sent))
    return out


def bet_rows_written(fill_ids: list[int]) -> dict[int, float]:
    """When the worker committed each fill's HedgeBet row (its ``created_at``)."""
    from hedging.models import HedgeBet

    rows = HedgeBet.objects.filter(fill_id__in=fill_ids).values_list("fill_id", "created_at")
    return {fid: created.timestamp() for fid, created in rows}


def wait_for_bets(fill_ids: list[int], timeout: float) -> dict[int, float]:
    from hedging.models import SimBookmakerBet

    keys = {f"hedge-{fid}": fid for fid in fill_ids}
    deadline = time.monotonic() + timeout
    found: dict[int, float] = {}
    while time.monotonic() < deadline:
        rows = SimBookmakerBet.objects.filter(idempotency_key__in=list(keys)).values_list(
            "idempotency_key", "received_at"
        )
        found = {keys[k]: received.timestamp() for k, received in rows}
        if len(found) == len(keys):
            break
        time.sleep(0.2)
    return found


def main() -> int:
    args = parse_args()
    env = environment(args)
    create_database(args.server)
    flush_redis(args.redis, args.redis_db)
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, cwd=ROOT, env={**os.environ, **env}, check=True)
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    worker = start_worker(env, args.concurrency)
    try:
        venue, orders = setup_book(args.orders)
        warm = run_fills(venue, orders, args.warmup, rate=50)
        if len(wait_for_bets([f for f, _, _ in warm], timeout=60)) < len(warm):
            print("the worker did not hedge the warm-up fills within 60 s", file=sys.stderr)
            return 1
        started = time.perf_counter()
        timed = run_fills(venue, orders, args.fills, args.rate)
        sent_for = time.perf_counter() - started
        received = wait_for_bets([f for f, _, _ in timed], timeout=120 + args.fills / 10)
        written = bet_rows_written([f for f, _, _ in timed])
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        connection.close()
        flush_redis(args.redis, args.redis_db)

    missing = [f for f, _, _ in timed if f not in received]
    total = sorted((received[f] - t0) * 1000 for f, t0, _ in timed if f in received)
    ours = sorted((ts - t0) * 1000 for _, t0, ts in timed)
    to_row = sorted((written[f] - ts) * 1000 for f, _, ts in timed if f in written)
    to_book = sorted((received[f] - written[f]) * 1000 for f, _, _ in timed if f in received and f in written)
    print()
    print(
        f"fill -> hedge request at the bookmaker ({platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f})"
    )
    print(
        f"  fills: {len(timed)} at {args.rate or 'max'} /s (sent in {sent_for:.1f} s), worker -c {args.concurrency} "
        f"on fills,hedging; {len(missing)} not hedged in time"
    )
    print(f"  {'':34} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}   target")
    for label, values, target in (
        ("fill received -> bookmaker request", total, f"p99 < {TARGET_P99_MS:.0f} ms"),
        ("  fill_apply, commit, enqueue", ours, ""),
        ("  queue, worker, bet row insert", to_row, ""),
        ("  bet row -> bookmaker receives", to_book, ""),
    ):
        cells = " ".join(f"{percentile(values, q):8.1f}" for q in (50, 90, 99)) + f" {values[-1] if values else 0:8.1f}"
        print(f"  {label:34} {cells}   {target}")
    if received:
        span = max(received.values()) - min(t0 for _, t0, _ in timed)
        print(f"  hedges reached the bookmaker at {len(received) / span:.1f} /s over {span:.1f} s")
    p99 = percentile(total, 99)
    verdict = "MET" if p99 < TARGET_P99_MS and not missing else "NOT MET"
    print(f"  target p99 < {TARGET_P99_MS:.0f} ms: {verdict} (p99 = {p99:.1f} ms)")
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
