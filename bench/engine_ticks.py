"""Benchmark of the engine's hot path on one core: odds frame -> parse -> price -> quote decision.

A *tick* is one outcome price update (one ``oddsId`` entry of an ``odds`` frame). For each frame:

1. ``trading.feed.protocol.parse_frame`` (JSON text, or MessagePack with ``--binary``), with
   ``Decimal`` prices;
2. for each entry (outcome X at odds o): ``quote_sell`` prices selling X (hedged by backing X at
   o) and, when the market is two-way, ``quote_buy`` prices buying the other side (hedged by
   backing X too: X is its complement); an inactive outcome refuses both, dropping what rests;
3. the decision: ``requote_needed`` against the quote resting for that (fixture, bookmaker,
   outcome, player, side) in a dict; a changed quote replaces it.

No I/O, no database: this is the pure part whose cost bounds how fast the engine can follow a
feed. The frames are built before timing: a mix of the bundled sample's odds (real shapes:
several markets, suspensions, out-of-bounds prices) and a random walk over ~600 outcomes of the
sample's fixtures, one entry per frame unless ``--per-frame`` says more.

* throughput: the whole run timed in one go, best of ``--repeat`` runs;
* latency: one more run with ``time.perf_counter_ns`` around each frame (parse + decisions),
  reported per tick (frame time / entries in the frame).

Run:  .venv/bin/python bench/engine_ticks.py [--ticks 200000] [--per-frame 1] [--binary] [--repeat 3]
It prints each figure next to its target. Not a test; not timed in CI.

``--db`` measures the same frames through the database path instead: ``FeedIngest.handle`` (the
feed process's code: dedupe, ``quotes_on_price``, the ``LiveQuote`` row lock, the controls gate,
order rows, cancels and placements on the simulated venue, placement tasks run in-process) for one
client quoting the sample's fixtures on the simulated venue. It creates a throw-away database
(``test_mmsite_bench`` on the ``DATABASE_URL`` server; SQLite in memory without one) and drops it
at the end:

      DATABASE_URL=postgres://postgres@127.0.0.1:5432/mmsite .venv/bin/python bench/engine_ticks.py --db --ticks 3000

There is no target for this figure in the issue; it bounds how many price changes per second one
feed process can turn into decisions (most ticks move less than a tick: a locked read, no write).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trading.feed.protocol import FeedMetrics, OddsUpdate, encode_json, encode_msgpack, parse_frame  # noqa: E402
from trading.feed.replay import read_replay  # noqa: E402
from trading.pricing import PricingConfig, Quote, quote_buy, quote_sell, requote_needed  # noqa: E402

TARGET_TICKS_PER_SEC = 50_000
TARGET_P99_US = 1_000

SAMPLE = Path(__file__).resolve().parents[1] / "trading" / "feed" / "samples" / "sample_replay.jsonl"


def build_frames(ticks: int, per_frame: int, binary: bool, seed: int) -> tuple[list, dict[int, int]]:
    """Raw frames (encoded as the gateway would send them) and the two-way complement map."""
    header, events = read_replay(SAMPLE)
    complement: dict[int, int] = {}
    for market in header.markets:
        outcomes = [o["outcomeId"] for o in market["outcomes"]]
        if len(outcomes) == 2:
            complement[outcomes[0]], complement[outcomes[1]] = outcomes[1], outcomes[0]
    sample_odds = [e.payload for e in events if e.channel == "odds"]
    # the outcomes the sample quotes, as random-walk seeds
    seeds: dict[str, dict] = {}
    for payload in sample_odds:
        for group in payload["odds"].values():
            for odds_id, entry in group.items():
                seeds[odds_id] = {**entry, "fixtureId": payload["fixtureId"]}
    keys = sorted(seeds)
    rng = random.Random(seed)
    price = {k: min(50.0, max(1.05, seeds[k]["price"])) for k in keys}
    encode = encode_msgpack if binary else encode_json
    frames: list = []
    seq = 0
    ts = 1_772_366_400_000
    sample_i = 0
    produced = 0
    while produced < ticks:
        seq += 1
        ts += 1
        if seq % 10 == 0:  # one frame in ten is straight from the sample (its real mix and shapes)
            payload = sample_odds[sample_i % len(sample_odds)]
            sample_i += 1
        else:
            fixture = None
            group: dict[str, dict] = {}
            bookmaker = None
            for _ in range(per_frame):
                k = rng.choice(keys)
                s = seeds[k]
                if fixture is None:
                    fixture, bookmaker = s["fixtureId"], s["bookmaker"]
                elif (s["fixtureId"], s["bookmaker"]) != (fixture, bookmaker):
                    continue
                price[k] = round(min(200.0, max(1.02, price[k] * (1 + rng.gauss(0, 0.01)))), 3)
                group[k] = {
                    "bookmaker": s["bookmaker"],
                    "marketId": s["marketId"],
                    "outcomeId": s["outcomeId"],
                    "playerId": s["playerId"],
                    "price": price[k],
                    "limit": s["limit"],
                    "active": rng.random() > 0.02,
                    "marketActive": True,
                    "mainLine": s["mainLine"],
                    "changedAt": ts,
                }
            payload = {"fixtureId": fixture, "odds": {bookmaker: group}}
        produced += sum(len(g) for g in payload["odds"].values())
        frames.append(
            encode({"channel": "odds", "type": "UPDATE", "payload": payload, "ts": ts, "entryId": f"{ts}-{seq}"})
        )
    return frames, complement


class Engine:
    """The quote decision: latest prices, resting quotes, counters."""

    def __init__(self, complement: dict[int, int]) -> None:
        self.cfg = PricingConfig(
            edge=Decimal("0.02"),
            tick=Decimal("0.01"),
            sizing_mode="limit_fraction",
            limit_fraction=Decimal("0.1"),
            max_outcome_stake=Decimal("1000"),
        )
        self.complement = complement
        self.resting: dict[tuple, Quote] = {}
        self.metrics = FeedMetrics()
        self.ticks = self.requotes = self.cancels = self.no_quotes = 0

    def on_raw(self, raw) -> int:
        frame = parse_frame(raw, self.metrics)
        if not isinstance(frame, OddsUpdate):
            return 0
        cfg, tick, resting = self.cfg, self.cfg.tick, self.resting
        for e in frame.entries:
            key = (e.fixture_id, e.bookmaker, e.outcome_id, e.player_id)
            # selling X is hedged by backing X at this price ...
            sides = [(key + ("sell",), quote_sell(e.price, e.limit, cfg, active=e.active))]
            other = self.complement.get(e.outcome_id)
            if other is not None:
                # ... and so is buying the other side of a two-way market (hedged by backing X)
                sides.append(
                    (
                        (e.fixture_id, e.bookmaker, other, e.player_id, "buy"),
                        quote_buy(e.price, e.limit, cfg, active=e.active),
                    )
                )
            for rkey, quote in sides:
                old = resting.get(rkey)
                if isinstance(quote, Quote):
                    if old is None or requote_needed(old.price, old.size, quote.price, quote.size, tick):
                        resting[rkey] = quote
                        self.requotes += 1
                else:
                    self.no_quotes += 1
                    if old is not None:
                        del resting[rkey]
                        self.cancels += 1
        self.ticks += len(frame.entries)
        return len(frame.entries)


def _pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def db_bench(ticks: int, seed: int) -> None:
    """Ticks through FeedIngest on a real database (see the module docstring)."""
    import datetime as dt
    import json

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmsite.settings")
    os.environ["TEST_DB_SUFFIX"] = "_bench"
    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from hedging.models import Bookmaker
    from mmsite.celery import app
    from trading.feed.protocol import parse_frame as parse
    from trading.models import Client, ExchangeAccount, Tournament
    from trading.services.feed_ingest import FeedIngest

    app.conf.task_always_eager = True  # the placement (venue call) is part of what is measured
    db_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        book = Bookmaker.objects.create(name="vertex", simulated=True)
        client = Client.objects.create(name="bench:vertex", hedge_bookmaker=book, quote_all_fixtures=True)
        ExchangeAccount.objects.create(client=client, exchange="simulated", username="bench-sim")
        header, events = read_replay(SAMPLE)
        start = int((timezone.now() + dt.timedelta(hours=2)).timestamp())
        ingest = FeedIngest()
        for e in events:  # the fixtures, all before kick-off (quotable; NBA in play too)
            if e.channel == "fixtures" and e.payload["status"]["statusId"] == 0:
                payload = {**e.payload, "startTime": start}
                ingest.handle(parse(json.dumps({"channel": "fixtures", "type": "UPDATE", "payload": payload})))
        Tournament.objects.update(quote_in_play=True)
        frames, _ = build_frames(ticks, 1, False, seed)
        n_ticks, per_tick = 0, []
        gc.collect()
        t0 = time.perf_counter()
        for raw in frames:
            frame = parse_frame(raw)
            t = time.perf_counter_ns()
            if isinstance(frame, OddsUpdate):
                ingest.handle(frame)
                n = len(frame.entries)
                n_ticks += n
                if n:
                    per_tick.append((time.perf_counter_ns() - t) / n / 1000)
        elapsed = time.perf_counter() - t0
        per_tick.sort()
        c = ingest.counters
        print(
            f"database path ({connection.vendor}, {db_name}): {n_ticks:,} ticks; decisions place "
            f"{c['decision_place']:,}, replace {c['decision_replace']:,}, cancel {c['decision_cancel']:,}, "
            f"none {c['decision_none']:,}; unchanged (not decided) {c['odds_unchanged']:,}, "
            f"unhedged bookmaker {c['odds_unhedged_bookmaker']:,}"
        )
        print(
            f"throughput through FeedIngest: {n_ticks / elapsed:,.0f} ticks/s   "
            f"latency per tick: p50 {_pct(per_tick, 0.5) / 1000:.2f} ms, p99 {_pct(per_tick, 0.99) / 1000:.2f} ms"
        )
    finally:
        connection.creation.destroy_test_db(db_name, verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--per-frame", type=int, default=1, help="entries per synthetic frame")
    parser.add_argument("--binary", action="store_true", help="MessagePack frames (receiveType binary)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", action="store_true", help="through FeedIngest and the database (see above)")
    args = parser.parse_args()
    if args.db:
        db_bench(args.ticks, args.seed)
        return

    print(f"engine ticks benchmark: {platform.python_implementation()} {platform.python_version()}, one thread")
    t0 = time.perf_counter()
    frames, complement = build_frames(args.ticks, args.per_frame, args.binary, args.seed)
    fmt = "msgpack" if args.binary else "json"
    print(f"built {len(frames):,} {fmt} frames in {time.perf_counter() - t0:.1f} s")
    gc.collect()
    gc.freeze()

    best = 0.0
    engine = None
    for _ in range(args.repeat):
        engine = Engine(complement)
        on_raw = engine.on_raw
        start = time.perf_counter()
        for raw in frames:
            on_raw(raw)
        elapsed = time.perf_counter() - start
        best = max(best, engine.ticks / elapsed)
    m = engine.metrics
    print(
        f"  ticks {engine.ticks:,} in {len(frames):,} frames; requotes {engine.requotes:,}, cancels "
        f"{engine.cancels:,}, no-quote decisions {engine.no_quotes:,}, resting quotes {len(engine.resting):,}; "
        f"malformed {m.malformed}, bad entries {m.bad_entries}"
    )
    verdict = "OK" if best >= TARGET_TICKS_PER_SEC else "BELOW TARGET"
    print(f"throughput: {best:,.0f} ticks/s   target >= {TARGET_TICKS_PER_SEC:,}   {verdict}")

    engine = Engine(complement)
    on_raw = engine.on_raw
    clock = time.perf_counter_ns
    per_tick: list[float] = []
    per_frame: list[float] = []
    for raw in frames:
        t = clock()
        n = on_raw(raw)
        dt = clock() - t
        per_frame.append(dt / 1000)
        if n:
            per_tick.extend([dt / n / 1000] * n)
    per_tick.sort()
    per_frame.sort()
    p99 = _pct(per_tick, 0.99)
    verdict = "OK" if p99 < TARGET_P99_US else "ABOVE TARGET"
    print(
        f"latency per tick: p50 {_pct(per_tick, 0.5):.1f} us, p99 {p99:.1f} us, p99.9 {_pct(per_tick, 0.999):.1f} us, "
        f"max {per_tick[-1]:.0f} us   p99 target < {TARGET_P99_US} us   {verdict}"
    )
    print(
        f"latency per frame: p50 {_pct(per_frame, 0.5):.1f} us, p99 {_pct(per_frame, 0.99):.1f} us, "
        f"max {per_frame[-1]:.0f} us"
    )


if __name__ == "__main__":
    main()
