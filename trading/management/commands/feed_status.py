"""``manage.py feed_status``: what the engine's inputs look like now.

Prints every watched source (``feed``, ``venue:<exchange>``) with the age of its last heartbeat and
whether it is stale (``trading.services.health``), and the counters the feed process last wrote to
the cache (``trading.services.feed_ingest``: frames by kind, malformed and unknown frames, bad
entries, out-of-bounds odds, decisions, reconnects, resumes, snapshots). ``--json`` for scripts.
"""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand

from trading.services.feed_ingest import feed_metrics
from trading.services.health import last_beats, threshold_for


class Command(BaseCommand):
    help = "Show heartbeats of the feed and venue streams, and the odds feed's counters."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON object")

    def handle(self, *args, **o) -> None:
        now = time.time()
        sources = {
            source: {"ageSeconds": round(now - at, 1), "stale": now - at > threshold_for(source)}
            for source, at in sorted(last_beats().items())
        }
        metrics = feed_metrics()
        if o["json"]:
            self.stdout.write(json.dumps({"sources": sources, "feed": metrics}, default=str))
            return
        if not sources:
            self.stdout.write("no source has beaten yet (no feed or venue stream running)")
        for source, info in sources.items():
            state = "STALE" if info["stale"] else "ok"
            self.stdout.write(f"{source:<24} last beat {info['ageSeconds']:>8.1f} s ago   {state}")
        if not metrics:
            self.stdout.write("no feed counters yet")
            return
        self.stdout.write(f"feed counters (as of {metrics.get('updatedAt')}):")
        for group in ("client", "ingest"):
            for key, value in sorted((metrics.get(group) or {}).items()):
                self.stdout.write(f"  {group}.{key}: {value}")
