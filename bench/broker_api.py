#!/usr/bin/env python
"""Latency of the broker API with 10,000 traders under one broker, on the production stack.

Loads (once) one broker with 10,000 clients (users, traders, DCT ledger accounts, each funded by one
balanced ledger transaction) into a PostgreSQL database of its own (``mmsite_bench_broker``), then
starts ``daphne mmsite.asgi:application`` against it with Redis as the cache and throttle store
(``REDIS_URL``, database ``--redis-db``), and times real HTTP requests with httpx:

    GET  /api/v1/broker/clients?page=N&page_size=100   every page (100 requests), ``--passes`` times
    POST /api/v1/broker/clients/{id}/deposit            ``--deposits`` deposits to random clients

Each is warmed up, then the median and p99 (nearest rank) per request are printed beside the target
(p99 < 100 ms per request). After the run the ledger invariants are checked (``ledger_violations``)
and the deposits are verified against the balances.

    .venv/bin/python bench/broker_api.py                 # load if absent, then measure
    .venv/bin/python bench/broker_api.py --reload        # drop the database and load again
    .venv/bin/python bench/broker_api.py --page-size 1000
"""

from __future__ import annotations

import argparse
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

TARGET_P99_MS = 100.0
DB_NAME = "mmsite_bench_broker"
BROKER = "bench-broker"
N_CLIENTS = 10_000


def ensure_database(server_url: str, name: str, *, drop: bool) -> None:
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        if drop:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def setup_django(db_url: str, redis_url: str, redis_db: int) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ["REDIS_URL"] = redis_url
    os.environ["REDIS_CACHE_DB"] = str(redis_db)
    os.environ["REDIS_CELERY_DB"] = str(redis_db)
    os.environ["REDIS_CHANNELS_DB"] = str(redis_db)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmsite.settings")
    import django

    django.setup()


def load(n_clients: int) -> str:
    """The broker, funded, with ``n_clients`` clients; returns a new all-scopes key."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from brokers.choices import ALL_SCOPES
    from brokers.models import Broker, BrokerClient
    from brokers.services import brokers as broker_services
    from brokers.services.clients import client_username
    from exchanges.ledger import services as ledger
    from exchanges.ledger.models import LedgerAccount
    from exchanges.models import Trader

    broker = Broker.objects.filter(name=BROKER).first()
    if broker is not None and BrokerClient.objects.filter(broker=broker).count() == n_clients:
        print(f"{n_clients} clients of {BROKER} already loaded")
        return broker_services.broker_key_create(broker=broker, scopes=ALL_SCOPES, name="bench")[1]
    if broker is not None:
        raise SystemExit(f"{BROKER} exists with another number of clients: run with --reload")
    t0 = time.perf_counter()
    broker = broker_services.broker_create(name=BROKER, wallet_address="0x" + "be" * 20)
    broker_services.broker_fund(broker=broker, amount=Decimal(n_clients * 1000), idempotency_key="bench:fund")
    User = get_user_model()
    unusable = make_password(None)
    with transaction.atomic():
        users = User.objects.bulk_create(
            [
                User(username=client_username(broker=broker, user_id=f"u{i:05d}"), password=unusable)
                for i in range(n_clients)
            ],
            batch_size=2000,
        )
        traders = Trader.objects.bulk_create([Trader(user=u) for u in users], batch_size=2000)
        accounts = LedgerAccount.objects.bulk_create(
            [LedgerAccount(owner_type="trader", owner_id=str(t.pk), asset="DCT", mode="live") for t in traders],
            batch_size=2000,
        )
        BrokerClient.objects.bulk_create(
            [
                BrokerClient(broker=broker, trader=t, account=a, user_id=f"u{i:05d}")
                for i, (t, a) in enumerate(zip(traders, accounts, strict=True))
            ],
            batch_size=2000,
        )
        # every client gets 100 DCT in one balanced transaction (the ledger keeps its invariants)
        legs = [(broker.account_id, Decimal(-100 * n_clients))] + [(a.pk, Decimal(100)) for a in accounts]
        ledger.transfer(idempotency_key="bench:seed", kind="broker_deposit", legs=legs, memo="bench seed")
    from django.db import connection

    with connection.cursor() as cur:  # fresh planner statistics, as autovacuum would give a live database
        cur.execute("ANALYZE")
    print(f"loaded {n_clients} clients in {time.perf_counter() - t0:.1f} s")
    return broker_services.broker_key_create(broker=broker, scopes=ALL_SCOPES, name="bench")[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_url: str, redis_url: str, redis_db: int, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        REDIS_CACHE_DB=str(redis_db),
        REDIS_CELERY_DB=str(redis_db),
        REDIS_CHANNELS_DB=str(redis_db),
        DJANGO_SETTINGS_MODULE="mmsite.settings",
        DEBUG="False",
        BROKER_API_RATE_PER_MINUTE=str(10**9),
        LOG_LEVEL="WARNING",
    )
    daphne = Path(sys.executable).parent / "daphne"
    cmd = [str(daphne), "-b", "127.0.0.1", "-p", str(port), "mmsite.asgi:application"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_ready(http, proc, key: str) -> None:
    import httpx

    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"daphne exited with {proc.returncode}")
        try:
            if http.get("/api/v1/broker/balance", headers={"X-API-Key": key}).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("daphne did not answer in time")


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def report(label: str, samples: list[float]) -> bool:
    med, worst = statistics.median(samples), p99(samples)
    ok = worst < TARGET_P99_MS
    print(
        f"{label:<52} n={len(samples):>4}  p50 {med:7.1f} ms  p99 {worst:7.1f} ms"
        f"   target p99 < {TARGET_P99_MS:.0f} ms  {'OK' if ok else 'MISSED'}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database for cache/throttles")
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("--clients", type=int, default=N_CLIENTS)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--passes", type=int, default=2, help="times every page is read")
    parser.add_argument("--deposits", type=int, default=300)
    args = parser.parse_args()

    db_url = f"{args.server}/{DB_NAME}"
    ensure_database(args.server, DB_NAME, drop=args.reload)
    setup_django(db_url, args.redis, args.redis_db)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    key = load(args.clients)

    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    port = free_port()
    log = Path("/tmp") / f"bench_broker_api_daphne_{port}.log"
    proc = start_server(db_url, args.redis, args.redis_db, port, log)
    headers = {"X-API-Key": key}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait_ready(http, proc, key)
            print(f"daphne on :{port} (log {log}); load average {os.getloadavg()[0]:.1f}\n")
            pages = math.ceil(args.clients / args.page_size)
            for page in (1, pages):  # warm-up
                http.get(f"/api/v1/broker/clients?page={page}&page_size={args.page_size}", headers=headers)
            list_ms: list[float] = []
            seen = 0
            for _ in range(args.passes):
                seen = 0
                for page in range(1, pages + 1):
                    t0 = time.perf_counter()
                    r = http.get(f"/api/v1/broker/clients?page={page}&page_size={args.page_size}", headers=headers)
                    list_ms.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
                    seen += len(r.json()["clients"])
            assert seen == args.clients, (seen, args.clients)

            rng = random.Random(7)
            targets = [f"u{rng.randrange(args.clients):05d}" for _ in range(args.deposits)]
            before = {
                uid: Decimal(str(http.get(f"/api/v1/broker/clients/{uid}/balance", headers=headers).json()["balance"]))
                for uid in set(targets)
            }
            for uid in targets[:5]:  # warm-up, counted in the check below
                http.post(f"/api/v1/broker/clients/{uid}/deposit", json={"amount": "0.01"}, headers=headers)
            dep_ms: list[float] = []
            for i, uid in enumerate(targets):
                t0 = time.perf_counter()
                r = http.post(
                    f"/api/v1/broker/clients/{uid}/deposit",
                    json={"amount": "1.5"},
                    headers={**headers, "Idempotency-Key": f"bench-{time.time_ns()}-{i}"},
                )
                dep_ms.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
            expected = dict(before)
            for uid in targets[:5]:
                expected[uid] += Decimal("0.01")
            for uid in targets:
                expected[uid] += Decimal("1.5")
            for uid, want in expected.items():
                got = Decimal(str(http.get(f"/api/v1/broker/clients/{uid}/balance", headers=headers).json()["balance"]))
                assert got == want, (uid, got, want)

            print(f"{args.clients} clients, page_size {args.page_size}: {pages} pages x {args.passes} passes")
            ok = report(f"GET /api/v1/broker/clients (every page, {args.page_size}/page)", list_ms)
            ok &= report("POST /api/v1/broker/clients/{id}/deposit", dep_ms)
    finally:
        proc.terminate()
        proc.wait(10)

    from exchanges.ledger.selectors import ledger_violations

    violations = ledger_violations()
    print(f"\nledger invariants: {'sound' if not violations else violations[:5]}; deposits verified against balances")
    sys.exit(0 if ok and not violations else 1)


if __name__ == "__main__":
    main()
