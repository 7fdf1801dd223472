"""Helpers shared by test modules: running work on parallel connections, reading a channel layer."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync
from django.db import connection

from trading.events import decode_message


def in_threads(fn, items, workers: int) -> list:
    """``fn(item)`` for every item on ``workers`` threads, each with its own database connection; the
    first ``workers`` items start together. Re-raises (as an assertion) anything a thread raised."""
    start = threading.Event()
    errors: list[BaseException] = []

    def run(item):
        try:
            start.wait(timeout=30)
            return fn(item)
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the test
            errors.append(exc)
            return None
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, item) for item in items]
        start.set()
        results = [f.result() for f in futures]
    assert not errors, errors
    return results


def drain(layer, channel, *, timeout: float = 0.5) -> list[dict]:
    """Every event waiting on ``channel`` (stops after ``timeout`` seconds without one)."""

    async def receive_all():
        out = []
        while True:
            try:
                out.append(decode_message(await asyncio.wait_for(layer.receive(channel), timeout=timeout)))
            except TimeoutError:
                return out

    return async_to_sync(receive_all)()


def run_in_parallel(*fns) -> list:
    """Run each fn in its own thread (own DB connection), released together; return results or exceptions."""
    barrier = threading.Barrier(len(fns))
    results: list = [None] * len(fns)

    def run(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - returned to the test, which asserts on each
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results
