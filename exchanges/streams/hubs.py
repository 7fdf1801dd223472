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

Hubs start with their first subscriber and stop with their last. docs/exchange-streams.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

from channels.layers import get_channel_layer

from . import conf, frames
from .publish import book_group, markets_group

log = logging.getLogger(__name__)

#: Sockets served between two yields to the event loop during a fan-out.
FAN_OUT_CHUNK = 100
#: Redis drops group members after ``group_expiry`` (a day by default): re-join well before.
GROUP_REJOIN_SECONDS = 3600.0


class Subscriber(Protocol):
    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False): ...


class Hub:
    """Listens to ``group``; on events calls ``on_event(message)`` which marks work; flushes with
    ``compute()`` -> list of JSON texts to fan out, at most once per ``interval``."""

    def __init__(self, registry_key: tuple, group: str, interval: float) -> None:
        self.registry_key = registry_key
        self.group = group
        self.interval = interval
        self.subscribers: set[Subscriber] = set()
        self.channel: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._flush_task: asyncio.Task | None = None
        self._dirty = False
        self._last_sent = float("-inf")
        self._read_lock = asyncio.Lock()
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
        for task in [*self._tasks, self._flush_task]:
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.channel is not None:
            with contextlib.suppress(Exception):
                await get_channel_layer().group_discard(self.group, self.channel)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        while not self.stopped:
            try:
                message = await layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
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
                await asyncio.sleep(wait)
            self._dirty = False
            try:
                async with self._read_lock:
                    texts = await self.compute()
            except Exception:  # noqa: BLE001 - a failed read (database away) is retried on the next event
                log.exception("stream hub %s: read failed", self.group)
                continue
            if texts:
                self._last_sent = loop.time()
                await self.fan_out(texts)

    async def fan_out(self, texts: list[str]) -> None:
        """Hand every text to every local subscriber. The ASGI ``send`` of each socket is called
        directly (one message dict per text, shared by all sockets), and the loop yields every
        ``FAN_OUT_CHUNK`` sockets so the server starts writing to the first sockets while it queues
        to the rest."""
        messages = [{"type": "websocket.send", "text": text} for text in texts]
        for n, sub in enumerate(list(self.subscribers), 1):
            send = getattr(sub, "base_send", None)
            try:
                for message in messages:
                    if send is not None:
                        await send(message)
                    else:
                        await sub.send(text_data=message["text"])
            except Exception:  # noqa: BLE001 - one broken socket must not starve the others
                log.debug("stream hub %s: send to a closing socket failed", self.group)
            if n % FAN_OUT_CHUNK == 0:
                await asyncio.sleep(0)

    async def compute(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def initial(self) -> list[str]:  # pragma: no cover - abstract
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

    async def compute(self) -> list[str]:
        if self.sequence is None or self._pending:
            await self._load()  # first use, or a delta is missing: read the book again
        key, text = self._frame()
        if key == self._last_key:
            return []
        self._last_key, self._last_text = key, text
        return [text]

    async def initial(self) -> list[str]:
        async with self._read_lock:
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

    async def compute(self) -> list[str]:
        symbols, self._pending = sorted(self._pending), set()
        if not symbols:
            return []
        rows = await self._read(self.mode, symbols)
        return [frames.to_json(frames.market(row, mode=self.mode)) for row in rows]

    async def initial(self) -> list[str]:
        """The snapshot of every pair, read at most once per interval however many clients connect
        (and again as soon as a pair trades)."""
        now = asyncio.get_running_loop().time()
        async with self._read_lock:
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
        hub.subscribers.add(sub)
    for text in await hub.initial():
        await sub.send(text_data=text)
    return hub


async def unsubscribe(hub: Hub, sub: Subscriber) -> None:
    async with _lock():
        hub.subscribers.discard(sub)
        if hub.subscribers or hub.stopped:
            return
        if _hubs.get(hub.registry_key) is hub:
            del _hubs[hub.registry_key]
        hub.stopped = True
    await hub.stop()


def active_hubs() -> list[Hub]:
    return list(_hubs.values())
