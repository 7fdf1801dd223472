#!/usr/bin/env python
"""Latency of the MM client API's heavy reads over a million-row PostgreSQL database.

Loads (once) 1,000,000 orders, 1,000,000 fills and 1,000,000 hedge bets owned by one client (the
worst case: every row matches the tenant filter), plus a small second client, into its own
database (``mmsite_bench``), then starts ``daphne mmsite.asgi:application`` on a loopback port and
times real HTTP requests with httpx:

    GET /api/v1/orders?pageSize=2000   GET /api/v1/positions
    GET /api/v1/positions/summary      GET /api/v1/pnl

Each is warmed up, then requested ``--requests`` times in sequence; the median and p99
(nearest rank) are printed beside the target (p99 < 300 ms).

    .venv/bin/python bench/api_reads.py                # load if absent, then measure
    .venv/bin/python bench/api_reads.py --reload       # drop the bench rows and load again
    .venv/bin/python bench/api_reads.py --extra        # also a few informative variants
    .venv/bin/python bench/api_reads.py --explain      # EXPLAIN ANALYZE of the positions/PnL SQL
    .venv/bin/python bench/api_reads.py --only pnl     # just the paths containing "pnl"

Before measuring, the PnL rollup is brought up to date as production's beat task keeps it
(``pnl_days_refresh``: the database triggers marked every day the load wrote). ``/pnl`` is then
also timed with the latest 1 and 7 days of fills marked stale (computed live), and its answer
is checked against the live query's.

The data: 5,000 fixtures over the past year and the next two weeks, five exchanges, three
outcomes plus some player props. Orders on finished fixtures are filled, cancelled (a third of
them part-matched), expired or failed, and matched ones are settled; orders on upcoming fixtures
are mostly resting (a few percent of all orders are open). Matched orders get 1-4 fills summing
to their matched stake; every fill has one bet: 97% placed, 2.5% declined, 0.5% pending.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
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

TARGET_P99_MS = 300.0
BIG_CLIENT, SMALL_CLIENT = "bench:vertex", "benchsmall:vertex"
EXCHANGES = ["polymarket", "kalshi", "betfair", "smarkets", "sxbet"]
N_FIXTURES = 5000
SMALL_ORDERS = 5000


# --- database -----------------------------------------------------------------------------------------


def ensure_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def setup_django(db_url: str) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmsite.settings")
    for var in ("REDIS_URL",):  # the bench never touches the shared Redis
        os.environ.pop(var, None)
    import django

    django.setup()


def loaded(n_orders: int) -> bool:
    from hedging.models import HedgeBet
    from trading.models import Client, Fill, Order

    client = Client.objects.filter(name=BIG_CLIENT).first()
    if client is None:
        return False
    return (
        Order.objects.filter(client=client).count() == n_orders
        and Fill.objects.filter(client=client).count() == n_orders
        and HedgeBet.objects.filter(client=client).count() == n_orders
    )


# --- data generation ------------------------------------------------------------------------------------

ORDER_COLS = (
    "id client_id account_id fixture_id exchange outcome_id player_id client_order_id exchange_order_id "
    "exchange_outcome_id order_status matched_status order_cents order_stake matched_stake back "
    "settlement_status settled_at bookmaker_outcome_price bookmaker_outcome_limit bookmaker_outcome_active "
    "status_reason created_at matched_at updated_at"
).split()
FILL_COLS = "id order_id client_id exchange venue_trade_id price stake source matched_at created_at".split()
BET_COLS = (
    "id client_id order_id fill_id bookmaker_id idempotency_key bookmaker_bet_id placed_price placed_stake "
    "bet_status settlement_status decline_reason attempts placed_at settled_at created_at updated_at"
).split()

ORDER_SETTLEMENTS = ["WON", "LOST", "VOID", "HALF_WON", "HALF_LOST"]
ORDER_SETTLEMENT_WEIGHTS = [45, 45, 3, 3.5, 3.5]
BET_SETTLEMENT = {"WON": "lost", "LOST": "won", "VOID": "void", "HALF_WON": "half_lost", "HALF_LOST": "half_won"}


def tsv(values) -> str:
    return "\t".join(r"\N" if v is None else str(v) for v in values) + "\n"


def ts(value: dt.datetime) -> str:
    return value.isoformat()


def q4(x: float) -> Decimal:
    return Decimal(f"{x:.4f}")


class Generator:
    """Deterministic (seeded) rows for one client, written as COPY text into three buffers."""

    def __init__(self, rng: random.Random, now: dt.datetime, fixtures, bookmaker_id: int):
        self.rng, self.now, self.fixtures, self.bookmaker_id = rng, now, fixtures, bookmaker_id
        self.orders, self.fills, self.bets = io.StringIO(), io.StringIO(), io.StringIO()
        self.next_order, self.next_fill, self.next_bet = 1, 1, 1

    def order_rows(self, client_id: int, accounts: dict[str, int], n: int) -> list[tuple]:
        """Write ``n`` orders; return (order_id, ...) of the matched ones for the fills pass."""
        rng, now = self.rng, self.now
        matched = []
        for _ in range(n):
            oid = self.next_order
            self.next_order += 1
            fixture_id, start = self.fixtures[rng.randrange(len(self.fixtures))]
            exchange = rng.choice(EXCHANGES[: len(accounts)])
            upcoming = start > now
            created = (now if upcoming else start) - dt.timedelta(seconds=rng.uniform(60, 3 * 86400))
            cents = q4(rng.randint(5, 95) / 100)
            stake = Decimal(rng.choice([25, 50, 100, 100, 200, 250, 500]))
            roll = rng.random()
            if upcoming:
                status = (
                    "PLACED"
                    if roll < 0.60
                    else "PENDING_PLACEMENT"
                    if roll < 0.65
                    else "FILLED"
                    if roll < 0.80
                    else "CANCELLED"
                )
            else:
                status = (
                    "FILLED" if roll < 0.55 else "CANCELLED" if roll < 0.90 else "EXPIRED" if roll < 0.97 else "FAILED"
                )
            if status == "FILLED":
                matched_stake = stake
            elif status in ("CANCELLED", "PLACED") and rng.random() < 0.3:
                matched_stake = q4(float(stake) * rng.uniform(0.1, 0.9))
            else:
                matched_stake = Decimal(0)
            matched_status = (
                "NOT_MATCHED"
                if matched_stake == 0
                else "FULLY_MATCHED"
                if matched_stake == stake
                else "PARTIALLY_MATCHED"
            )
            settled = matched_stake > 0 and not upcoming and start < now - dt.timedelta(hours=6)
            settlement = rng.choices(ORDER_SETTLEMENTS, ORDER_SETTLEMENT_WEIGHTS)[0] if settled else "UNDECIDED"
            settled_at = start + dt.timedelta(hours=3) if settled else None
            bmp = q4(1 / (float(cents) + 0.02))
            matched_at = created + dt.timedelta(seconds=rng.uniform(1, 600)) if matched_stake > 0 else None
            back = rng.random() < 0.7
            venue_id = None if status in ("PENDING_PLACEMENT", "FAILED") else f"bx-{client_id}-{oid}"
            self.orders.write(
                tsv(
                    (
                        oid,
                        client_id,
                        accounts[exchange],
                        fixture_id,
                        exchange,
                        rng.choice((101, 102, 103)),
                        rng.randint(1, 40) if rng.random() < 0.1 else 0,
                        f"bench-{client_id}-{oid}",
                        venue_id,
                        str(rng.randint(10**7, 10**8)),
                        status,
                        matched_status,
                        cents,
                        stake,
                        matched_stake,
                        "t" if back else "f",
                        settlement,
                        ts(settled_at) if settled_at else None,
                        bmp,
                        Decimal(rng.choice([500, 1000, 2500, 5000])),
                        "t",
                        "",
                        ts(created),
                        ts(matched_at) if matched_at else None,
                        ts(settled_at or matched_at or created),
                    )
                )
            )
            if matched_stake > 0:
                matched.append((oid, client_id, exchange, matched_stake, cents, bmp, settlement, matched_at))
        return matched

    def fill_and_bet_rows(self, matched: list[tuple], n_fills: int) -> None:
        """Exactly ``n_fills`` fills over the matched orders (1-4 each), one bet per fill."""
        rng = self.rng
        if n_fills < len(matched):
            raise SystemExit(f"{n_fills} fills cannot cover {len(matched)} matched orders")
        counts = [1] * len(matched)
        extra = n_fills - len(matched)
        while extra:
            i = rng.randrange(len(matched))
            if counts[i] < 4:
                counts[i] += 1
                extra -= 1
        for (oid, client_id, exchange, matched_stake, cents, bmp, settlement, matched_at), k in zip(
            matched, counts, strict=True
        ):
            parts = _split(matched_stake, k, rng)
            for part in parts:
                fid = self.next_fill
                self.next_fill += 1
                price = min(Decimal("0.99"), max(Decimal("0.01"), cents - Decimal(rng.choice((0, 0, 0, 1))) / 100))
                self.fills.write(
                    tsv(
                        (
                            fid,
                            oid,
                            client_id,
                            exchange,
                            f"bt-{fid}",
                            price,
                            part,
                            "stream",
                            ts(matched_at),
                            ts(matched_at),
                        )
                    )
                )
                roll = rng.random()
                bet_status = "placed" if roll < 0.97 else "declined" if roll < 0.995 else "pending"
                odds = max(Decimal("1.01"), bmp - q4(rng.uniform(-0.01, 0.03)))
                b_stake = max(Decimal("0.01"), (part * price * Decimal("1.05")).quantize(Decimal("0.01")))
                lagging = rng.random() < 0.01
                b_settlement = (
                    BET_SETTLEMENT[settlement]
                    if bet_status == "placed" and settlement != "UNDECIDED" and not lagging
                    else "undecided"
                )
                placed_at = matched_at + dt.timedelta(seconds=3)
                bid = self.next_bet
                self.next_bet += 1
                self.bets.write(
                    tsv(
                        (
                            bid,
                            client_id,
                            oid,
                            fid,
                            self.bookmaker_id,
                            f"bench-bet-{bid}",
                            str(bid) if bet_status == "placed" else "",
                            odds,
                            b_stake,
                            bet_status,
                            b_settlement,
                            "limit" if bet_status == "declined" else "",
                            1,
                            ts(placed_at) if bet_status == "placed" else None,
                            ts(placed_at + dt.timedelta(days=1)) if b_settlement != "undecided" else None,
                            ts(placed_at),
                            ts(placed_at),
                        )
                    )
                )


def _split(total: Decimal, k: int, rng: random.Random) -> list[Decimal]:
    if k == 1:
        return [total]
    cuts = sorted(q4(float(total) * rng.uniform(0.1, 0.9)) for _ in range(k - 1))
    edges = [Decimal(0), *cuts, total]
    parts = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    if any(p <= 0 for p in parts):  # rare collision of cut points: one fill
        return [total]
    return parts


def load(db_url: str, n_orders: int, seed: int) -> None:
    import psycopg
    from django.db import connection, transaction
    from django.utils import timezone

    from hedging.models import Bookmaker
    from trading.models import Client, ExchangeAccount, Fixture, Tournament

    t0 = time.perf_counter()
    rng = random.Random(seed)
    now = timezone.now()
    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE hedging_hedgebet, trading_fill, trading_order, trading_exchangeaccount, trading_fixture, "
            "trading_tournament, trading_apikey, trading_clienttradingstate, trading_tradingcontrolevent, "
            "trading_client, hedging_bookmaker RESTART IDENTITY CASCADE"
        )
    with transaction.atomic():
        bookmaker = Bookmaker.objects.create(name="vertex", display_name="Vertex", simulated=True)
        big = Client.objects.create(name=BIG_CLIENT, display_name="Bench", hedge_bookmaker=bookmaker)
        small = Client.objects.create(name=SMALL_CLIENT, display_name="Bench small", hedge_bookmaker=bookmaker)
        accounts = {
            c.pk: {
                ex: ExchangeAccount.objects.create(client=c, exchange=ex, username=f"{c.pk}-{ex}").pk
                for ex in (EXCHANGES if c is big else EXCHANGES[:2])
            }
            for c in (big, small)
        }
        tournaments = Tournament.objects.bulk_create(
            Tournament(tournament_id=1000 + i, name=f"Bench league {i}", sport_name="Soccer") for i in range(20)
        )
        span = dt.timedelta(days=379).total_seconds()
        fixtures = Fixture.objects.bulk_create(
            Fixture(
                fixture_id=f"idbench{i:07d}",
                tournament=tournaments[i % 20],
                participant1_name=f"Home {i}",
                participant2_name=f"Away {i}",
                start_time=now - dt.timedelta(days=365) + dt.timedelta(seconds=span * i / N_FIXTURES),
            )
            for i in range(N_FIXTURES)
        )
        Fixture.objects.filter(start_time__lt=now).update(status="finished")
    fixture_refs = [(f.pk, f.start_time) for f in fixtures]

    gen = Generator(rng, now, fixture_refs, bookmaker.pk)
    matched_big = gen.order_rows(big.pk, accounts[big.pk], n_orders)
    matched_small = gen.order_rows(small.pk, accounts[small.pk], SMALL_ORDERS)
    gen.fill_and_bet_rows(matched_big, n_orders)
    gen.fill_and_bet_rows(matched_small, round(len(matched_small) * 1.5))
    print(f"generated rows in {time.perf_counter() - t0:.1f}s; copying")

    connection.close()
    with psycopg.connect(db_url) as conn:
        with conn.cursor() as cur:
            for table, cols, buf in (
                ("trading_order", ORDER_COLS, gen.orders),
                ("trading_fill", FILL_COLS, gen.fills),
                ("hedging_hedgebet", BET_COLS, gen.bets),
            ):
                t1 = time.perf_counter()
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    data = buf.getvalue()
                    for i in range(0, len(data), 1 << 20):
                        copy.write(data[i : i + (1 << 20)])
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                print(f"  {table}: {time.perf_counter() - t1:.1f}s")
        conn.commit()
        conn.autocommit = True
        t1 = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) trading_order, trading_fill, hedging_hedgebet, trading_fixture")
        print(f"  vacuum analyze: {time.perf_counter() - t1:.1f}s")
    print(f"loaded in {time.perf_counter() - t0:.1f}s")


# --- measurement ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_url: str, port: int, log: Path, pg_options: str = "") -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    if pg_options:  # libpq reads PGOPTIONS: server settings for the server's connections only
        env["PGOPTIONS"] = pg_options
    env.update(
        DATABASE_URL=db_url,
        DJANGO_SETTINGS_MODULE="mmsite.settings",
        DEBUG="False",
        MM_API_RATE_PER_MINUTE=str(10**9),
        LOG_LEVEL="WARNING",
    )
    daphne = Path(sys.executable).parent / "daphne"
    cmd = [str(daphne), "-b", "127.0.0.1", "-p", str(port), "mmsite.asgi:application"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_ready(http, key: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daphne exited with {proc.returncode}")
        try:
            if http.get("/api/v1/me", headers={"X-API-Key": key}).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("daphne did not answer in time")


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]  # nearest rank


def measure(http, key: str, path: str, requests: int, warmup: int) -> tuple[float, float, int]:
    headers = {"X-API-Key": key}
    size = 0
    for _ in range(warmup):
        resp = http.get(path, headers=headers)
        if resp.status_code != 200:
            raise SystemExit(f"GET {path}: {resp.status_code} {resp.text[:300]}")
        size = len(resp.content)
    samples = []
    for _ in range(requests):
        t0 = time.perf_counter()
        resp = http.get(path, headers=headers)
        resp.content  # noqa: B018 - the body is part of the latency
        samples.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise SystemExit(f"GET {path}: {resp.status_code}")
    return statistics.median(samples), p99(samples), size


def refresh_rollup() -> None:
    """Recompute every stale day of the PnL rollup, as production's beat task does every minute."""
    from trading.models import PnlDirtyDay
    from trading.services.pnl import pnl_days_refresh

    stale = PnlDirtyDay.objects.count()
    t0 = time.perf_counter()
    done = pnl_days_refresh(limit=None)
    print(f"PnL rollup: {done} of {stale} stale days recomputed in {time.perf_counter() - t0:.1f}s", flush=True)


def mark_latest_days(days: int) -> None:
    """Mark the big client's latest ``days`` days with fills stale, as a write to each would."""
    from django.db import connection

    from trading.models import Client

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO trading_pnldirtyday (client_id, day, generation) "
            "SELECT client_id, day, nextval('trading_pnl_generation_seq') FROM trading_pnlday "
            "WHERE client_id = %s ORDER BY day DESC LIMIT %s "
            "ON CONFLICT (client_id, day) DO UPDATE SET generation = EXCLUDED.generation",
            [Client.objects.get(name=BIG_CLIENT).pk, days],
        )


def check_pnl(http, key: str) -> None:
    """Print /pnl's figures beside the live query's (the rollup must not change a digit)."""
    from trading.models import Client
    from trading.selectors import pnl

    body = http.get("/api/v1/pnl", headers={"X-API-Key": key}).json()
    t0 = time.perf_counter()
    live = pnl.pnl_summary(fills=pnl.pnl_fills(client=Client.objects.get(name=BIG_CLIENT)))
    took = (time.perf_counter() - t0) * 1000
    same = all(body[k] == float(v) for k, v in live.items())
    print(f"GET /api/v1/pnl: {body}")
    print(f"live query ({took:.0f} ms in-process): {'identical' if same else 'DIFFERENT: ' + str(live)}\n", flush=True)


def explain() -> None:
    """EXPLAIN ANALYZE every query the positions, summary and PnL selectors run (whole range)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from trading.models import Client
    from trading.selectors import pnl, positions

    client = Client.objects.get(name=BIG_CLIENT)
    active = positions.position_orders(client=client).filter(positions.position_status_q([]))
    calls = {
        "positions": lambda: positions.positions(orders=active),
        "positions/summary": lambda: positions.positions_summary(orders=active),
        "pnl (live)": lambda: pnl.pnl_summary(fills=pnl.pnl_fills(client=client)),
        "pnl (rollup, as GET /pnl)": lambda: pnl.pnl_report(client=client),
    }
    for name, call in calls.items():
        with CaptureQueriesContext(connection) as ctx:
            call()
        for query in ctx.captured_queries:
            with connection.cursor() as cur:
                cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query['sql']}")
                print(f"--- {name}\n" + "\n".join(r[0] for r in cur.fetchall()))


def report(label: str, p50: float, p99_ms: float, size: int) -> None:
    verdict = "OK" if p99_ms < TARGET_P99_MS else "MISS"
    print(
        f"GET {label:<44} p50 {p50:7.1f} ms  p99 {p99_ms:7.1f} ms  "
        f"target p99 < {TARGET_P99_MS:.0f} ms  {verdict}   ({size / 1024:,.0f} KiB)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--db", default="mmsite_bench", help="database to create and use")
    parser.add_argument("--orders", type=int, default=1_000_000, help="orders (= fills = bets) of the big client")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reload", action="store_true", help="reload the data even if present")
    parser.add_argument("--extra", action="store_true", help="also time a few informative variants")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of positions and PnL")
    parser.add_argument("--seed", type=int, default=20260201)
    parser.add_argument("--only", default="", help="time only the paths containing this text, e.g. pnl")
    parser.add_argument(
        "--pg-options", default="", help="PGOPTIONS for the server's connections, e.g. '-c jit=off -c work_mem=64MB'"
    )
    args = parser.parse_args()

    db_url = f"{args.server}/{args.db}"
    ensure_database(args.server, args.db)
    setup_django(db_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if args.reload or not loaded(args.orders):
        load(db_url, args.orders, args.seed)
    else:
        print(f"data present in {args.db} ({args.orders:,} orders/fills/bets): not reloading (--reload to force)")
    refresh_rollup()
    if args.explain:
        explain()

    from trading.models import Client
    from trading.services.clients import api_key_create

    key = api_key_create(client=Client.objects.get(name=BIG_CLIENT))[1]
    from django.db import connections

    connections.close_all()

    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    port = free_port()
    log = Path("/tmp") / f"bench_api_reads_daphne_{port}.log"
    proc = start_server(db_url, port, log, args.pg_options)
    paths = ["/api/v1/orders?pageSize=2000", "/api/v1/positions", "/api/v1/positions/summary", "/api/v1/pnl"]
    if args.extra:
        month_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).date().isoformat()
        paths += [
            f"/api/v1/pnl?fromDate={month_ago}",
            "/api/v1/positions?status=open",
            "/api/v1/positions/summary?status=filled",
            "/api/v1/orders?pageSize=2000&page=400",
            "/api/v1/orders?status=PLACED&pageSize=2000",
        ]
    paths = [p for p in paths if args.only in p]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            wait_ready(http, key, proc)
            print(f"daphne on :{port} (log {log}); {args.warmup} warm-up + {args.requests} requests each")
            print(f"PGOPTIONS: {args.pg_options or '(server defaults)'}; load average {os.getloadavg()[0]:.1f}\n")
            if "/api/v1/pnl" in paths:
                check_pnl(http, key)
            for path in paths:
                report(path, *measure(http, key, path, args.requests, args.warmup))
            if "/api/v1/pnl" in paths:
                for days in (1, 7):  # what a reader meets between two refreshes: recent days written to
                    mark_latest_days(days)
                    report(f"/api/v1/pnl ({days} days stale)", *measure(http, key, "/api/v1/pnl", args.requests, 1))
                    refresh_rollup()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
