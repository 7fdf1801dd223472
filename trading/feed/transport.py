"""A small awaitable WebSocket connection over autobahn's asyncio protocol.

autobahn is installed with daphne (no new dependency). It is callback-based; this module turns
it into ``await conn.recv()`` / ``await conn.send(...)`` for the feed client and the local
server, so neither of them knows which library carries the frames. Swapping in the
``websockets`` package would mean re-implementing :func:`connect`, :func:`serve` and
:class:`Connection` here and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import txaio

txaio.use_asyncio()

from autobahn.asyncio.websocket import (  # noqa: E402  (txaio must pick asyncio first)
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_CLOSED = object()


class ConnectionClosed(ConnectionError):
    """The WebSocket is closed (cleanly or not)."""


class Connection:
    """One open WebSocket. ``recv`` returns ``str`` for text messages and ``bytes`` for binary."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._proto: WebSocketClientProtocol | WebSocketServerProtocol | None = None
        self._opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.peer: str | None = None

    # callbacks from the protocol ------------------------------------------------------------------
    def _on_open(self, proto) -> None:
        self._proto = proto
        self.peer = getattr(proto, "peer", None)
        if not self._opened.done():
            self._opened.set_result(None)

    def _on_message(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self._inbox.put_nowait(payload)
        else:
            self._inbox.put_nowait(payload.decode("utf-8", errors="replace"))

    def _on_close(self, code: int | None, reason: str | None) -> None:
        self.close_code, self.close_reason = code, reason
        if not self._opened.done():
            self._opened.set_exception(ConnectionClosed(f"handshake failed ({code}: {reason})"))
        self.closed.set()
        self._inbox.put_nowait(_CLOSED)

    # API --------------------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._proto is not None and not self.closed.is_set()

    async def wait_open(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.shield(self._opened), timeout)

    async def recv(self) -> str | bytes:
        item = await self._inbox.get()
        if item is _CLOSED:
            self._inbox.put_nowait(_CLOSED)  # every later recv fails the same way
            raise ConnectionClosed(f"closed ({self.close_code}: {self.close_reason})")
        return item

    async def send(self, data: str | bytes) -> None:
        if not self.is_open:
            raise ConnectionClosed("send on a closed connection")
        if isinstance(data, str):
            self._proto.sendMessage(data.encode("utf-8"), isBinary=False)
        else:
            self._proto.sendMessage(bytes(data), isBinary=True)
        await asyncio.sleep(0)  # let the loop flush; keeps a fast producer from starving readers

    async def close(self, code: int = 1000, reason: str = "", timeout: float = 2.0) -> None:
        """Close handshake, then wait (bounded) for the peer; aborts the TCP link on timeout."""
        if self._proto is None or self.closed.is_set():
            return
        self._proto.sendClose(code=code, reason=reason or None)
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake (what a network failure looks like)."""
        proto = self._proto
        if proto is not None and proto.transport is not None:
            proto.transport.abort()


class _ClientProtocol(WebSocketClientProtocol):
    def onOpen(self) -> None:  # noqa: N802 (autobahn's names)
        self.factory.connection._on_open(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        self.factory.connection._on_message(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        self.factory.connection._on_close(code, reason)


class _ServerProtocol(WebSocketServerProtocol):
    connection: Connection

    def onConnect(self, request) -> None:  # noqa: N802
        self.connection = Connection()

    def onOpen(self) -> None:  # noqa: N802
        self.connection._on_open(self)
        task = asyncio.get_running_loop().create_task(self.factory.handler(self.connection))
        self.factory.tasks.add(task)
        task.add_done_callback(self.factory.tasks.discard)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        self.connection._on_message(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        conn = getattr(self, "connection", None)
        if conn is not None:
            conn._on_close(code, reason)


def _options(factory, ping_interval: float | None) -> None:
    opts = {"maxMessagePayloadSize": MAX_MESSAGE_BYTES, "maxFramePayloadSize": MAX_MESSAGE_BYTES}
    if ping_interval:
        opts.update(autoPingInterval=ping_interval, autoPingTimeout=ping_interval)
    factory.setProtocolOptions(**opts)


async def connect(url: str, *, open_timeout: float = 10.0, ping_interval: float | None = 20.0) -> Connection:
    """Open a WebSocket to ``ws://`` or ``wss://`` ``url``. Raises ``OSError`` (refused, DNS,
    TLS), ``TimeoutError`` or :class:`ConnectionClosed` (handshake refused)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a WebSocket URL: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    loop = asyncio.get_running_loop()
    conn = Connection()
    factory = WebSocketClientFactory(url)
    factory.protocol = _ClientProtocol
    factory.connection = conn
    _options(factory, ping_interval)
    ctx = ssl.create_default_context() if secure else None
    transport, _ = await asyncio.wait_for(
        loop.create_connection(factory, parts.hostname, port, ssl=ctx, server_hostname=parts.hostname if ctx else None),
        open_timeout,
    )
    try:
        await conn.wait_open(open_timeout)
    except BaseException:
        transport.abort()
        raise
    return conn


@dataclass
class Server:
    """A listening WebSocket server; ``port`` is the bound port (useful with port 0)."""

    host: str
    port: int
    _server: asyncio.base_events.Server
    _factory: WebSocketServerFactory

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def close(self) -> None:
        self._server.close()
        for task in list(self._factory.tasks):
            task.cancel()
        if self._factory.tasks:
            await asyncio.gather(*self._factory.tasks, return_exceptions=True)
        await self._server.wait_closed()


async def serve(
    handler: Callable[[Connection], Awaitable[None]],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ping_interval: float | None = None,
) -> Server:
    """Listen on ``host:port`` and run ``handler(conn)`` as a task for each connection."""
    loop = asyncio.get_running_loop()
    factory = WebSocketServerFactory()  # no URL: it would only feed the Host check we skip
    factory.protocol = _ServerProtocol
    factory.handler = handler
    factory.tasks = set()
    _options(factory, ping_interval)
    server = await loop.create_server(factory, host, port)
    bound = server.sockets[0].getsockname()[1]
    return Server(host=host, port=bound, _server=server, _factory=factory)
