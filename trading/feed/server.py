"""A local gateway that speaks the OddsPapi v5 WebSocket protocol, for tests and replays.

It does what the client relies on, and no more:

* login first (within ``login_timeout``), ``error`` and close on a bad key or a bad login;
* ``login_ok`` with ``receiveType``, ``access`` and a ``resume`` block (epoch, window, replayable
  channels, latest entry ids);
* stream frames ``{"channel", "type": "UPDATE", "payload", "ts", "entryId"}`` with per-channel
  sequences, filtered by the login's channels, sportIds, tournamentIds, fixtureIds and
  bookmakers; MessagePack binary frames for stream frames when ``receiveType`` is ``binary``;
* resume: with the same ``serverEpoch`` and ``lastSeenId`` cursors inside the resume window, the
  missed entries are replayed and ``resume_complete`` follows; otherwise ``snapshot_required``
  (``server_restarted`` or ``resume_window_exceeded``) and live streaming continues;
* the state a REST snapshot would return (:meth:`FeedServer.snapshot`), latest per key;
* test hooks: drop every connection without a close handshake, restart (new epoch, empty
  buffers), announce a ``reconnect``, send raw bytes (malformed frames).

Run it on a replay file: ``python -m trading.feed.server --replay FILE [--port 8765] [--speed 1]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .protocol import (
    DEFAULT_CHANNELS,
    FIXTURES,
    KNOWN_CHANNELS,
    ODDS,
    RECEIVE_BINARY,
    RECEIVE_JSON,
    SCORES,
    Frame,
    encode_json,
    encode_msgpack,
    format_entry_id,
    frame_from_obj,
    parse_entry_id,
)
from .replay import ReplayEvent, read_replay, rebase_payload

log = logging.getLogger(__name__)

MAX_SESSION_BACKLOG = 100_000  # a client this far behind is disconnected, as the gateway does


@dataclass(frozen=True, slots=True)
class _Entry:
    order: int  # publication order across channels
    channel: str
    seq: int
    ts: int
    entry_id: str
    fixture_id: str
    payload: Mapping[str, Any]


@dataclass
class _Subscription:
    channels: frozenset[str]
    sport_ids: frozenset[int] = frozenset()
    tournament_ids: frozenset[int] = frozenset()
    fixture_ids: frozenset[str] = frozenset()
    bookmakers: frozenset[str] = frozenset()
    receive_type: str = RECEIVE_JSON


@dataclass(eq=False)
class _Session:
    conn: ServerConnection
    sub: _Subscription
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


def _drop(conn: ServerConnection) -> None:
    """Abort the TCP connection without a closing handshake, as a network fault does (websockets
    has no call for that: it always closes cleanly)."""
    conn.transport.abort()


def _ids(value: Any, kind: type) -> frozenset:
    if not isinstance(value, list):
        return frozenset()
    return frozenset(v for v in value if isinstance(v, kind) and not isinstance(v, bool))


class FeedServer:
    def __init__(
        self,
        *,
        api_keys: Collection[str] | None = None,
        resume_window_ms: int = 60_000,
        replay_channels: Iterable[str] = DEFAULT_CHANNELS,
        host: str = "127.0.0.1",
        port: int = 0,
        login_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.resume_window_ms = resume_window_ms
        self.replay_channels = tuple(replay_channels)
        self.host, self.port = host, port
        self.login_timeout = login_timeout
        self._clock = clock
        self._server: Server | None = None
        self._sessions: set[_Session] = set()
        self.logins = 0  # how many logins were accepted (tests read it)
        self._reset()

    def _reset(self) -> None:
        self.epoch = uuid.uuid4().hex
        self._seq: dict[str, int] = dict.fromkeys(KNOWN_CHANNELS, 0)
        self._published = 0
        self._buffer: dict[str, deque[_Entry]] = {c: deque() for c in KNOWN_CHANNELS}
        self._fixtures: dict[str, dict[str, Any]] = {}
        self._scores: dict[str, dict[str, Any]] = {}
        self._odds: dict[str, dict[str, dict[str, Any]]] = {}  # fixtureId -> oddsId -> outcome

    # --- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> FeedServer:
        self._server = await serve(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            for conn in self._server.connections:  # logged in or not
                _drop(conn)
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FeedServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        return len(self._sessions)

    # --- test hooks ---------------------------------------------------------------------------------
    def drop_connections(self) -> int:
        """Abort every client's TCP connection (no close handshake). Returns how many."""
        sessions = list(self._sessions)
        for session in sessions:
            _drop(session.conn)
        return len(sessions)

    def restart(self) -> None:
        """Simulate a gateway restart: drop everyone, new epoch, no replay buffer. The latest
        state (what a snapshot returns) survives, as it would in the upstream store."""
        self.drop_connections()
        fixtures, scores, odds = self._fixtures, self._scores, self._odds
        self._reset()
        self._fixtures, self._scores, self._odds = fixtures, scores, odds

    async def announce_reconnect(self, reason: str = "server_upgrade", grace: float = 0.05) -> None:
        """Send ``{"type": "reconnect"}`` to everyone, keep streaming for ``grace`` seconds, then close."""
        frame = encode_json({"type": "reconnect", "reason": reason})
        notified = list(self._sessions)
        for session in notified:
            session.queue.put_nowait(frame)
        await asyncio.sleep(grace)
        for session in notified:  # not the connections made since, to the "new version"
            await session.conn.close(1001, "reconnect")

    def send_raw(self, data: str | bytes) -> None:
        """Queue a raw message (possibly malformed) to every logged-in client, in stream order."""
        for session in list(self._sessions):
            session.queue.put_nowait(data)

    # --- publishing ---------------------------------------------------------------------------------
    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def publish(self, channel: str, payload: Mapping[str, Any]) -> str:
        """Append one stream message to ``channel`` and send it to every subscriber. Returns its
        entry id. Synchronous: between two awaits, publishing and logging in cannot interleave,
        which is what makes resume exact."""
        if channel not in self._seq:
            raise ValueError(f"unknown channel {channel!r}")
        fixture_id = payload["fixtureId"]
        ts = self.now_ms()
        self._seq[channel] += 1
        seq = self._seq[channel]
        self._published += 1
        entry = _Entry(self._published, channel, seq, ts, format_entry_id(ts, seq), fixture_id, payload)
        self._buffer[channel].append(entry)
        self._evict(ts)
        self._apply_state(entry)
        for session in list(self._sessions):
            data = self._render(entry, session.sub)
            if data is None:
                continue
            if session.queue.qsize() >= MAX_SESSION_BACKLOG:
                log.warning("feed server: dropping a client %d messages behind", session.queue.qsize())
                _drop(session.conn)
                continue
            session.queue.put_nowait(data)
        return entry.entry_id

    def _evict(self, now_ms: int) -> None:
        horizon = now_ms - self.resume_window_ms
        for buf in self._buffer.values():
            while buf and buf[0].ts < horizon:
                buf.popleft()

    def _apply_state(self, entry: _Entry) -> None:
        payload, fid = entry.payload, entry.fixture_id
        if entry.channel == FIXTURES:
            state = self._fixtures.setdefault(fid, {})
            for key, value in payload.items():
                if isinstance(value, dict) and isinstance(state.get(key), dict):
                    state[key] = {**state[key], **value}
                else:
                    state[key] = value
        elif entry.channel == SCORES:
            state = self._scores.setdefault(fid, {})
            state.update(payload.get("scores") or {})
        elif entry.channel == ODDS:
            state = self._odds.setdefault(fid, {})
            for bookmaker, group in (payload.get("odds") or {}).items():
                for odds_id, outcome in group.items():
                    state[odds_id] = {**outcome, "bookmaker": outcome.get("bookmaker", bookmaker)}

    async def play(self, events: Iterable[ReplayEvent], *, speed: float = 1.0, time_shift_ms: int = 0) -> int:
        """Publish replay events, keeping their relative timing divided by ``speed`` (``0``: as
        fast as the clients take them). Payload timestamps move by ``time_shift_ms``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        count = 0
        for event in events:
            if speed > 0:
                delay = start + event.t_ms / 1000 / speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            self.publish(event.channel, rebase_payload(event.channel, event.payload, time_shift_ms))
            count += 1
            if speed <= 0 and count % 50 == 0:
                await asyncio.sleep(0)
        return count

    # --- what a client sees -------------------------------------------------------------------------
    def _visible(self, fixture_id: str, sub: _Subscription) -> bool:
        if sub.fixture_ids and fixture_id not in sub.fixture_ids:
            return False
        if sub.sport_ids or sub.tournament_ids:
            meta = self._fixtures.get(fixture_id, {})
            sport_id = (meta.get("sport") or {}).get("sportId")
            tournament_id = (meta.get("tournament") or {}).get("tournamentId")
            if sub.sport_ids and sport_id not in sub.sport_ids:
                return False
            if sub.tournament_ids and tournament_id not in sub.tournament_ids:
                return False
        return True

    def _filter_odds(self, payload: Mapping[str, Any], sub: _Subscription) -> Mapping[str, Any] | None:
        if not sub.bookmakers:
            return payload
        groups = {b: g for b, g in (payload.get("odds") or {}).items() if b in sub.bookmakers}
        return {**payload, "odds": groups} if groups else None

    def _render(self, entry: _Entry, sub: _Subscription) -> str | bytes | None:
        if entry.channel not in sub.channels or not self._visible(entry.fixture_id, sub):
            return None
        payload = entry.payload
        if entry.channel == ODDS:
            payload = self._filter_odds(payload, sub)
            if payload is None:
                return None
        frame = {
            "channel": entry.channel,
            "type": "UPDATE",
            "payload": payload,
            "ts": entry.ts,
            "entryId": entry.entry_id,
        }
        if sub.receive_type == RECEIVE_BINARY:
            return encode_msgpack(frame)
        return encode_json(frame)

    def snapshot(
        self,
        channels: Iterable[str] = DEFAULT_CHANNELS,
        *,
        sport_ids: Iterable[int] = (),
        tournament_ids: Iterable[int] = (),
        fixture_ids: Iterable[str] = (),
        bookmakers: Iterable[str] = (),
    ) -> list[dict[str, Any]]:
        """The current state as stream-shaped messages without cursors (what the REST snapshot
        gives a client after ``snapshot_required``): fixtures first, then scores, then odds."""
        sub = _Subscription(
            channels=frozenset(channels),
            sport_ids=frozenset(sport_ids),
            tournament_ids=frozenset(tournament_ids),
            fixture_ids=frozenset(fixture_ids),
            bookmakers=frozenset(bookmakers),
        )
        ts = self.now_ms()
        out: list[dict[str, Any]] = []

        def add(channel: str, payload: Mapping[str, Any]) -> None:
            out.append({"channel": channel, "type": "UPDATE", "payload": payload, "ts": ts})

        if FIXTURES in sub.channels:
            for fid, state in self._fixtures.items():
                if self._visible(fid, sub):
                    add(FIXTURES, dict(state))
        if SCORES in sub.channels:
            for fid, scores in self._scores.items():
                if self._visible(fid, sub):
                    add(SCORES, {"fixtureId": fid, "scores": dict(scores)})
        if ODDS in sub.channels:
            for fid, outcomes in self._odds.items():
                if not self._visible(fid, sub):
                    continue
                groups: dict[str, dict[str, Any]] = {}
                for odds_id, outcome in outcomes.items():
                    if not sub.bookmakers or outcome["bookmaker"] in sub.bookmakers:
                        groups.setdefault(outcome["bookmaker"], {})[odds_id] = outcome
                if groups:
                    add(ODDS, {"fixtureId": fid, "odds": groups})
        return out

    # --- one connection -----------------------------------------------------------------------------
    async def _error(self, conn: ServerConnection, code: str, message: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await conn.send(encode_json({"type": "error", "code": code, "message": message}))
            await conn.close(4000, code)

    def _login(self, raw: str | bytes) -> tuple[dict[str, Any] | None, str, str]:
        try:
            msg = json.loads(raw)
        except ValueError:
            return None, "bad_login", "login must be a JSON object"
        if not isinstance(msg, dict) or msg.get("type") != "login":
            return None, "login_required", "the first message must be a login"
        key = msg.get("apiKey")
        if not isinstance(key, str) or not key or (self.api_keys is not None and key not in self.api_keys):
            return None, "invalid_api_key", "API key not recognised"
        if msg.get("receiveType", RECEIVE_JSON) not in (RECEIVE_JSON, RECEIVE_BINARY):
            return None, "bad_login", "receiveType must be json or binary"
        return msg, "", ""

    def _resume_plan(self, msg: Mapping[str, Any], sub: _Subscription) -> tuple[list[_Entry], dict[str, Any] | None]:
        """Entries to replay and the control frame that follows them (None: a fresh login)."""
        epoch = msg.get("serverEpoch")
        cursors = msg.get("lastSeenId")
        if not isinstance(epoch, str) or not isinstance(cursors, dict) or not cursors:
            return [], None
        wanted = [c for c in cursors if c in sub.channels]
        if epoch != self.epoch:
            return [], self._snapshot_required("server_restarted", wanted or sorted(sub.channels))
        self._evict(self.now_ms())
        replay: list[_Entry] = []
        refused: list[str] = []
        for channel in wanted:
            if channel not in self.replay_channels:
                continue  # not replayable, and login_ok said so: the client re-loads it itself
            cursor = parse_entry_id(cursors[channel])
            buf = self._buffer[channel]
            if cursor is None or cursor[1] > self._seq[channel]:
                refused.append(channel)
                continue
            if buf and buf[0].seq > cursor[1] + 1:  # something after the cursor was evicted
                refused.append(channel)
                continue
            if not buf and cursor[1] < self._seq[channel]:  # everything after it was evicted
                refused.append(channel)
                continue
            replay.extend(e for e in buf if e.seq > cursor[1])
        replay.sort(key=lambda e: e.order)
        if refused:
            return replay, self._snapshot_required("resume_window_exceeded", refused)
        return replay, {"type": "resume_complete", "serverEpoch": self.epoch}

    def _snapshot_required(self, reason: str, channels: list[str]) -> dict[str, Any]:
        return {
            "type": "snapshot_required",
            "reason": reason,
            "channels": channels,
            "serverEpoch": self.epoch,
            "resumeWindowMs": self.resume_window_ms,
            "serverEntryIds": self._entry_ids(),
        }

    def _entry_ids(self) -> dict[str, str]:
        return {c: buf[-1].entry_id for c, buf in self._buffer.items() if buf}

    async def _handle(self, conn: ServerConnection) -> None:
        try:
            raw = await asyncio.wait_for(conn.recv(), self.login_timeout)
        except TimeoutError:
            await self._error(conn, "login_timeout", f"no login within {self.login_timeout:g}s")
            return
        except ConnectionClosed:
            return
        msg, code, message = self._login(raw)
        if msg is None:
            await self._error(conn, code, message)
            return
        requested = msg.get("channels")
        channels = frozenset(requested) & frozenset(KNOWN_CHANNELS) if isinstance(requested, list) else None
        sub = _Subscription(
            channels=channels if channels is not None else frozenset(KNOWN_CHANNELS),
            sport_ids=_ids(msg.get("sportIds"), int),
            tournament_ids=_ids(msg.get("tournamentIds"), int),
            fixture_ids=_ids(msg.get("fixtureIds"), str),
            bookmakers=_ids(msg.get("bookmakers"), str),
            receive_type=msg.get("receiveType", RECEIVE_JSON),
        )
        session = _Session(conn, sub)
        # No await from here to the end of the plan: nothing can be published in between, so the
        # replay ends exactly where the live queue begins.
        self._sessions.add(session)
        replay, after = self._resume_plan(msg, sub)
        self.logins += 1
        login_ok = {
            "type": "login_ok",
            "receiveType": sub.receive_type,
            "access": {"live": True, "pregame": True},
            "resume": {
                "serverEpoch": self.epoch,
                "resumeWindowMs": self.resume_window_ms,
                "replayChannels": list(self.replay_channels),
                "serverEntryIds": self._entry_ids(),
            },
        }
        reader = asyncio.get_running_loop().create_task(self._read_until_closed(session))
        try:
            await conn.send(encode_json(login_ok))
            for entry in replay:
                data = self._render(entry, sub)
                if data is not None:
                    await conn.send(data)
            if after is not None:
                await conn.send(encode_json(after))
            while True:
                data = await session.queue.get()
                if data is None:
                    break
                await conn.send(data)
        except ConnectionClosed:
            pass
        finally:
            self._sessions.discard(session)
            reader.cancel()

    async def _read_until_closed(self, session: _Session) -> None:
        """The protocol has nothing for a client to say after login; read and ignore, so that a
        close is noticed and the session's sender stops."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await session.conn.recv()
        session.queue.put_nowait(None)


def make_snapshot_loader(server: FeedServer, **filters: Any) -> Callable[[tuple[str, ...]], Any]:
    """A ``snapshot_loader`` for :class:`trading.feed.client.FeedClient` that reads the local
    server's state, standing in for the REST snapshot call of the real gateway."""

    async def load(channels: tuple[str, ...]) -> list[Frame]:
        frames = []
        for obj in server.snapshot(channels, **filters):
            frame = frame_from_obj(obj)
            if frame is not None:
                frames.append(frame)
        return frames

    return load


async def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a replay file over the OddsPapi v5 WebSocket protocol.")
    parser.add_argument("--replay", required=True, help="replay file (JSON lines)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--speed", type=float, default=1.0, help="time factor; 0 = as fast as possible")
    parser.add_argument("--wait", type=float, default=1.0, help="seconds to wait for clients before playing")
    parser.add_argument("--loop", action="store_true", help="play the file again and again")
    args = parser.parse_args(argv)
    header, events = read_replay(args.replay)
    server = await FeedServer(host=args.host, port=args.port).start()
    print(f"odds feed replay on {server.url} ({len(events)} messages)", flush=True)
    await asyncio.sleep(args.wait)
    while True:
        shift = server.now_ms() - header.base_time_ms
        await server.play(events, speed=args.speed, time_shift_ms=shift)
        if not args.loop:
            break
    await asyncio.sleep(1.0)
    await server.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main())
