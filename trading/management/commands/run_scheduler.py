"""``manage.py run_scheduler``: run ``CELERY_BEAT_SCHEDULE`` in-process, for setups without a broker.

Production runs ``celery -A mmsite beat`` and workers (Procfile). The embedded default has no
broker (tasks run in-process), so nothing would ever run the periodic sweeps (health check, fill
polling, hedge sweep, unknown placements, kick-off cancels, settlement, PnL rollups). This runs
each entry's task in this process on its interval: ``task.apply()``, the way eager mode runs a
``.delay()``. An entry is never run twice at once (a slow run delays its next one), entries run on
a small thread pool so that one slow sweep does not hold up the 2-second health check, and a task
that raises is logged with its traceback and run again at its next interval.

    manage.py run_scheduler [--only NAME ...] [--exclude NAME ...] [--once] [--duration S]

``--once`` runs every selected entry one time and exits (tests, cron-like use).
Schedules: a number of seconds, a ``timedelta``, or any Celery schedule object (``crontab``: its
``is_due``).
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connection
from django.utils import timezone

log = logging.getLogger("trading.scheduler")


def celery_tasks() -> Mapping[str, Any]:
    """The registered tasks of the project's Celery app, every app's tasks module imported."""
    from mmsite.celery import app

    app.loader.import_default_modules()
    return app.tasks


@dataclass
class Entry:
    name: str
    task: str
    schedule: Any
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    last_run: float | None = None  # monotonic
    last_run_at: dt.datetime | None = None
    running: bool = False
    runs: int = 0
    failures: int = 0

    def interval(self) -> float | None:
        if isinstance(self.schedule, int | float):
            return float(self.schedule)
        if isinstance(self.schedule, dt.timedelta):
            return self.schedule.total_seconds()
        return None

    def due(self, now: float) -> bool:
        if self.running:
            return False
        if self.last_run is None:
            return True
        seconds = self.interval()
        if seconds is not None:
            return now - self.last_run >= seconds
        is_due, _ = self.schedule.is_due(self.last_run_at or timezone.now())
        return bool(is_due)


class Scheduler:
    def __init__(
        self,
        schedule: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        only: list[str] | None = None,
        exclude: list[str] | None = None,
        workers: int = 4,
    ) -> None:
        schedule = settings.CELERY_BEAT_SCHEDULE if schedule is None else schedule
        self.entries = [
            Entry(
                name=name,
                task=spec["task"],
                schedule=spec["schedule"],
                args=tuple(spec.get("args", ())),
                kwargs=dict(spec.get("kwargs", {})),
            )
            for name, spec in schedule.items()
            if (not only or name in only or spec["task"] in only)
            and not (exclude and (name in exclude or spec["task"] in exclude))
        ]
        self.workers = workers
        self._lock = threading.Lock()
        celery_tasks()  # register every task now, in this thread, before worker threads look them up

    def _run(self, entry: Entry) -> None:
        close_old_connections()
        try:
            task = celery_tasks().get(entry.task)
            if task is None:
                log.error("scheduler: task %s of entry %s is not registered", entry.task, entry.name)
                return
            task.apply(args=entry.args, kwargs=entry.kwargs)
            entry.runs += 1
        except Exception:  # noqa: BLE001 - a process boundary: log with traceback, keep scheduling
            entry.failures += 1
            log.exception("scheduler: %s (%s) failed", entry.name, entry.task)
        finally:
            connection.close()  # pool threads outlive the scheduler's users; no connection left behind
            with self._lock:
                entry.running = False

    def run_once(self) -> None:
        """Every entry once, one after the other, in this thread."""
        for entry in self.entries:
            entry.running = True
            entry.last_run, entry.last_run_at = time.monotonic(), timezone.now()
            self._run(entry)

    def run(self, stop: threading.Event, *, tick: float = 0.1) -> None:
        """Run due entries until ``stop`` is set."""
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="scheduler") as pool:
            while not stop.is_set():
                now = time.monotonic()
                for entry in self.entries:
                    with self._lock:
                        if not entry.due(now):
                            continue
                        entry.running = True
                    entry.last_run, entry.last_run_at = now, timezone.now()
                    pool.submit(self._run, entry)
                stop.wait(tick)


class Command(BaseCommand):
    help = "Run the periodic tasks of CELERY_BEAT_SCHEDULE in this process (no broker needed)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--only", action="append", default=[], help="entry or task name (repeatable)")
        parser.add_argument("--exclude", action="append", default=[], help="entry or task name (repeatable)")
        parser.add_argument("--once", action="store_true", help="run each entry once and exit")
        parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")

    def handle(self, *args, **o) -> None:
        scheduler = Scheduler(only=o["only"] or None, exclude=o["exclude"] or None)
        if not scheduler.entries:
            raise CommandError("no schedule entry selected")
        names = ", ".join(f"{e.name} ({e.interval() or 'schedule'}s)" for e in scheduler.entries)
        self.stdout.write(f"scheduler: {names}")
        if o["once"]:
            scheduler.run_once()
        else:
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    signal.signal(sig, lambda *_: stop.set())
                except ValueError:  # not the main thread
                    pass
            if o["duration"] is not None:
                threading.Timer(o["duration"], stop.set).start()
            scheduler.run(stop)
        ran = ", ".join(
            f"{e.name} {e.runs}" + (f" ({e.failures} failed)" if e.failures else "") for e in scheduler.entries
        )
        self.stdout.write(f"scheduler stopped; runs: {ran}")
