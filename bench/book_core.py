"""Benchmark of the pure order book core (exchanges/book) on one core.

The command mix follows the one exchange-core publishes for its single-symbol benchmark: about
9% resting (GTC) limit orders, 3% IOC orders, 6% cancels and 82% amends that move an order's price,
with about 1,000 live orders spread over several hundred price levels and a few percent of the
commands trading. The commands are generated once against a scratch book (so every cancel and amend
names a live order), then replayed on fresh books:

* throughput: the whole replay timed in one go, median of ``--repeat`` runs, per CPU-second of this
  single-threaded process and per wall-clock second (they differ when the machine is shared);
* latency: one more replay with ``time.perf_counter_ns`` around each command (p50, p99, p99.9, max;
  the timer itself adds some tens of nanoseconds).

Run:  .venv/bin/python bench/book_core.py [--ops 1000000] [--repeat 3] [--seed 1]
It prints each figure next to its target. Not a test; not timed in CI.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from exchanges.book import Cancelled, OrderBook, Trade  # noqa: E402

TARGET_OPS_PER_SEC = 300_000
TARGET_P99_US = None  # the issue sets no p99 target; printed for information

MIX = (("limit", 0.09), ("ioc", 0.03), ("cancel", 0.06), ("amend", 0.82))
LIVE_TARGET = 1_000
MID = 100_000  # ticks
HALF_RANGE = 375  # passive orders within this many ticks of the mid: about 750 price slots
OWNERS = 1_000


class _Live:
    """Live order ids with O(1) random choice and removal."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.pos: dict[int, int] = {}

    def add(self, oid: int) -> None:
        if oid not in self.pos:
            self.pos[oid] = len(self.ids)
            self.ids.append(oid)

    def discard(self, oid: int) -> None:
        i = self.pos.pop(oid, None)
        if i is None:
            return
        last = self.ids.pop()
        if last != oid:
            self.ids[i] = last
            self.pos[last] = i

    def __len__(self) -> int:
        return len(self.ids)


def generate(n_ops: int, seed: int) -> tuple[list, list, dict]:
    """Returns (preload commands, measured commands, stats). A command is ``(method, args, kwargs)``."""
    rng = random.Random(seed)
    book = OrderBook("bench")
    live = _Live()
    sides = {}
    next_id = 0
    mid = MID

    def passive_price(side: str) -> int:
        off = rng.randrange(HALF_RANGE)
        return mid - 1 - off if side == "buy" else mid + 1 + off

    def aggressive_price(side: str) -> int:
        best = book.best_ask() if side == "buy" else book.best_bid()
        if best is None:
            return passive_price(side)
        return best[0] + rng.randint(0, 1) if side == "buy" else best[0] - rng.randint(0, 1)

    def run(cmd: tuple) -> list:
        name, args, kwargs = cmd
        events = getattr(book, name)(*args, **kwargs)
        for ev in events:
            if type(ev) is Trade:
                if ev.maker_remaining == 0:
                    live.discard(ev.maker_order_id)
                if ev.taker_remaining == 0:
                    live.discard(ev.taker_order_id)
            elif type(ev) is Cancelled:
                live.discard(ev.order_id)
        return events

    def new_limit(side: str, price: int, order_type: str = "limit") -> tuple:
        nonlocal next_id
        next_id += 1
        sides[next_id] = side
        return ("submit", (next_id, rng.randrange(OWNERS), side, order_type, rng.randint(1, 100), price), {})

    preload = []
    for _ in range(LIVE_TARGET):
        side = rng.choice(("buy", "sell"))
        cmd = new_limit(side, passive_price(side))
        run(cmd)
        if next_id in book:
            live.add(next_id)
        preload.append(cmd)

    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    cmds = []
    counts = dict.fromkeys(kinds, 0)
    trading = 0
    live_samples = []
    for i in range(n_ops):
        if rng.random() < 0.01:
            mid += rng.choice((-1, 1))
        kind = rng.choices(kinds, weights)[0]
        if kind in ("cancel", "amend") and not len(live):
            kind = "limit"
        side = rng.choice(("buy", "sell"))
        # Orders leave by cancels and fills and arrive only by new limits: keep the live count near
        # its target by making aggressive flow a little larger when the book is above it.
        grow = len(live) < LIVE_TARGET
        if kind == "limit":
            price = aggressive_price(side) if rng.random() < (0.01 if grow else 0.05) else passive_price(side)
            cmd = new_limit(side, price)
        elif kind == "ioc":
            cmd = new_limit(side, aggressive_price(side), "ioc")
            qty = rng.randint(1, 10) if grow else rng.randint(1, 100)
            name, args, kwargs = cmd
            cmd = (name, args[:4] + (qty,) + args[5:], kwargs)
        elif kind == "cancel":
            oid = live.ids[rng.randrange(len(live))]
            cmd = ("cancel", (oid,), {})
        else:
            oid = live.ids[rng.randrange(len(live))]
            oside = sides[oid]
            old = book.get_order(oid).price
            price = aggressive_price(oside) if rng.random() < (0.02 if grow else 0.05) else passive_price(oside)
            if price == old:
                price += 1 if oside == "sell" else -1
            cmd = ("amend", (oid,), {"price": price})
        counts[kind] += 1
        events = run(cmd)
        if kind in ("limit", "ioc") and cmd[1][0] in book:
            live.add(cmd[1][0])
        if any(type(ev) is Trade for ev in events):
            trading += 1
        if i % 1000 == 0:
            live_samples.append(len(live))
        cmds.append(cmd)
    stats = {
        "mix": {k: counts[k] / n_ops for k in kinds},
        "trading_share": trading / n_ops,
        "live_orders_mean": statistics.fmean(live_samples),
        "bid_levels": len(book.depth().bids),
        "ask_levels": len(book.depth().asks),
    }
    return preload, cmds, stats


def _bind(book: OrderBook, cmds: list) -> list:
    methods = {name: getattr(book, name) for name in ("submit", "cancel", "amend")}
    return [(methods[name], args, kwargs) for name, args, kwargs in cmds]


def throughput(preload: list, cmds: list) -> tuple[float, float]:
    """(commands per wall-clock second, commands per CPU second of this process)."""
    book = OrderBook("bench")
    for f, a, k in _bind(book, preload):
        f(*a, **k)
    bound = _bind(book, cmds)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for f, a, k in bound:
        f(*a, **k)
    cpu = time.process_time() - c0
    wall = time.perf_counter() - t0
    return len(cmds) / wall, len(cmds) / cpu


def latencies(preload: list, cmds: list) -> tuple[list[int], list[str]]:
    book = OrderBook("bench")
    for f, a, k in _bind(book, preload):
        f(*a, **k)
    bound = _bind(book, cmds)
    out = [0] * len(bound)
    clock = time.perf_counter_ns
    for i, (f, a, k) in enumerate(bound):
        t0 = clock()
        f(*a, **k)
        out[i] = clock() - t0
    kinds = ["ioc" if name == "submit" and args[3] == "ioc" else name for name, args, _ in cmds]
    return out, kinds


def _pct(sorted_ns: list[int], p: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * p))] / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    print(f"book core benchmark: {platform.python_implementation()} {platform.python_version()}, one thread")
    t0 = time.perf_counter()
    preload, cmds, stats = generate(args.ops, args.seed)
    print(f"generated {len(cmds):,} commands in {time.perf_counter() - t0:.1f} s (after {len(preload):,} preload)")
    mix = ", ".join(f"{k} {v:.1%}" for k, v in stats["mix"].items())
    print(f"  mix: {mix}; commands that trade: {stats['trading_share']:.1%}")
    print(
        f"  live orders (mean): {stats['live_orders_mean']:,.0f}; "
        f"levels at end: {stats['bid_levels']} bid, {stats['ask_levels']} ask"
    )

    # The million generated commands are the harness's, not the book's: keep the collector from
    # walking them again and again (the book's own objects are still collected as usual).
    gc.collect()
    gc.freeze()
    walls, cpus = [], []
    for _ in range(args.repeat):
        gc.collect()
        wall, cpu = throughput(preload, cmds)
        walls.append(wall)
        cpus.append(cpu)
    # On a shared machine the wall clock also counts time other processes held the core; CPU time of
    # this (single-threaded) process is the work one core does. Both are printed; the target is judged
    # on the better of the two medians, i.e. on CPU time unless the machine was idle.
    judged = max(statistics.median(cpus), statistics.median(walls))
    verdict = "OK" if judged >= TARGET_OPS_PER_SEC else "BELOW TARGET"
    print(
        f"throughput: {statistics.median(cpus):,.0f} ops per CPU-second, median of {args.repeat} "
        f"(best {max(cpus):,.0f})   target >= {TARGET_OPS_PER_SEC:,}   {verdict}"
    )
    print(
        f"            {statistics.median(walls):,.0f} ops per wall-clock second, median (best {max(walls):,.0f}); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )

    gc.collect()
    ns, kinds = latencies(preload, cmds)
    s = sorted(ns)
    target = "none set" if TARGET_P99_US is None else f"<= {TARGET_P99_US} us"
    print(
        f"latency per command: p50 {_pct(s, 0.5):.2f} us, p99 {_pct(s, 0.99):.2f} us, "
        f"p99.9 {_pct(s, 0.999):.2f} us, max {s[-1] / 1000:.0f} us   p99 target {target}"
    )
    for kind in ("amend", "submit", "ioc", "cancel"):
        sub = sorted(n for n, k in zip(ns, kinds, strict=True) if k == kind)
        if sub:
            label = "limit" if kind == "submit" else kind
            print(f"  {label:7s} n={len(sub):>9,}  p50 {_pct(sub, 0.5):6.2f} us  p99 {_pct(sub, 0.99):6.2f} us")


if __name__ == "__main__":
    main()
