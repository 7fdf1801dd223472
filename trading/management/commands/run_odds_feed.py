"""``manage.py run_odds_feed``: the odds feed process.

Live::

    manage.py run_odds_feed --url wss://v5.oddspapi.io/ws --api-key KEY \
        [--sport-ids 10,11] [--tournament-ids 17] [--fixture-ids ...] [--bookmakers vertex,pinnacle] \
        [--receive-type json|msgpack]

(``--url`` and ``--api-key`` default to ``ODDS_FEED_URL`` and ``ODDS_FEED_API_KEY``.)

Replay of a recorded stream, through the same client code path: the file is served by the local
protocol server (``trading.feed.server.FeedServer``) on a loopback port and the real client
connects to it, so logins, cursors, resume and snapshots work as they do live::

    manage.py run_odds_feed --replay trading/feed/samples/sample_replay.jsonl --speed 1 [--loop]

``--loop`` plays the file again and again, each lap on fresh fixture ids (``<id>-<run>-<lap>``),
since a fixture that finished must not start over.

Every frame goes to ``trading.services.feed_ingest.FeedIngest`` on one worker thread (frames are
applied in order; the event loop keeps reading and answering pings meanwhile). While the client is
logged in, the process beats ``heartbeat("feed")`` every second (``trading.services.health``); when
it comes back after a drop, it runs the health check at once (lifting the soft pause) and decides
again from the latest prices (``FeedIngest.requote``). Every few seconds keys held back by the
controls are decided again if a control changed, so quotes come back after a pause, stop or soft
pause lifts without waiting for a price move. Counters go to the cache every few seconds
(``manage.py feed_status``). SIGINT/SIGTERM stop it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connection
from django.db.models import Max

from trading.feed.client import Backoff, FeedClient, SnapshotLoader
from trading.feed.protocol import (
    DEFAULT_CHANNELS,
    RECEIVE_BINARY,
    RECEIVE_JSON,
    Frame,
    ResumeComplete,
    SnapshotRequired,
)
from trading.feed.replay import read_replay, relabel_fixtures
from trading.feed.server import FeedServer, make_snapshot_loader
from trading.models import ClientTradingState, SystemTradingState
from trading.services.feed_ingest import FeedIngest
from trading.services.health import health_check, heartbeat

log = logging.getLogger("trading.feed.run")

SAMPLE = Path(__file__).resolve().parents[2] / "feed" / "samples" / "sample_replay.jsonl"
REPLAY_API_KEY = "replay"


def _controls_version() -> tuple:
    """Changes whenever any trading control changes (one indexed aggregate per table)."""
    client = ClientTradingState.objects.aggregate(m=Max("updated_at"))["m"]
    system = SystemTradingState.objects.filter(pk=1).values_list("updated_at", flat=True).first()
    return (client, system)


class FeedRunner:
    """One feed connection wired to the engine. ``run()`` until ``stop()``."""

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        channels: Sequence[str] = DEFAULT_CHANNELS,
        sport_ids: Sequence[int] = (),
        tournament_ids: Sequence[int] = (),
        fixture_ids: Sequence[str] = (),
        bookmakers: Sequence[str] = (),
        receive_type: str = RECEIVE_JSON,
        snapshot_loader: SnapshotLoader | None = None,
        backoff: Backoff = Backoff(),  # noqa: B008 (frozen dataclass)
        beat_interval: float = 1.0,
        requote_interval: float = 2.0,
        metrics_interval: float = 5.0,
        source: str = "feed",
    ) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed-ingest")
        # Beats never queue behind frames: a slow ingest must not look like a dead connection, and
        # a lagging one is judged by the frames' own timestamps (``lag_ms``).
        self.beat_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed-beat")
        self.client = FeedClient(
            url,
            api_key,
            self.on_frame,
            channels=channels,
            sport_ids=sport_ids,
            tournament_ids=tournament_ids,
            fixture_ids=fixture_ids,
            bookmakers=bookmakers,
            receive_type=receive_type,
            snapshot_loader=snapshot_loader,
            backoff=backoff,
            client_name="mmsite",
        )
        self.ingest = FeedIngest(metrics=self.client.metrics)
        self.has_snapshots = snapshot_loader is not None
        self.beat_interval, self.requote_interval, self.metrics_interval = (
            beat_interval,
            requote_interval,
            metrics_interval,
        )
        self.source = source
        self.stream_frames = 0  # stream frames applied (tests and the replay's end wait on it)
        self.lag_ms = 0  # how far behind the gateway the last applied frame was (its ts to now)
        self.max_lag_ms = int(float(settings.FEED_STALE_SECONDS) * 1000 / 2)
        self._last_applied = 0.0
        self.ping_timeout = max(0.5, min(2.0, float(settings.FEED_STALE_SECONDS) / 4))
        self.resyncs = 0
        self._stopping = asyncio.Event()
        self._needs_resync = False
        self._logged_in_before = False
        self._controls: tuple | None = None

    async def _sync(self, fn, *args, **kwargs) -> Any:
        """Run ``fn`` on the ingest thread (Django ORM; events go back through this event loop)."""
        return await sync_to_async(fn, thread_sensitive=False, executor=self.executor)(*args, **kwargs)

    # --- frames ---------------------------------------------------------------------------------------
    async def on_frame(self, frame: Frame) -> None:
        kind = getattr(frame, "kind", "")
        if kind in ("odds", "fixtures", "scores"):
            await self._sync(self.ingest.handle, frame)
            self.stream_frames += 1
            ts = getattr(frame, "ts", None)
            self.lag_ms = max(0, int(time.time() * 1000) - ts) if ts else 0
            self._last_applied = time.monotonic()
            return
        if kind == "login_ok":  # alive from this moment, not from the next tick of the beat loop
            await asyncio.get_running_loop().run_in_executor(self.beat_executor, heartbeat, self.source)
            resume = getattr(frame, "resume", None)
            unreplayed = resume is not None and "odds" not in resume.replay_channels
            if self._logged_in_before and unreplayed and not self.has_snapshots and self.ingest.latest:
                # The gateway does not replay odds and we have no snapshot: what changed while we
                # were away is lost, so the quotes priced from what we knew come down.
                log.warning("odds feed: odds are not replayed and no snapshot source: cancelling stale quotes")
                await self._sync(self.ingest.invalidate_odds)
            self._logged_in_before = True
        await self._sync(self.ingest.handle, frame)
        if (
            isinstance(frame, SnapshotRequired)
            and not self.has_snapshots
            and (not frame.channels or "odds" in frame.channels)
        ):
            # Prices moved while we were away and nothing will resend them: quotes priced from
            # what we knew are cancelled; the next update of each outcome quotes it again.
            log.warning("odds feed: resume refused and no snapshot source: cancelling quotes on stale prices")
            await self._sync(self.ingest.invalidate_odds)
        if isinstance(frame, ResumeComplete | SnapshotRequired) or kind == "login_ok":
            self._needs_resync = True

    async def _resync(self) -> None:
        """After a (re)login: declare the feed alive, run the health check now (lifts the stale soft
        pause without waiting for beat), and decide every key again from the latest prices."""
        self._needs_resync = False
        self.resyncs += 1

        def work() -> int:
            close_old_connections()
            heartbeat(self.source)
            health_check()
            return len(self.ingest.requote())

        n = await self._sync(work)
        log.info("odds feed: resynchronised, %d quote decisions", n)

    # --- loops ----------------------------------------------------------------------------------------
    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            quiet = time.monotonic() - self._last_applied > 1.0  # nothing applied for a second: no backlog
            if self.client.live.is_set() and not quiet and self.lag_ms > self.max_lag_ms:
                log.warning("odds feed: applying frames %.1f s behind the gateway; no heartbeat", self.lag_ms / 1000)
            elif self.client.live.is_set() and (not quiet or await self.client.alive(self.ping_timeout)):
                await loop.run_in_executor(self.beat_executor, heartbeat, self.source)
                if self._needs_resync:
                    await asyncio.sleep(0.2)  # let a snapshot's frames be queued first
                    await self._resync()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.beat_interval)

    async def _housekeeping(self) -> None:
        last_metrics = 0.0
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.requote_interval)
            if self._stopping.is_set():
                break
            version = await self._sync(_controls_version)
            if self._controls is not None and version != self._controls and self.ingest.blocked:
                n = await self._sync(lambda: len(self.ingest.requote(blocked_only=True)))
                log.info("odds feed: a control changed; %d held-back decisions taken again", n)
            self._controls = version
            if time.monotonic() - last_metrics >= self.metrics_interval:
                last_metrics = time.monotonic()
                await self._sync(self.ingest.flush_metrics)

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self.client.run(), name="feed-client"),
            asyncio.create_task(self._beat(), name="feed-beat"),
            asyncio.create_task(self._housekeeping(), name="feed-housekeeping"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()
        finally:
            await self.stop()
            for task in tasks:
                if not task.done():
                    task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                await self._sync(self.ingest.flush_metrics)
            await self._sync(lambda: connection.close())  # the ingest thread's database connection
            self.executor.shutdown(wait=True)
            self.beat_executor.shutdown(wait=True)

    async def stop(self) -> None:
        self._stopping.set()
        await self.client.stop()


class ReplaySource:
    """A replay file served over the protocol on a loopback port (``FeedServer``)."""

    def __init__(self, path: str | Path, *, speed: float = 1.0, loop: bool = False, port: int = 0) -> None:
        self.header, self.events = read_replay(path)
        self.speed, self.loop = speed, loop
        self.server = FeedServer(host="127.0.0.1", port=port)
        self.published = 0
        self.laps = 0
        self.finished = asyncio.Event()
        self.run_tag = format(int(time.time()), "x")[-6:]

    async def start(self) -> FeedServer:
        return await self.server.start()

    async def play(self, wait_for_client: FeedRunner | None = None) -> None:
        if wait_for_client is not None:  # publish nothing before the client has logged in
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wait_for_client.client.live.wait(), 30)
        while True:
            self.laps += 1
            events = relabel_fixtures(self.events, f"-{self.run_tag}-{self.laps}") if self.loop else self.events
            shift = self.server.now_ms() - self.header.base_time_ms
            self.published += await self.server.play(events, speed=self.speed, time_shift_ms=shift)
            log.info("odds feed replay: lap %d done (%d messages)", self.laps, len(events))
            if not self.loop:
                break
        self.finished.set()

    def snapshot_loader(self) -> SnapshotLoader:
        return make_snapshot_loader(self.server)

    async def close(self) -> None:
        await self.server.close()


def _ints(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise CommandError(f"expected comma-separated integers, got {value!r}") from exc


def _strs(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


async def run_feed(
    *,
    url: str | None,
    api_key: str | None,
    replay: str | None = None,
    speed: float = 1.0,
    loop: bool = False,
    port: int = 0,
    duration: float | None = None,
    install_signals: bool = True,
    on_ready=None,
    **filters: Any,
) -> FeedRunner:
    """Run the feed (live or replay) until the replay ends (not looping), ``duration`` passes, or a
    signal arrives. Returns the runner (its counters) after a clean stop."""
    source: ReplaySource | None = None
    if replay:
        source = ReplaySource(replay, speed=speed, loop=loop, port=port)
        await source.start()
        url, api_key = source.server.url, REPLAY_API_KEY
        filters["snapshot_loader"] = source.snapshot_loader()
        log.info("odds feed: replaying %s (%d messages) on %s", replay, len(source.events), url)
    assert url and api_key
    runner = FeedRunner(url=url, api_key=api_key, **filters)
    loop_ = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop_.add_signal_handler(sig, lambda: asyncio.ensure_future(runner.stop()))
    run_task = asyncio.create_task(runner.run())
    extra: list[asyncio.Task] = []
    if source is not None:
        extra.append(asyncio.create_task(source.play(wait_for_client=runner)))

        async def end_of_replay() -> None:
            await source.finished.wait()
            while runner.stream_frames < source.published and not run_task.done():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            await runner.stop()

        if not loop:
            extra.append(asyncio.create_task(end_of_replay()))
    if duration is not None:

        async def stop_later() -> None:
            await asyncio.sleep(duration)
            await runner.stop()

        extra.append(asyncio.create_task(stop_later()))
    if on_ready is not None:
        on_ready(runner, source)
    try:
        await run_task
    finally:
        for task in extra:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if source is not None:
            await source.close()
    return runner


class Command(BaseCommand):
    help = "Follow the OddsPapi v5 odds feed (live, or --replay FILE) and drive fixtures, scores and quotes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default=os.environ.get("ODDS_FEED_URL", ""), help="wss://… (ODDS_FEED_URL)")
        parser.add_argument("--api-key", default=os.environ.get("ODDS_FEED_API_KEY", ""), help="(ODDS_FEED_API_KEY)")
        parser.add_argument("--sport-ids", default="", help="comma-separated sport ids")
        parser.add_argument("--tournament-ids", default="", help="comma-separated tournament ids")
        parser.add_argument("--fixture-ids", default="", help="comma-separated fixture ids")
        parser.add_argument("--bookmakers", default="", help="comma-separated bookmaker codes")
        parser.add_argument("--receive-type", default="json", choices=["json", "msgpack", "binary"])
        parser.add_argument("--replay", default="", help=f"replay FILE instead of a live feed (sample: {SAMPLE})")
        parser.add_argument("--speed", type=float, default=1.0, help="replay time factor; 0 = as fast as possible")
        parser.add_argument("--loop", action="store_true", help="replay again and again, on fresh fixture ids")
        parser.add_argument("--port", type=int, default=0, help="loopback port of the replay server (0: any)")
        parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")

    def handle(self, *args, **o) -> None:
        if not o["replay"] and not o["url"]:
            raise CommandError("give --url (or ODDS_FEED_URL) for a live feed, or --replay FILE")
        if not o["replay"] and not o["api_key"]:
            raise CommandError("--api-key (or ODDS_FEED_API_KEY) is required for a live feed")
        if o["replay"] and not Path(o["replay"]).is_file():
            raise CommandError(f"replay file not found: {o['replay']}")
        if o["speed"] < 0:
            raise CommandError("--speed must be 0 or more")
        runner = asyncio.run(
            run_feed(
                url=o["url"] or None,
                api_key=o["api_key"] or None,
                replay=o["replay"] or None,
                speed=o["speed"],
                loop=o["loop"],
                port=o["port"],
                duration=o["duration"],
                sport_ids=_ints(o["sport_ids"]),
                tournament_ids=_ints(o["tournament_ids"]),
                fixture_ids=_strs(o["fixture_ids"]),
                bookmakers=_strs(o["bookmakers"]),
                receive_type=RECEIVE_JSON if o["receive_type"] == "json" else RECEIVE_BINARY,
            )
        )
        counters = runner.ingest.counters
        m = runner.client.metrics
        self.stdout.write(
            f"odds feed stopped: {runner.stream_frames} stream frames applied; "
            f"fixtures created {counters['fixtures_created']}, final {counters['fixtures_final']}, "
            f"scores applied {counters['scores_applied']}, odds entries {counters['odds_entries']}, "
            f"decisions place {counters['decision_place']} replace {counters['decision_replace']} "
            f"cancel {counters['decision_cancel']}; malformed {m.malformed}, unknown {m.unknown}, "
            f"bad entries {m.bad_entries}, reconnects {m.reconnects}, resumes {m.resumes}, snapshots {m.snapshots}"
        )
