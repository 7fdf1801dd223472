"""``manage.py record_odds_feed --url URL --api-key KEY --out FILE [--duration SECONDS]``: record a feed.

Connects like ``run_odds_feed`` (same client: login, resume, reconnects) and writes every accepted
stream frame to a replay file (docs/odds-feed.md, "Replay file format"); the gateway's cursor is
kept as ``sourceEntryId``. Nothing is written to the database. Play the file back with
``run_odds_feed --replay FILE``. Stops after ``--duration`` seconds, or on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from trading.feed.client import FeedClient
from trading.feed.protocol import RECEIVE_BINARY, RECEIVE_JSON
from trading.feed.replay import ReplayHeader, ReplayWriter

from .run_odds_feed import _ints, _strs


async def record(*, url: str, api_key: str, out: Path, duration: float | None, **filters) -> tuple[int, FeedClient]:
    """Record until ``duration`` passes or a signal arrives; returns (frames written, client)."""
    header = ReplayHeader(base_time_ms=int(time.time() * 1000), description=f"recorded from {url}")
    written = 0

    def count(frame) -> None:
        nonlocal written
        if getattr(frame, "kind", "") in ("odds", "fixtures", "scores"):
            written += 1

    with ReplayWriter(out, header) as writer:
        client = FeedClient(url, api_key, count, recorder=writer, client_name="mmsite-recorder", **filters)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(client.stop()))
        task = asyncio.create_task(client.run())
        if duration is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), duration)
            await client.stop()
        await task
    return written, client


class Command(BaseCommand):
    help = "Record the OddsPapi v5 feed to a replay file (JSON lines) for run_odds_feed --replay."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default=os.environ.get("ODDS_FEED_URL", ""), help="wss://… (ODDS_FEED_URL)")
        parser.add_argument("--api-key", default=os.environ.get("ODDS_FEED_API_KEY", ""), help="(ODDS_FEED_API_KEY)")
        parser.add_argument("--out", required=True, help="replay file to write")
        parser.add_argument("--duration", type=float, default=None, help="seconds to record (default: until stopped)")
        parser.add_argument("--sport-ids", default="")
        parser.add_argument("--tournament-ids", default="")
        parser.add_argument("--fixture-ids", default="")
        parser.add_argument("--bookmakers", default="")
        parser.add_argument("--receive-type", default="json", choices=["json", "msgpack", "binary"])

    def handle(self, *args, **o) -> None:
        if not o["url"] or not o["api_key"]:
            raise CommandError("--url and --api-key (or ODDS_FEED_URL / ODDS_FEED_API_KEY) are required")
        if o["duration"] is not None and o["duration"] <= 0:
            raise CommandError("--duration must be positive")
        out = Path(o["out"])
        if not out.parent.is_dir():
            raise CommandError(f"directory does not exist: {out.parent}")
        written, client = asyncio.run(
            record(
                url=o["url"],
                api_key=o["api_key"],
                out=out,
                duration=o["duration"],
                sport_ids=_ints(o["sport_ids"]),
                tournament_ids=_ints(o["tournament_ids"]),
                fixture_ids=_strs(o["fixture_ids"]),
                bookmakers=_strs(o["bookmakers"]),
                receive_type=RECEIVE_JSON if o["receive_type"] == "json" else RECEIVE_BINARY,
            )
        )
        m = client.metrics
        self.stdout.write(
            f"recorded {written} stream frames to {out} (reconnects {m.reconnects}, resumes {m.resumes}, "
            f"snapshots {m.snapshots}, malformed {m.malformed})"
        )
