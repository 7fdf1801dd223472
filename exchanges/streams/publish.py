"""The one door from the matching service to the exchange streams.

The matching service calls :func:`publish` after its transaction commits (``transaction.on_commit``)
with the events of that transaction, in order. Event shapes (all amounts ``Decimal``, times aware
``datetime``):

- ``{"type": "book", "symbol", "mode", "sequence", "bids": [(price, qty), ...], "asks": [...]}``:
  the levels that changed, with their new total quantity (``0`` = level gone); ``sequence`` grows by
  one per book change of that (symbol, mode), with no gaps
- ``{"type": "trade", "symbol", "mode", "trade_id", "price", "quantity", "taker_side", "timestamp"}``
- ``{"type": "order", "trader_id", "mode", "order": {...}}``: the order as the REST API renders it
- ``{"type": "fill", "trader_id", "mode", "fill": {...}}``: one side of a trade, as ``trades/mine``
- ``{"type": "balance", "trader_id", "mode", "asset", "available", "locked"}``

Routing them to WebSocket groups, conflation (``bbo``) and rendering to the seed's wire format are
this package's job; the matching service knows nothing of Channels.

How (docs/exchange-streams.md):

- every event is rendered to its JSON frame **once**, here; consumers forward text;
- one channel-layer message per group per call (a transaction's deltas, trades, or one trader's
  private events travel together, in order), and none to a group nobody listens to: the caller asks
  :func:`audience` first (one Redis round trip), and skips rendering what no one would read;
- with the Redis layer the sends run on one background thread with its own event loop and a FIFO
  queue, so the matching request never waits for Redis and the order of calls is kept; with the
  in-memory layer (embedded default, tests) they run inline. Delivery is best effort: a lost book
  delta shows as a sequence gap, which the book consumer repairs with a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer

from . import frames

log = logging.getLogger(__name__)

# --- group names (one place; consumers and hubs use these) ---------------------------------------------------


def book_group(symbol: str, mode: str) -> str:
    return f"xbook.{symbol}.{mode}"


def trades_group(symbol: str, mode: str) -> str:
    return f"xtrades.{symbol}.{mode}"


def markets_group(mode: str) -> str:
    return f"xmarkets.{mode}"


def private_group(trader_id: Any) -> str:
    return f"xprivate.{trader_id}"


# --- routing ------------------------------------------------------------------------------------------------


def route(events: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Turn one transaction's events into ``(group, message)`` pairs, frames rendered, order kept."""
    deltas: dict[str, list[dict[str, Any]]] = defaultdict(list)
    trades: dict[str, list[str]] = defaultdict(list)
    last_price: dict[str, str] = {}
    markets: dict[str, set[str]] = defaultdict(set)
    private: dict[str, list[dict[str, str]]] = defaultdict(list)
    order: list[str] = []  # groups in first-seen order, so messages leave in the order events came

    def touch(group: str) -> None:
        if group not in order:
            order.append(group)

    now = frames.iso()
    for event in events:
        kind = event.get("type")
        mode = event.get("mode", "live")
        if kind == "book":
            group = book_group(event["symbol"], mode)
            frame = frames.book_update(
                symbol=event["symbol"],
                mode=mode,
                sequence=event["sequence"],
                bids=event.get("bids", ()),
                asks=event.get("asks", ()),
                timestamp=now,
            )
            deltas[group].append({"sequence": int(event["sequence"]), "frame": frames.to_json(frame)})
            touch(group)
        elif kind == "trade":
            group = trades_group(event["symbol"], mode)
            ts = event.get("timestamp")
            trades[group].append(
                frames.to_json(
                    frames.trade(
                        symbol=event["symbol"],
                        mode=mode,
                        trade_id=event["trade_id"],
                        price=event["price"],
                        quantity=event["quantity"],
                        side=event["taker_side"],
                        timestamp=ts or now,
                    )
                )
            )
            last_price[group] = frames.to_json(
                frames.price(symbol=event["symbol"], mode=mode, price=event["price"], timestamp=ts or now)
            )
            touch(group)
            markets[markets_group(mode)].add(event["symbol"])
            touch(markets_group(mode))
        elif kind in ("order", "fill", "balance"):
            group = private_group(event["trader_id"])
            if kind == "order":
                frame = frames.order_update(event["order"], mode=mode)
            elif kind == "fill":
                frame = frames.fill(event["fill"], mode=mode)
            else:
                frame = frames.balance_update(
                    mode=mode, asset=event["asset"], available=event["available"], locked=event["locked"]
                )
            private[group].append({"mode": mode, "frame": frames.to_json(frame)})
            touch(group)
        else:
            log.warning("publish: unknown event type %r ignored", kind)

    out: list[tuple[str, dict[str, Any]]] = []
    for group in order:
        if group in deltas:
            out.append((group, {"type": "xbook.deltas", "deltas": deltas[group]}))
        elif group in trades:
            out.append((group, {"type": "xtrades.batch", "trades": trades[group], "price": last_price[group]}))
        elif group in markets:
            out.append((group, {"type": "xmarkets.dirty", "symbols": sorted(markets[group])}))
        elif group in private:
            out.append((group, {"type": "xprivate.events", "events": private[group]}))
    return out


# --- who listens ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audience:
    """The stream groups of one book's transaction that have a member now (``None``: could not be told, so
    every group counts as listened). The matching service asks before it renders its private events: most
    traders have no private stream open, and their order, fill and balance events (and the balance read)
    would go to groups nobody reads."""

    groups: frozenset[str] | None

    def has(self, group: str) -> bool:
        return self.groups is None or group in self.groups

    def trader(self, trader_id: Any) -> bool:
        return self.has(private_group(trader_id))


def audience(*, symbol: str, mode: str, trader_ids: Iterable[Any]) -> Audience:
    """Who listens to the groups a transaction on the ``(symbol, mode)`` book can reach: one Redis round
    trip for all of them. A consumer that joins just after this misses the message as if it had joined
    just after the send (it starts from its snapshot either way)."""
    groups = [book_group(symbol, mode), trades_group(symbol, mode), markets_group(mode)]
    groups += [private_group(t) for t in trader_ids]
    found = listened(groups)
    return Audience(None if found is None else frozenset(found))


def listened(groups: Sequence[str]) -> set[str] | None:
    """The ``groups`` with at least one member that has not expired, or ``None`` if the layer cannot tell
    (no layer, another layer type, Redis unreachable): the caller then sends to all of them."""
    layer = get_channel_layer()
    if layer is None or not groups:
        return None
    if isinstance(layer, InMemoryChannelLayer):
        return {g for g in groups if layer.groups.get(g)}
    if not isinstance(layer, RedisChannelLayer):
        return None
    try:
        by_host: dict[int, list[str]] = defaultdict(list)
        for g in groups:
            by_host[layer.consistent_hash(g)].append(g)
        since = int(time.time()) - layer.group_expiry
        out: set[str] = set()
        for index, names in by_host.items():
            client = _sync_client(layer, index)
            if client is None:
                return None
            pipe = client.pipeline(transaction=False)
            for g in names:
                # channels_redis keeps a group as a sorted set of channels scored by the time they joined
                pipe.zcount(layer._group_key(g), since, "+inf")
            out.update(g for g, n in zip(names, pipe.execute(), strict=True) if n)
        return out
    except Exception:  # noqa: BLE001 - unknown audience: send to everyone, as before this check
        log.warning("publish: could not tell who listens; sending to every group", exc_info=True)
        return None


_SYNC_CLIENTS: dict[tuple[int, int], Any] = {}


def _sync_client(layer: RedisChannelLayer, index: int):
    """A blocking Redis client (with its own pool) on the layer's host ``index`` for this process; ``None``
    for a host given in a form this does not handle (Sentinel)."""
    key = (os.getpid(), index)
    client = _SYNC_CLIENTS.get(key)
    if client is None:
        host = dict(layer.hosts[index])
        if "master_name" in host:
            return None
        address = host.pop("address", None)
        client = redis.Redis.from_url(address, **host) if address else redis.Redis(**host)
        _SYNC_CLIENTS[key] = client
    return client


def publish(events: Sequence[dict[str, Any]], audience: Audience | None = None) -> None:
    """Route ``events`` (one committed transaction's, in order) to the stream groups (those the
    ``audience`` has, when given). Never raises: a stream failure must not look like a failed order to the
    caller whose transaction committed."""
    if not events:
        return
    try:
        messages = route(events)
    except (KeyError, TypeError, ValueError, ArithmeticError):
        log.exception("publish: could not render %d events", len(events))
        return
    if audience is not None:
        messages = [(group, message) for group, message in messages if audience.has(group)]
    if not messages:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        _send_inline(layer, messages)
    else:
        _sender.submit(messages)


def _send_inline(layer, messages) -> None:
    try:
        async_to_sync(_send_all)(layer, messages)
    except Exception:  # noqa: BLE001 - a layer failure is logged; the committed trade stands
        log.exception("publish: channel layer send failed")


async def _send_all(layer, messages) -> None:
    for group, message in messages:
        await layer.group_send(group, message)


class _Sender:
    """One daemon thread per process with its own event loop, draining a FIFO of message batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._submitted = 0
        self._sent = 0

    def submit(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        self._ensure_started()
        assert self._loop is not None and self._queue is not None
        with self._lock:
            self._submitted += 1
        self._loop.call_soon_threadsafe(self._queue.put_nowait, messages)

    def _ensure_started(self) -> None:
        pid = os.getpid()
        if self._pid == pid and self._loop is not None:
            return
        with self._lock:
            if self._pid == pid and self._loop is not None:
                return
            ready = threading.Event()

            def run() -> None:
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
                self._loop = loop
                self._queue = asyncio.Queue()
                ready.set()
                loop.run_until_complete(self._drain())

            # A forked child (Celery prefork) inherits no threads: start its own.
            threading.Thread(target=run, name="exchange-stream-publisher", daemon=True).start()
            ready.wait(5)
            self._pid = pid

    async def _drain(self) -> None:
        layer = get_channel_layer()
        assert self._queue is not None
        while True:
            messages = await self._queue.get()
            for group, message in messages:
                try:
                    await layer.group_send(group, message)
                except Exception:  # noqa: BLE001 - best effort; gaps are repaired by the consumers
                    log.exception("publish: group_send to %s failed", group)
            self._sent += 1

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything submitted so far has been sent (tests and benchmarks)."""
        target = self._submitted
        deadline = time.monotonic() + timeout
        while self._sent < target and time.monotonic() < deadline:
            time.sleep(0.002)


_sender = _Sender()


def flush(timeout: float = 5.0) -> None:
    _sender.flush(timeout)
