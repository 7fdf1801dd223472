"""Consumers of the exchange streams (seed 004 "WebSocket — Real-Time Streams").

``/ws/exchange/{symbol}/book|trades|price|bbo``, ``/ws/exchange/markets``,
``/ws/exchange/private?token=JWT``; public streams take ``?mode=paper`` for the paper book (default
``live``). docs/exchange-streams.md has the message formats, sequence and gap handling, conflation,
limits and close codes.

Every connection: validates the path and query (close 4400 / 4404), takes one of the client IP's
connection slots for this channel (close 4429), accepts, subscribes, sends its initial state, and
refreshes its slot every third of the slot TTL. Refusals are accept-then-close with an ``error``
frame first, because a browser sees neither the reason nor the code of a refused handshake.

A connection that leaves more than ``EXCHANGE_WS_MAX_BUFFER_BYTES`` unsent in daphne's outgoing
buffer (the client stopped reading) is closed 4008 ``slow_consumer`` before the next event would be
queued for it (:meth:`ExchangeStreamConsumer.dispatch`); the hubs check their own writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from . import conf, frames, hubs, reads
from .publish import book_group, private_group, trades_group
from .slots import ConnectionSlots, client_ip, shared_refresher

log = logging.getLogger(__name__)

#: Bad query parameter (``mode``, ``depth``).
CLOSE_BAD_REQUEST = 4400
#: Private stream: missing, invalid or expired token.
CLOSE_UNAUTHORIZED = 4401
#: Unknown symbol.
CLOSE_NOT_FOUND = 4404
#: The client IP already holds the channel's connections (seed: 5 per IP per channel).
CLOSE_TOO_MANY_CONNECTIONS = 4429
#: The connection's unsent backlog passed ``EXCHANGE_WS_MAX_BUFFER_BYTES`` (reason ``slow_consumer``).
CLOSE_SLOW_CONSUMER = hubs.CLOSE_SLOW_CONSUMER

MODES = ("live", "paper")


class StreamError(Exception):
    def __init__(self, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.code = code
        self.message = message


class ExchangeStreamConsumer(AsyncWebsocketConsumer):
    """The common lifecycle; subclasses set ``kind`` and implement :meth:`subscribe`/:meth:`unsubscribe`."""

    kind = ""
    per_symbol = True
    slot: str | None = None
    slots: ConnectionSlots | None = None
    refresh_task: asyncio.Task | None = None
    subscribed = False
    closing = False
    symbol = ""
    mode = "live"
    #: daphne's connection under this consumer, to measure its backlog; None elsewhere (no bound there).
    direct_socket: hubs.DirectSocket | None = None
    max_buffer_bytes = 0

    # -- connect / disconnect

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Before each event (a channel-layer message, a client frame) is handled, the bound on what
        the connection has not sent: past it, the connection is closed 4008 and the event dropped.

        Checked per event rather than per frame: an event's frames are written in one go before the
        reactor gets to flush any (a large transaction's private events, a snapshot and its queued
        deltas), so a per-frame check would close a client that reads well; the bound is exceeded by
        at most one event's frames. A disconnect always goes through, so the slot is released."""
        sock = self.direct_socket
        if sock is not None and message["type"] != "websocket.disconnect" and sock.over_bound(self.max_buffer_bytes):
            return
        await super().dispatch(message)

    async def connect(self) -> None:
        try:
            self.query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
            await self.parse()
            if self.per_symbol:
                raw = str(self.scope["url_route"]["kwargs"].get("symbol", ""))
                self.symbol = raw.lower()
                if not await reads.market_exists(self.symbol):
                    raise StreamError(CLOSE_NOT_FOUND, "invalid_symbol", f"Unknown symbol {raw!r}")
            self.slots = ConnectionSlots.for_connection(client_ip(self.scope), self.channel_key())
            self.slot = await self.slots.acquire(self.owner)
            if self.slot is None:
                raise StreamError(
                    CLOSE_TOO_MANY_CONNECTIONS,
                    "too_many_connections",
                    f"At most {self.slots.limit} connections per IP on this channel",
                )
        except StreamError as exc:
            await self.refuse(exc)
            return
        self.direct_socket = hubs.DirectSocket.for_send(self.base_send)
        if self.direct_socket is not None:
            self.direct_socket.limit_kernel_queue()
        self.max_buffer_bytes = conf.max_buffer_bytes()
        await self.accept()
        self.subscribed = True
        await self.subscribe()
        self.start_refresh()

    async def disconnect(self, code: int) -> None:
        self.closing = True
        await self.stop_refresh()
        if self.subscribed:
            self.subscribed = False
            await self.unsubscribe()
        if self.slot is not None and self.slots is not None:
            await self.slots.release(self.slot, self.owner)
            self.slot = None

    async def refuse(self, exc: StreamError) -> None:
        await self.accept()
        await self.send(text_data=frames.to_json(frames.error(exc.code, exc.message)))
        await self.close(code=exc.close_code)

    @property
    def owner(self) -> str:
        """What this connection writes into the slot it holds: its channel name, or a random id for a
        connection without a channel (the hub-fed streams)."""
        owner = getattr(self, "channel_name", None) or getattr(self, "_owner", None)
        if owner is None:
            owner = self._owner = f"xws.{uuid.uuid4().hex}"
        return owner

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    async def parse(self) -> None:
        mode = (self.param("mode") or "live").lower()
        if mode not in MODES:
            raise StreamError(CLOSE_BAD_REQUEST, "invalid_mode", "mode must be live or paper")
        self.mode = mode

    def channel_key(self) -> str:
        return f"{self.kind}:{self.symbol or '*'}:{self.mode}"

    async def subscribe(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def unsubscribe(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def start_refresh(self) -> None:
        self.refresh_task = asyncio.create_task(self._refresh_loop())

    async def stop_refresh(self) -> None:
        if self.refresh_task is not None and self.refresh_task is not asyncio.current_task():
            self.refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.refresh_task

    async def _refresh_loop(self) -> None:
        interval = max(1.0, conf.slot_ttl_seconds() / 3)
        try:
            while not self.closing:
                await asyncio.sleep(interval)
                self.slot = await self.slots.refresh(self.slot, self.owner)
                await self.on_refresh()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - cache or layer down: close 1011 so the client reconnects
            log.exception("exchange stream %s: slot refresh failed", self.channel_key())
            await self.slot_refresh_failed()

    async def slot_refresh_failed(self) -> None:
        self.closing = True
        await self.close(code=1011)

    async def on_refresh(self) -> None:
        """Periodic work besides the slot (group re-join, auth re-check)."""

    # -- client -> server: only {"type": "ping"}

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            content = json.loads(text_data) if text_data is not None else None
        except ValueError:
            content = None
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send(text_data=frames.to_json({"type": "pong", "timestamp": frames.iso()}))
            return
        await self.send(
            text_data=frames.to_json(
                frames.error("invalid_message", 'The only message a client may send is {"type": "ping"}')
            )
        )


# --- book -----------------------------------------------------------------------------------------------------


class BookConsumer(ExchangeStreamConsumer):
    """Snapshot on connect, then ``update`` deltas with consecutive ``sequence`` numbers.

    No gap between snapshot and first delta: the connection joins the book group *before* it reads
    the snapshot, and the consumer handles one message at a time, so every delta committed after the
    snapshot's sequence is queued behind the snapshot; deltas at or below it are dropped. A delta that
    arrives ahead of its predecessor (two processes publishing) waits up to ``EXCHANGE_BOOK_GAP_WAIT_MS``
    for it; if it never comes (the layer dropped it), the server sends a fresh ``snapshot``.
    """

    kind = "book"

    async def parse(self) -> None:
        await super().parse()
        raw = self.param("depth")
        try:
            depth = int(raw) if raw is not None else reads.SNAPSHOT_DEPTH_DEFAULT
        except ValueError:
            depth = 0
        if not 1 <= depth <= reads.SNAPSHOT_DEPTH_MAX:
            raise StreamError(CLOSE_BAD_REQUEST, "invalid_parameter", f"depth must be 1..{reads.SNAPSHOT_DEPTH_MAX}")
        self.depth = depth
        self.last_sequence = 0
        self.pending: dict[int, str] = {}
        self.book_lock = asyncio.Lock()
        self.gap_task: asyncio.Task | None = None
        self.snapshots_sent = 0

    async def subscribe(self) -> None:
        await self.channel_layer.group_add(book_group(self.symbol, self.mode), self.channel_name)
        async with self.book_lock:
            await self._send_snapshot()

    async def unsubscribe(self) -> None:
        if self.gap_task is not None:
            self.gap_task.cancel()
        await self.channel_layer.group_discard(book_group(self.symbol, self.mode), self.channel_name)

    async def on_refresh(self) -> None:
        await self.channel_layer.group_add(book_group(self.symbol, self.mode), self.channel_name)

    async def _send_snapshot(self) -> None:
        """Caller holds ``book_lock``."""
        snap = await reads.snapshot(self.symbol, self.mode, self.depth)
        self.last_sequence = int(snap["sequence"])
        frame = frames.book_snapshot(
            symbol=self.symbol, mode=self.mode, sequence=self.last_sequence, bids=snap["bids"], asks=snap["asks"]
        )
        self.snapshots_sent += 1
        await self.send(text_data=frames.to_json(frame))
        for seq in [s for s in self.pending if s <= self.last_sequence]:
            del self.pending[seq]
        await self._drain()

    async def _drain(self) -> None:
        while self.last_sequence + 1 in self.pending:
            self.last_sequence += 1
            await self.send(text_data=self.pending.pop(self.last_sequence))

    async def xbook_deltas(self, message: dict[str, Any]) -> None:
        if self.closing:
            return
        async with self.book_lock:
            for delta in message["deltas"]:
                seq = int(delta["sequence"])
                if seq <= self.last_sequence:
                    continue
                self.pending[seq] = delta["frame"]
            await self._drain()
            if self.pending and (self.gap_task is None or self.gap_task.done()):
                self.gap_task = asyncio.create_task(self._repair_gap())

    async def _repair_gap(self) -> None:
        await asyncio.sleep(conf.book_gap_wait())
        async with self.book_lock:
            if self.closing or not self.pending:
                return
            log.info(
                "book stream %s/%s: delta %s missing, sending a fresh snapshot",
                self.symbol,
                self.mode,
                self.last_sequence + 1,
            )
            await self._send_snapshot()
            if self.pending:
                self.gap_task = asyncio.create_task(self._repair_gap())


# --- trades and price ---------------------------------------------------------------------------------------


class TradesConsumer(ExchangeStreamConsumer):
    """Every trade of the book, as it commits: ``{type: "trade", price, quantity, side, venue, timestamp, ...}``."""

    kind = "trades"

    async def subscribe(self) -> None:
        await self.channel_layer.group_add(trades_group(self.symbol, self.mode), self.channel_name)

    async def unsubscribe(self) -> None:
        await self.channel_layer.group_discard(trades_group(self.symbol, self.mode), self.channel_name)

    async def on_refresh(self) -> None:
        await self.channel_layer.group_add(trades_group(self.symbol, self.mode), self.channel_name)

    async def xtrades_batch(self, message: dict[str, Any]) -> None:
        for text in message["trades"]:
            await self.send(text_data=text)


class PriceConsumer(TradesConsumer):
    """The last trade price: the current one on connect (if the pair ever traded), then one per
    committed batch of trades (a sweep through five levels is one price message, the last)."""

    kind = "price"

    async def subscribe(self) -> None:
        await super().subscribe()
        price = await reads.last_price(self.symbol, self.mode)
        if price is not None:
            await self.send(
                text_data=frames.to_json(frames.price(symbol=self.symbol, mode=self.mode, price=price, timestamp=None))
            )

    async def xtrades_batch(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["price"])


# --- conflated streams (hubs) --------------------------------------------------------------------------------


#: Names no entry of ``CHANNEL_LAYERS``: Channels then gives a consumer no channel of its own.
NO_CHANNEL_LAYER = "exchange-streams.hub-fed"


class HubConsumer(ExchangeStreamConsumer):
    """A stream fed by the process's hub (:mod:`exchanges.streams.hubs`), not by the channel layer.

    The connection has no channel: the hub listens once per process and writes to the connection
    itself. (With a channel each of 1,000 connections would wait in the layer's receive machinery,
    which with channels_redis hands every incoming message through a lock they all contend for, and
    an error of that shared receive surfaces in whichever connection holds the lock.)"""

    channel_layer_alias = NO_CHANNEL_LAYER
    hub: hubs.Hub | None = None

    def start_refresh(self) -> None:
        """The process refreshes its hub-fed connections' slots all together (:class:`.slots.SharedRefresher`)."""
        shared_refresher().add(self)

    async def stop_refresh(self) -> None:
        shared_refresher().discard(self)

    def make_hub(self, key: tuple) -> hubs.Hub:  # pragma: no cover - abstract
        raise NotImplementedError

    def hub_key(self) -> tuple:  # pragma: no cover - abstract
        raise NotImplementedError

    async def subscribe(self) -> None:
        self.hub = await hubs.subscribe(self.kind, self.hub_key(), self.make_hub, self)

    async def unsubscribe(self) -> None:
        if self.hub is not None:
            await hubs.unsubscribe(self.hub, self)


class BboConsumer(HubConsumer):
    """Best bid and offer, conflated per process: at most one message per 50 ms, never more than 50 ms
    behind the book (plus delivery). See :mod:`exchanges.streams.hubs`."""

    kind = "bbo"

    def hub_key(self) -> tuple:
        return (self.symbol, self.mode)

    def make_hub(self, key: tuple) -> hubs.Hub:
        return hubs.BboHub(key, self.symbol, self.mode, reads.snapshot)


class MarketsConsumer(HubConsumer):
    """All pairs: a ``snapshot`` of every market on connect, then a ``market`` message for each pair
    that traded, at most one per pair per second."""

    kind = "markets"
    per_symbol = False

    def hub_key(self) -> tuple:
        return (self.mode,)

    def make_hub(self, key: tuple) -> hubs.Hub:
        return hubs.MarketsHub(key, self.mode, reads.market_rows)


# --- private -------------------------------------------------------------------------------------------------


def _authenticate(token: str):
    from exchanges.api.authentication import authenticate_jwt

    return authenticate_jwt(token)


authenticate = database_sync_to_async(_authenticate)


class PrivateConsumer(ExchangeStreamConsumer):
    """``order_update``, ``fill`` and ``balance_update`` of the token's trader only, both modes unless
    ``?mode=`` narrows it. The token is ``?token=`` (the seed) or an ``Authorization: Bearer`` header;
    it is re-validated every ``EXCHANGE_WS_AUTH_RECHECK_SECONDS`` and on expiry the stream closes 4401."""

    kind = "private"
    per_symbol = False
    trader_id: Any = None

    async def parse(self) -> None:
        raw_mode = self.param("mode")
        if raw_mode is not None and raw_mode.lower() not in MODES:
            raise StreamError(CLOSE_BAD_REQUEST, "invalid_mode", "mode must be live or paper")
        self.mode_filter = raw_mode.lower() if raw_mode else None
        self.mode = self.mode_filter or "*"
        self.token = self.param("token") or self._bearer()
        if not self.token:
            raise StreamError(CLOSE_UNAUTHORIZED, "unauthorized", "Pass your JWT as ?token=")
        trader = await authenticate(self.token)
        if trader is None:
            raise StreamError(CLOSE_UNAUTHORIZED, "unauthorized", "Invalid or expired token")
        self.trader_id = trader.pk
        self.auth_checked_at = asyncio.get_running_loop().time()

    def _bearer(self) -> str | None:
        for name, value in self.scope.get("headers", []):
            if name.lower() == b"authorization":
                scheme, _, token = value.decode("latin1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return token.strip()
        return None

    def channel_key(self) -> str:
        return "private:*:*"

    async def subscribe(self) -> None:
        await self.channel_layer.group_add(private_group(self.trader_id), self.channel_name)

    async def unsubscribe(self) -> None:
        await self.channel_layer.group_discard(private_group(self.trader_id), self.channel_name)

    async def on_refresh(self) -> None:
        await self.channel_layer.group_add(private_group(self.trader_id), self.channel_name)
        await self._check_auth()

    async def _check_auth(self) -> bool:
        now = asyncio.get_running_loop().time()
        if now - self.auth_checked_at < conf.auth_recheck_seconds():
            return True
        self.auth_checked_at = now
        trader = await authenticate(self.token)
        if trader is not None and trader.pk == self.trader_id:
            return True
        self.closing = True
        await self.send(text_data=frames.to_json(frames.error("unauthorized", "Token expired or revoked")))
        await self.close(code=CLOSE_UNAUTHORIZED)
        return False

    async def xprivate_events(self, message: dict[str, Any]) -> None:
        if self.closing or not await self._check_auth():
            return
        for event in message["events"]:
            if self.mode_filter is None or event["mode"] == self.mode_filter:
                await self.send(text_data=event["frame"])
