"""An asyncio client of the OddsPapi v5 WebSocket feed.

``FeedClient.run()`` keeps one connection alive until ``stop()``:

1. connect, send the login (channels, filters, ``receiveType``; on a reconnect also the
   ``serverEpoch`` and the ``lastSeenId`` cursor of every channel);
2. wait for ``login_ok`` (an ``error`` counts as a failed attempt and backs off like any other);
3. read frames: stream frames are de-duplicated on their ``entryId`` per channel (a frame at or
   before the channel's cursor is dropped and counted), then handed to ``on_frame``;
   ``resume_complete`` ends a replay; ``snapshot_required`` moves the cursors to the server's
   ``serverEntryIds`` and calls ``snapshot_loader`` for the listed channels (the REST snapshot of
   the real gateway); ``reconnect`` makes the client reconnect at once and resume;
4. when the connection drops, wait ``Backoff`` (exponential, capped, with jitter) and go to 1.

Channels the server does not replay (``replayChannels`` of ``login_ok``) are re-loaded from a
snapshot after a reconnect, since the server cannot fill their gap. A snapshot that failed (the
loader raised :class:`SnapshotUnavailable`, ``OSError`` or ``TimeoutError``, or the connection
dropped first) stays pending: the client reconnects with backoff and loads it after the next login.

Every parsed frame, control frames included, goes to ``on_frame`` (a function or a coroutine
function) in order; frames from a snapshot have ``entry_id`` None. Malformed and unknown frames are
counted in ``metrics`` and skipped (see :mod:`trading.feed.protocol`). An exception raised by
``on_frame`` is not swallowed: it ends ``run()``, because a consumer bug should fail loudly rather
than silently lose updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .protocol import (
    DEFAULT_CHANNELS,
    RECEIVE_JSON,
    FeedError,
    FeedMetrics,
    Frame,
    LoginOk,
    Reconnect,
    ResumeComplete,
    SnapshotRequired,
    StreamFrame,
    build_login,
    parse_entry_id,
    parse_frame,
)
from .replay import ReplayWriter

log = logging.getLogger(__name__)

FrameCallback = Callable[[Frame], Awaitable[None] | None]
SnapshotLoader = Callable[[tuple[str, ...]], Awaitable[Iterable[Frame]]]
Connector = Callable[[str], Awaitable[ClientConnection]]

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a snapshot-sized frame fits; websockets' default is 1 MiB


async def connect(url: str) -> ClientConnection:
    """The default connector: a ``websockets`` client connection to a ``ws://`` or ``wss://`` URL,
    with the library's keepalive (a ping every 20 s; no pong within 20 s closes the connection).
    Raises ``OSError``, ``TimeoutError`` or ``websockets.exceptions.InvalidHandshake``."""
    # proxy=None: the feed URL is explicit; an https_proxy in the environment must not reroute it.
    return await ws_connect(url, max_size=MAX_MESSAGE_BYTES, proxy=None)


class _SnapshotFailed(Exception):
    def __init__(self, channels: tuple[str, ...]) -> None:
        super().__init__(channels)
        self.channels = channels


class FeedLoginError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class FeedProtocolError(Exception):
    """The server broke the protocol (e.g. something other than login_ok after the login)."""


class SnapshotUnavailable(Exception):
    """Raised by a ``snapshot_loader`` that could not load the snapshot (the REST call failed).
    The client keeps the snapshot pending, drops the connection, backs off and tries again after
    the next login. ``OSError`` and ``TimeoutError`` from a loader are treated the same way."""


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``initial * factor**attempt`` capped at ``maximum``, each spread by
    ``+-jitter`` (a fraction) so that many clients do not reconnect in lockstep."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return max(0.0, min(self.maximum, base * (1 + self.jitter * (2 * rng.random() - 1))))


class FeedClient:
    def __init__(
        self,
        url: str,
        api_key: str,
        on_frame: FrameCallback,
        *,
        channels: Sequence[str] = DEFAULT_CHANNELS,
        sport_ids: Sequence[int] = (),
        tournament_ids: Sequence[int] = (),
        fixture_ids: Sequence[str] = (),
        bookmakers: Sequence[str] = (),
        receive_type: str = RECEIVE_JSON,
        client_name: str | None = None,
        snapshot_loader: SnapshotLoader | None = None,
        backoff: Backoff = Backoff(),  # noqa: B008 (frozen dataclass)
        metrics: FeedMetrics | None = None,
        connect: Connector = connect,
        login_timeout: float = 10.0,
        rng: random.Random | None = None,
        server_epoch: str | None = None,
        last_seen_id: Mapping[str, str] | None = None,
        recorder: ReplayWriter | None = None,
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.on_frame = on_frame
        self.channels = tuple(channels)
        self.sport_ids, self.tournament_ids = tuple(sport_ids), tuple(tournament_ids)
        self.fixture_ids, self.bookmakers = tuple(fixture_ids), tuple(bookmakers)
        self.receive_type = receive_type
        self.client_name = client_name
        self.snapshot_loader = snapshot_loader
        self.backoff = backoff
        self.metrics = metrics if metrics is not None else FeedMetrics()
        self._connect = connect
        self.login_timeout = login_timeout
        self._rng = rng or random.Random()
        self.recorder = recorder  # every accepted stream frame is written to it
        # Resume state: persist these to resume across process restarts.
        self.server_epoch = server_epoch
        self.last_seen: dict[str, str] = {}
        self._cursor: dict[str, tuple[int, int]] = {}
        for channel, entry_id in (last_seen_id or {}).items():
            self._set_cursor(channel, entry_id)
        self.resume_window_ms: int | None = None
        self.replay_channels: tuple[str, ...] = ()
        self._pending_snapshot: set[str] = set()
        self._stopping = False
        self._conn: ClientConnection | None = None
        self._reconnect_now = False
        self.live = asyncio.Event()  # set while logged in
        self.delays: list[float] = []  # backoff delays actually waited (observability, tests)

    # --- control --------------------------------------------------------------------------------------
    async def stop(self) -> None:
        self._stopping = True
        conn = self._conn
        if conn is not None:
            await conn.close(1000, "client stopping")

    async def alive(self, timeout: float = 2.0) -> bool:
        """Is the connection up and answering? Logged in and a ping answered within ``timeout``
        seconds. The heartbeat of the feed process asks this when no frame came for a while, so a
        connection that died silently (no FIN, no RST) stops the heartbeat within seconds, not after
        the library's keepalive (20 s + 20 s) has given up on it."""
        conn = self._conn
        if conn is None or not self.live.is_set():
            return False
        try:
            waiter = await conn.ping()
            await asyncio.wait_for(waiter, timeout)
        except (ConnectionClosed, TimeoutError, RuntimeError):
            return False
        return True

    async def run(self) -> None:
        """Connect, stream, reconnect; returns after :meth:`stop`."""
        attempt = 0
        ever_connected = False
        while not self._stopping:
            self._reconnect_now = False
            logged_in = False
            try:
                conn = await self._connect(self.url)
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                log.warning("odds feed: cannot connect to %s: %s", self.url, exc)
            else:
                self._conn = conn
                self.metrics.connects += 1
                if ever_connected:
                    self.metrics.reconnects += 1
                ever_connected = True
                try:
                    logged_in = await self._session(conn)
                except FeedLoginError as exc:
                    self.metrics.login_errors += 1
                    log.error("odds feed: login refused: %s", exc)
                except (FeedProtocolError, TimeoutError) as exc:
                    log.warning("odds feed: %s", exc)
                except _SnapshotFailed as exc:  # backs off, then loads it after the next login
                    log.warning("odds feed: snapshot of %s failed (%s): reconnecting", exc.channels, exc.__cause__)
                finally:
                    self.live.clear()
                    self._conn = None
                    await conn.close()  # a no-op once the connection is closed
            if self._stopping:
                break
            if logged_in:
                attempt = 0
            if self._reconnect_now:
                continue
            delay = self.backoff.delay(attempt, self._rng)
            attempt += 1
            self.delays.append(delay)
            log.info("odds feed: reconnecting in %.2fs (attempt %d)", delay, attempt)
            await asyncio.sleep(delay)

    # --- one connection -------------------------------------------------------------------------------
    def login_message(self) -> str:
        resuming = self.server_epoch is not None and bool(self.last_seen)
        return build_login(
            self.api_key,
            channels=self.channels,
            sport_ids=self.sport_ids,
            tournament_ids=self.tournament_ids,
            fixture_ids=self.fixture_ids,
            bookmakers=self.bookmakers,
            receive_type=self.receive_type,
            client_name=self.client_name,
            server_epoch=self.server_epoch if resuming else None,
            last_seen_id=self.last_seen if resuming else None,
        )

    async def _session(self, conn: ClientConnection) -> bool:
        """Run one connection until it closes. True if the login succeeded."""
        resuming = self.server_epoch is not None and bool(self.last_seen)
        try:
            await conn.send(self.login_message())
            first = parse_frame(await asyncio.wait_for(conn.recv(), self.login_timeout), self.metrics)
        except ConnectionClosed:
            return False
        if isinstance(first, FeedError):
            raise FeedLoginError(first.code, first.message)
        if not isinstance(first, LoginOk):
            raise FeedProtocolError(f"expected login_ok, got {first!r}")
        self._on_login_ok(first, resuming)
        await self._deliver(first)
        try:
            if self._pending_snapshot:
                await self._load_snapshot(tuple(sorted(self._pending_snapshot)))
            while True:
                frame = parse_frame(await conn.recv(), self.metrics)
                if frame is None:
                    continue
                if isinstance(frame, SnapshotRequired):
                    self._on_snapshot_required(frame)
                    await self._deliver(frame)
                    await self._load_snapshot(frame.channels or self.channels)
                elif isinstance(frame, ResumeComplete):
                    self.metrics.resumes += 1
                    await self._deliver(frame)
                elif isinstance(frame, Reconnect):
                    log.info("odds feed: server asks to reconnect (%s)", frame.reason)
                    await self._deliver(frame)
                    self._reconnect_now = True
                    return True
                elif isinstance(frame, FeedError):
                    log.error("odds feed: server error %s: %s", frame.code, frame.message)
                    await self._deliver(frame)
                elif isinstance(frame, LoginOk):
                    log.warning("odds feed: unexpected second login_ok ignored")
                elif self._accept(frame):
                    if self.recorder is not None:
                        self.recorder.write(frame.channel, frame.payload, source_entry_id=frame.entry_id)
                    await self._deliver(frame)
        except ConnectionClosed as exc:
            log.info("odds feed: connection closed: %s", exc)
        return True

    def _on_login_ok(self, frame: LoginOk, resuming: bool) -> None:
        self.live.set()
        resume = frame.resume
        if resume is None:
            return
        if resuming:
            # Channels the server cannot replay lost whatever happened while we were away.
            gap = {c for c in self.channels if c in self.last_seen and c not in resume.replay_channels}
            self._pending_snapshot |= gap
        elif self.server_epoch is None:
            # First login: start the cursors at the server's, so nothing older is accepted.
            for channel, entry_id in resume.server_entry_ids.items():
                if channel not in self.last_seen:
                    self._set_cursor(channel, entry_id)
        self.server_epoch = resume.server_epoch
        self.resume_window_ms = resume.resume_window_ms
        self.replay_channels = resume.replay_channels

    def _on_snapshot_required(self, frame: SnapshotRequired) -> None:
        log.warning("odds feed: resume refused (%s) for %s: loading a snapshot", frame.reason, ",".join(frame.channels))
        self.metrics.snapshots += 1
        if frame.server_epoch:
            self.server_epoch = frame.server_epoch
        for channel in frame.channels or self.channels:
            self._pending_snapshot.add(channel)
            self.last_seen.pop(channel, None)
            self._cursor.pop(channel, None)
            entry_id = frame.server_entry_ids.get(channel)
            if entry_id is not None:
                self._set_cursor(channel, entry_id)

    async def _load_snapshot(self, channels: Sequence[str]) -> None:
        channels = tuple(channels)
        if self.snapshot_loader is None:
            log.error("odds feed: snapshot needed for %s but no snapshot_loader: state may be stale", channels)
            self._pending_snapshot.difference_update(channels)
            return
        try:
            frames = list(await self.snapshot_loader(channels))
        except (SnapshotUnavailable, OSError, TimeoutError) as exc:
            raise _SnapshotFailed(channels) from exc
        for frame in frames:
            await self._deliver(frame)
        self._pending_snapshot.difference_update(channels)

    # --- cursors ----------------------------------------------------------------------------------------
    def _set_cursor(self, channel: str, entry_id: str) -> None:
        key = parse_entry_id(entry_id)
        if key is not None:
            self._cursor[channel] = key
            self.last_seen[channel] = entry_id

    def _accept(self, frame: StreamFrame) -> bool:
        """Advance the channel's cursor; False for a frame at or before it (a duplicate)."""
        key = parse_entry_id(frame.entry_id)
        if key is None:
            return True
        last = self._cursor.get(frame.channel)
        if last is not None and key <= last:
            self.metrics.duplicates += 1
            return False
        self._cursor[frame.channel] = key
        self.last_seen[frame.channel] = frame.entry_id
        return True

    async def _deliver(self, frame: Frame) -> None:
        result = self.on_frame(frame)
        if inspect.isawaitable(result):
            await result


async def run_until(client: FeedClient, predicate: Callable[[], bool], timeout: float) -> None:
    """Run ``client`` until ``predicate()`` holds (checked every few ms), then stop it. For tests
    and tools; raises ``TimeoutError`` if it does not happen in time."""
    task = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                if task.done():
                    task.result()
                    raise RuntimeError("feed client stopped early")
                await asyncio.sleep(0.005)
    finally:
        await client.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
