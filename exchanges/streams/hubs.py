"""Conflating hubs: one per (web process, event loop, stream key), shared by every local subscriber.

``bbo`` (seed: "throttled to 50ms") and ``markets`` do not forward every event: a hub listens on
the book (or markets) group with **one** channel per process, marks its key dirty on each event and
flushes at most once per interval:

- *leading edge*: the first change after a quiet interval is read and sent at once;
- *trailing edge*: changes inside the interval are folded into one read at ``last_sent + interval``,
  which carries the latest state;
- a read that finds the same top of book as last sent sends nothing (a deeper level changed).

So each subscriber gets at most one message per interval, and a change waits at most one interval
(plus one read of the top of book and the delivery) before it is on the wire. Fan-out to the
process's subscribers is in memory, so the channel layer carries one message per process per
change however many clients watch (1,000 ``bbo`` subscribers cost Redis what one does).

**Fan-out.** A message is encoded once, to JSON and then to the bytes of one WebSocket frame (a
server's frames are not masked, so the same bytes serve every connection), and under daphne those
bytes are written straight to each connection's socket in one loop (:class:`DirectSocket`): no
ASGI message, no per-connection coroutine, no autobahn framing, no reactor round trip per socket.
Connections this cannot serve (TLS, another ASGI server, the test communicator) get the same text
through their ASGI ``send``.

**Slow readers.** A frame is written only to a connection that has nothing left unsent in Twisted's
buffer; one that still has a backlog is skipped, and once it has drained (checked at every later
flush and every interval meanwhile) it gets the latest frame of each key it missed (``bbo``: the
top of book; ``markets``: each pair), not every frame in between: on a conflated stream the latest
message supersedes the older ones, so queueing them would only grow the server's memory and the
client's delay. A connection whose backlog still passes ``EXCHANGE_WS_MAX_BUFFER_BYTES`` (what
daphne itself queued: first message, pongs) is closed 4008 ``slow_consumer``.

Hubs start with their first subscriber and stop with their last. docs/exchange-streams.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

from channels.layers import get_channel_layer

from . import conf, frames
from .publish import book_group, markets_group

try:
    from redis.exceptions import TimeoutError as RedisTimeout
except ImportError:  # pragma: no cover - redis comes with channels_redis
    RedisTimeout = TimeoutError

log = logging.getLogger(__name__)

#: Sockets written between two yields to the event loop during a fan-out (a direct write costs a
#: few microseconds: 1,000 sockets hold the loop for a few milliseconds).
FAN_OUT_CHUNK = 1000
#: Redis drops group members after ``group_expiry`` (a day by default): re-join well before.
GROUP_REJOIN_SECONDS = 3600.0


class Subscriber(Protocol):
    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False): ...


# --- delivery to one connection ---------------------------------------------------------------------------------

#: autobahn's ``WebSocketProtocol.STATE_OPEN``: the handshake is done and no close frame has gone either way.
_WS_OPEN = 3
#: Close code of a connection whose unsent backlog passed ``EXCHANGE_WS_MAX_BUFFER_BYTES``.
CLOSE_SLOW_CONSUMER = 4008
#: Seconds a connection closed as a slow consumer has to read its backlog and the close frame behind it
#: before the TCP connection is aborted (autobahn's 1 s would abort nearly every such client before it
#: could read why); its buffer no longer grows meanwhile.
SLOW_CLOSE_TIMEOUT = 5.0
#: Bytes the kernel may hold unsent for a stream connection (``TCP_NOTSENT_LOWAT``). Linux's default is
#: whatever the send buffer autotunes to, up to 4 MB a socket: a client that stops reading would sit on
#: megabytes of stale frames in the kernel before anything reached Twisted's buffer, where the hubs see
#: a backlog and the bound applies. Bytes in flight are not counted (the peer's window bounds them),
#: so a reader on a long fat link is not slowed.
KERNEL_UNSENT_BYTES = 64 * 1024


class DirectSocket:
    """Writes ready-made WebSocket frames to one daphne connection without going through daphne.

    daphne hands each ASGI application ``functools.partial(server.handle_reply, protocol)`` as its
    ``send``; the protocol is autobahn's, on a Twisted TCP transport. :meth:`write` keeps their
    invariants:

    - nothing is written unless the WebSocket is open (after the handshake, before any close frame);
    - bytes stay in order with everything daphne and autobahn write themselves (the handshake, the
      first message, pings, close frames): the socket is written directly only when Twisted's
      outgoing buffer is empty, otherwise the frame joins that buffer through ``transport.write``,
      and what a partial ``send`` leaves over goes there too (so a write never blocks the loop; the
      hubs do not add to a backlog, see :meth:`Hub.fan_out`).

    A broken socket (the client went away) is skipped: Twisted sees the close on its read side and
    daphne disconnects the consumer, which unsubscribes.

    It also measures what the connection has not sent yet (:meth:`unsent`, three attribute reads)
    and closes it when that passes the bound (:meth:`drop_slow`), for the hubs and the consumers alike.
    """

    __slots__ = ("protocol", "transport", "sock", "dropped")

    def __init__(self, protocol: Any, transport: Any, sock: Any) -> None:
        self.protocol = protocol
        self.transport = transport
        self.sock = sock
        self.dropped = False

    @classmethod
    def for_send(cls, send: Any) -> DirectSocket | None:
        """The direct writer behind an ASGI ``send`` of daphne, or None when ``send`` is anything else
        or the connection is one this class must not bypass (TLS, per-message compression)."""
        if not isinstance(send, functools.partial) or len(send.args) != 1 or send.keywords:
            return None
        if getattr(send.func, "__name__", "") != "handle_reply":
            return None
        try:
            from daphne.ws_protocol import WebSocketProtocol
        except ImportError:  # pragma: no cover - daphne is the production server
            return None
        protocol = send.args[0]
        if not isinstance(protocol, WebSocketProtocol) or getattr(protocol, "_perMessageCompress", None) is not None:
            return None
        transport = getattr(protocol, "transport", None)
        if transport is None or getattr(transport, "TLS", True):
            return None
        if not all(hasattr(transport, a) for a in ("dataBuffer", "_tempDataLen", "getHandle", "disconnecting")):
            return None  # not the Twisted TCP transport this was written against
        return cls(protocol, transport, transport.getHandle())

    def limit_kernel_queue(self) -> None:
        """At most :data:`KERNEL_UNSENT_BYTES` unsent in the kernel (where the option exists: Linux, macOS)."""
        option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
        if option is not None:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.IPPROTO_TCP, option, KERNEL_UNSENT_BYTES)

    def is_open(self) -> bool:
        protocol, transport = self.protocol, self.transport
        return protocol.state == _WS_OPEN and transport.connected and not transport.disconnecting

    def unsent(self) -> int:
        """Bytes Twisted holds for this connection that the kernel has not taken: the client's backlog
        beyond the kernel's buffers. (Twisted moves ``_tempDataBuffer`` into ``dataBuffer`` as it
        writes, and ``offset`` is how far into ``dataBuffer`` the kernel has taken.)"""
        transport = self.transport
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    def behind(self) -> bool:
        """Anything queued ahead of a new frame (Twisted's buffer, or autobahn's own queue of chopped writes)."""
        transport = self.transport
        return bool(transport.dataBuffer or transport._tempDataLen or self.protocol.send_queue)

    def drop_slow(self, unsent: int, limit: int) -> None:
        """Close a connection whose backlog passed ``limit``, once: a close frame 4008 ``slow_consumer``
        queued behind the backlog while the WebSocket is open (autobahn aborts the TCP connection if the
        client has not answered it within :data:`SLOW_CLOSE_TIMEOUT`), otherwise an abort.
        Nothing more is queued for it either way (autobahn sends nothing on a closing WebSocket), and
        daphne disconnects the consumer as for any close, which frees its slot."""
        if self.dropped:
            return
        self.dropped = True
        protocol = self.protocol
        peer = getattr(protocol, "client_addr", None)
        log.warning(
            "exchange stream %s from %s: %d bytes unsent (bound %d), closing as a slow consumer",
            getattr(protocol, "path", b"?").decode("latin1", "replace"),
            f"{peer[0]}:{peer[1]}" if peer else "?",
            unsent,
            limit,
        )
        if protocol.state == _WS_OPEN:
            protocol.closeHandshakeTimeout = SLOW_CLOSE_TIMEOUT  # read by sendClose, for this connection only
            protocol.sendClose(code=CLOSE_SLOW_CONSUMER, reason="slow_consumer")
        else:
            self.transport.abortConnection()

    def over_bound(self, limit: int) -> bool:
        """Whether the connection is (being) closed as a slow consumer: already dropped, or its
        backlog passed ``limit`` now (then it is dropped). ``limit`` 0: no bound."""
        if self.dropped:
            return True
        if not limit:
            return False
        unsent = self.unsent()
        if unsent <= limit:
            return False
        self.drop_slow(unsent, limit)
        return True

    def write(self, data: bytes) -> bool:
        """Write (or queue behind what is already queued) one frame; False if the connection is
        closing or closed."""
        protocol, transport = self.protocol, self.transport
        if protocol.state != _WS_OPEN or not transport.connected or transport.disconnecting:
            return False
        if transport.dataBuffer or transport._tempDataLen or protocol.send_queue:
            transport.write(data)
            return True
        return self.write_idle(data)

    def write_idle(self, data: bytes) -> bool:
        """:meth:`write` for a connection the caller has just seen open with nothing queued."""
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # reset or broken pipe: the reactor will see the close and disconnect the consumer
            return False
        if sent < len(data):
            self.transport.write(data[sent:])
        return True


class _Member:
    """One subscriber of a hub: ``live`` once it has been sent its first message; ``missed``, the keys
    of the frames it was skipped for while it had a backlog (None: none)."""

    __slots__ = ("sub", "sock", "live", "missed")

    def __init__(self, sub: Subscriber) -> None:
        self.sub = sub
        # The consumer's own writer if it has one, so a slow-consumer close is logged once per connection.
        self.sock = getattr(sub, "direct_socket", None) or DirectSocket.for_send(getattr(sub, "base_send", None))
        self.live = False
        self.missed: set[str] | None = None


class Hub:
    """Listens to ``group``; on events calls ``on_event(message)`` which marks work; flushes with
    ``compute()`` -> list of (key, JSON text) to fan out, at most once per ``interval``. A text
    supersedes every earlier one of its key (``bbo``: one key; ``markets``: the pair), which is
    what lets a connection with a backlog skip frames and get only the latest per key later.

    ``_lock`` serialises reads of the hub's state with sending: a flush (compute and fan-out) and a
    new subscriber's first message never interleave, so a subscriber's first message is always the
    first it receives, and nothing computed before it follows it."""

    def __init__(self, registry_key: tuple, group: str, interval: float) -> None:
        self.registry_key = registry_key
        self.group = group
        self.interval = interval
        self.subscribers: dict[Subscriber, _Member] = {}
        self.channel: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._flush_task: asyncio.Task | None = None
        self._catch_up_task: asyncio.Task | None = None
        self._latest: dict[str, bytes] = {}  # the last frame fanned out per key
        self._behind: set[_Member] = set()  # direct connections skipped for their backlog
        self._dirty = False
        self._last_sent = float("-inf")
        self._lock = asyncio.Lock()
        self.stopped = False

    # -- lifecycle

    async def start(self) -> None:
        layer = get_channel_layer()
        # The layer's default prefix: channels_redis runs one receive loop per process for its
        # process-local ("specific") channels; a channel of another prefix would contend for it.
        self.channel = await layer.new_channel()
        await layer.group_add(self.group, self.channel)
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._rejoin())]

    async def stop(self) -> None:
        self.stopped = True
        for task in [*self._tasks, self._flush_task, self._catch_up_task]:
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.channel is not None:
            with contextlib.suppress(Exception):
                await get_channel_layer().group_discard(self.group, self.channel)

    async def join(self, sub: Subscriber) -> None:
        """Send ``sub`` (already registered by :func:`subscribe`) the current state, then let it
        receive the flushes. Under ``_lock``, so no flush can slip in before the first message."""
        async with self._lock:
            texts = await self.initial()
            member = self.subscribers.get(sub)
            if member is None:  # it went away while the state was read
                return
            for text in texts:
                await sub.send(text_data=text)
            member.live = True

    async def _listen(self) -> None:
        layer = get_channel_layer()
        while not self.stopped:
            try:
                message = await layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, RedisTimeout):
                # channels_redis waits up to 5 s (BZPOPMIN) for a message, and redis-py's default read
                # timeout is also 5 s: on a quiet group the client can give up first. Listen again at once.
                log.debug("stream hub %s: receive timed out", self.group)
                continue
            except Exception:  # noqa: BLE001 - the layer hiccuped (Redis restart): wait and listen again
                log.exception("stream hub %s: receive failed", self.group)
                await asyncio.sleep(0.5)
                continue
            try:
                self.on_event(message)
            except (KeyError, TypeError, ValueError, ArithmeticError):
                log.exception("stream hub %s: bad message %r", self.group, message.get("type"))
                continue
            self._kick()

    async def _rejoin(self) -> None:
        while not self.stopped:
            await asyncio.sleep(GROUP_REJOIN_SECONDS)
            with contextlib.suppress(Exception):
                await get_channel_layer().group_add(self.group, self.channel)

    # -- conflation

    def on_event(self, message: dict[str, Any]) -> None:
        self._dirty = True

    def _kick(self) -> None:
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty and not self.stopped:
            wait = self._last_sent + self.interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # trailing edge: one interval after the last message
            self._dirty = False
            async with self._lock:
                try:
                    items = await self.compute()
                except Exception:  # noqa: BLE001 - a failed read (database away) is retried on the next event
                    log.exception("stream hub %s: read failed", self.group)
                    continue
                if items:
                    self._last_sent = loop.time()
                    await self.fan_out(items)

    async def fan_out(self, items: list[tuple[str, str]]) -> None:
        """Hand every (key, text) to every live subscriber, in one pass: the frame bytes are built once
        and written to each daphne socket directly; other connections get the texts through their ASGI
        ``send`` (one message dict per text, shared by all of them).

        A daphne connection with anything unsent is skipped and remembers the keys it missed; one that
        has drained since gets, ahead of this flush, the latest frame of each missed key this flush
        does not carry. Per socket that is a handful of attribute reads, nothing per byte."""
        data = [frames.ws_text_frame(text) for _, text in items]
        first, rest = data[0], data[1:]
        keys = {key for key, _ in items}
        for (key, _), frame in zip(items, data, strict=True):
            self._latest[key] = frame
        limit = conf.max_buffer_bytes()
        others: list[_Member] = []
        n = 0
        for member in list(self.subscribers.values()):
            if not member.live:
                continue
            sock = member.sock
            if sock is None:
                others.append(member)
                continue
            n += 1
            if n % FAN_OUT_CHUNK == 0:
                await asyncio.sleep(0)
            if not sock.is_open():
                continue
            if sock.behind():
                if not sock.over_bound(limit):
                    if member.missed is None:
                        member.missed = set(keys)
                    else:
                        member.missed |= keys
                    self._behind.add(member)
                continue
            if member.missed is not None:
                self._write_missed(member, sock, keys)
                if not sock.write(first):
                    continue
            elif not sock.write_idle(first):
                continue
            for chunk in rest:
                if not sock.write(chunk):
                    break
        if self._behind and (self._catch_up_task is None or self._catch_up_task.done()):
            self._catch_up_task = asyncio.create_task(self._catch_up_loop())
        if others:
            messages = [{"type": "websocket.send", "text": text} for _, text in items]
            for member in others:
                send = getattr(member.sub, "base_send", None)
                try:
                    for message in messages:
                        if send is not None:
                            await send(message)
                        else:
                            await member.sub.send(text_data=message["text"])
                except Exception:  # noqa: BLE001 - one broken socket must not starve the others
                    log.debug("stream hub %s: send to a closing socket failed", self.group)

    def _write_missed(self, member: _Member, sock: DirectSocket, skip: set[str]) -> None:
        """The latest frame of each key ``member`` missed, but those in ``skip`` (about to go out anyway)."""
        missed, member.missed = member.missed or (), None
        self._behind.discard(member)
        for key in missed:
            frame = self._latest.get(key)
            if key not in skip and frame is not None and not sock.write(frame):
                return

    async def _catch_up_loop(self) -> None:
        """Every interval while some connection is behind: the drained ones get the latest of what they
        missed (so a quiet stream does not leave them on a stale top), the ones past the bound are closed.
        Under ``_lock``, like a flush, so nothing computed later goes out ahead of it."""
        while self._behind and not self.stopped:
            await asyncio.sleep(self.interval)
            async with self._lock:
                limit = conf.max_buffer_bytes()
                for member in list(self._behind):
                    sock = member.sock
                    if self.subscribers.get(member.sub) is not member or sock is None or not sock.is_open():
                        self._behind.discard(member)
                    elif not sock.behind():
                        self._write_missed(member, sock, set())
                    elif sock.over_bound(limit):
                        self._behind.discard(member)

    async def compute(self) -> list[tuple[str, str]]:  # pragma: no cover - abstract
        """(key, JSON text) of each message to send now; a text supersedes the earlier ones of its key."""
        raise NotImplementedError

    async def initial(self) -> list[str]:  # pragma: no cover - abstract
        """The first message(s) of a new subscriber; the caller holds ``_lock``."""
        raise NotImplementedError


# --- bbo --------------------------------------------------------------------------------------------------------


class BboHub(Hub):
    """The top of one book, from a mirror of the whole book kept in memory.

    The hub joins the book group *before* it reads one full snapshot (``read_snapshot``, any depth),
    then applies every delta after the snapshot's sequence, so the mirror is exact without reading
    the database again. A delta that arrives ahead of its predecessor waits; if the predecessor is
    still missing at the next flush (the layer dropped it), the mirror is read again from the
    database. Each flush computes best bid/ask from the mirror: no database read on the hot path.
    """

    def __init__(self, registry_key: tuple, symbol: str, mode: str, read_snapshot: Callable[..., Awaitable[dict]]):
        super().__init__(registry_key, book_group(symbol, mode), conf.bbo_interval())
        self.symbol = symbol
        self.mode = mode
        self._read_snapshot = read_snapshot
        self._last_key: tuple | None = None
        self._last_text: str | None = None
        self.sequence: int | None = None  # None until the first snapshot is in
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}
        self._pending: dict[int, tuple[list, list]] = {}
        self.snapshots_read = 0

    def on_event(self, message: dict[str, Any]) -> None:
        for delta in message.get("deltas", ()):
            seq = int(delta["sequence"])
            if self.sequence is not None and seq <= self.sequence:
                continue
            frame = json.loads(delta["frame"])
            self._pending[seq] = (frame.get("bids", ()), frame.get("asks", ()))
        self._apply_pending()
        self._dirty = True

    def _apply_pending(self) -> None:
        if self.sequence is None:
            return
        while self.sequence + 1 in self._pending:
            self.sequence += 1
            bids, asks = self._pending.pop(self.sequence)
            self._apply(self.bids, bids)
            self._apply(self.asks, asks)

    @staticmethod
    def _apply(side: dict[Decimal, tuple[str, str]], levels) -> None:
        for price, qty in levels:
            key = Decimal(price)
            if Decimal(qty) == 0:
                side.pop(key, None)
            else:
                side[key] = (price, qty)

    async def _load(self) -> None:
        snap = await self._read_snapshot(self.symbol, self.mode, None)
        self.snapshots_read += 1
        self.bids = {Decimal(p): (frames.dec(p), frames.dec(q)) for p, q in snap["bids"]}
        self.asks = {Decimal(p): (frames.dec(p), frames.dec(q)) for p, q in snap["asks"]}
        self.sequence = int(snap["sequence"])
        for seq in [s for s in self._pending if s <= self.sequence]:
            del self._pending[seq]
        self._apply_pending()
        # What is left is not contiguous with the fresh snapshot: drop it rather than re-read the book on
        # every flush; if such a delta was only early, the next one shows the gap and the book is read again.
        self._pending.clear()

    def _frame(self) -> tuple[tuple, str]:
        bid = self.bids[max(self.bids)] if self.bids else (None, None)
        ask = self.asks[min(self.asks)] if self.asks else (None, None)
        frame = frames.bbo(
            symbol=self.symbol,
            mode=self.mode,
            best_bid=bid[0],
            best_bid_size=bid[1],
            best_ask=ask[0],
            best_ask_size=ask[1],
        )
        key = (frame["best_bid"], frame["best_bid_size"], frame["best_ask"], frame["best_ask_size"])
        return key, frames.to_json(frame)

    async def compute(self) -> list[tuple[str, str]]:
        if self.sequence is None or self._pending:
            await self._load()  # first use, or a delta is missing: read the book again
        key, text = self._frame()
        if key == self._last_key:
            return []
        self._last_key, self._last_text = key, text
        return [("bbo", text)]

    async def initial(self) -> list[str]:
        if self.sequence is None:
            await self._load()
        if self._last_text is None:
            self._last_key, self._last_text = self._frame()
        return [self._last_text]


# --- markets ---------------------------------------------------------------------------------------------------


class MarketsHub(Hub):
    """Per mode: the pairs that traded since the last flush are re-read (price, 24h volume, change)."""

    def __init__(self, registry_key: tuple, mode: str, read: Callable[[str, list[str] | None], Awaitable[list[dict]]]):
        super().__init__(registry_key, markets_group(mode), conf.markets_interval())
        self.mode = mode
        self._read = read
        self._pending: set[str] = set()
        self._snapshot: tuple[float, str] | None = None

    def on_event(self, message: dict[str, Any]) -> None:
        self._pending.update(message.get("symbols", ()))
        self._snapshot = None  # a pair traded: the next client gets a fresh snapshot
        self._dirty = True

    async def compute(self) -> list[tuple[str, str]]:
        symbols, self._pending = sorted(self._pending), set()
        if not symbols:
            return []
        rows = await self._read(self.mode, symbols)
        return [(str(row["symbol"]), frames.to_json(frames.market(row, mode=self.mode))) for row in rows]

    async def initial(self) -> list[str]:
        """The snapshot of every pair, read at most once per interval however many clients connect
        (and again as soon as a pair trades)."""
        now = asyncio.get_running_loop().time()
        if self._snapshot is None or now - self._snapshot[0] >= self.interval:
            rows = await self._read(self.mode, None)
            ts = frames.iso()
            text = frames.to_json(
                {
                    "type": "snapshot",
                    "mode": self.mode,
                    "markets": [frames.market(row, mode=self.mode, timestamp=ts) for row in rows],
                    "timestamp": ts,
                }
            )
            self._snapshot = (now, text)
        return [self._snapshot[1]]


# --- registry ---------------------------------------------------------------------------------------------------

_hubs: dict[tuple, Hub] = {}
_registry_lock: dict[int, asyncio.Lock] = {}


def _lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _registry_lock.get(id(loop))
    if lock is None:
        lock = _registry_lock[id(loop)] = asyncio.Lock()
    return lock


async def subscribe(kind: str, key: tuple, factory: Callable[[tuple], Hub], sub: Subscriber) -> Hub:
    """Join (starting if needed) the hub for ``(kind, key)`` in this process and loop; send ``sub``
    the current state first."""
    registry_key = (id(asyncio.get_running_loop()), kind, *key)
    async with _lock():
        hub = _hubs.get(registry_key)
        if hub is None or hub.stopped:
            hub = factory(registry_key)
            await hub.start()
            _hubs[registry_key] = hub
        hub.subscribers[sub] = _Member(sub)  # registered first, so the hub cannot stop under it
    await hub.join(sub)
    return hub


async def unsubscribe(hub: Hub, sub: Subscriber) -> None:
    async with _lock():
        hub.subscribers.pop(sub, None)
        if hub.subscribers or hub.stopped:
            return
        if _hubs.get(hub.registry_key) is hub:
            del _hubs[hub.registry_key]
        hub.stopped = True
    await hub.stop()


def active_hubs() -> list[Hub]:
    return list(_hubs.values())
