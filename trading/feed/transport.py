"""A small WebSocket (RFC 6455) client and server on asyncio streams.

Why not a library: ``websockets`` is not a dependency, and autobahn (installed with daphne) cannot
be used inside a Django process here: daphne makes txaio select Twisted at ``django.setup()``, and
autobahn's asyncio flavour then refuses to import. The feed needs very little of the protocol,
so this module implements just that, with no extensions:

* the opening handshake (client and server, ``Sec-WebSocket-Accept`` checked), ``ws://`` and
  ``wss://`` (TLS through asyncio);
* text and binary messages, fragmented or not, masked from client to server as the RFC requires,
  with a size limit; ping answered by pong; keep-alive pings from the client that abort a
  connection which stays silent too long;
* the closing handshake, and :meth:`Connection.abort` for dropping TCP the way a network fault
  does (the tests use it).

Protocol violations from the peer close the connection with the RFC's code (1002, 1007, 1009).
Swapping in ``websockets`` later means re-implementing :func:`connect`, :func:`serve` and
:class:`Connection` here and nothing else: the client and the server only use this interface.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

_CLOSED = object()


class ConnectionClosed(ConnectionError):
    """The WebSocket is closed (cleanly or not)."""


class HandshakeError(ConnectionError):
    """The peer did not complete a valid WebSocket opening handshake."""


class _ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()  # noqa: S324 (RFC 6455)


def _mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``key`` (in C speed via big integers)."""
    n = len(data)
    if not n:
        return data
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes, *, mask: bool, fin: bool = True) -> bytes:
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        return bytes(head) + key + _mask(payload, key)
    return bytes(head) + payload


class Connection:
    """One open WebSocket. ``recv`` returns ``str`` for text messages and ``bytes`` for binary."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        is_client: bool,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._is_client = is_client
        self._max = max_message_bytes
        self._inbox: asyncio.Queue = asyncio.Queue()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._close_sent = False
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        loop = asyncio.get_running_loop()
        self._last_heard = loop.time()
        self._tasks = [loop.create_task(self._read_loop())]
        if ping_interval:
            self._tasks.append(loop.create_task(self._keepalive(ping_interval, ping_timeout or ping_interval)))

    # --- API ------------------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return not self.closed.is_set() and not self._close_sent

    async def recv(self) -> str | bytes:
        item = await self._inbox.get()
        if item is _CLOSED:
            self._inbox.put_nowait(_CLOSED)  # every later recv fails the same way
            raise ConnectionClosed(f"closed ({self.close_code}: {self.close_reason})")
        return item

    async def send(self, data: str | bytes) -> None:
        if not self.is_open:
            raise ConnectionClosed(f"send on a closed connection ({self.close_code})")
        if isinstance(data, str):
            self._write(OP_TEXT, data.encode("utf-8"))
        else:
            self._write(OP_BINARY, bytes(data))
        try:
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            self._finish(CLOSE_ABNORMAL, str(exc))
            raise ConnectionClosed(str(exc)) from exc

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "", timeout: float = 2.0) -> None:
        """Closing handshake, bounded by ``timeout`` (then the TCP link is aborted)."""
        if self.closed.is_set():
            return
        self._send_close(code, reason)
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (what a network failure looks like)."""
        self._writer.transport.abort()
        self._finish(CLOSE_ABNORMAL, "aborted")

    # --- internals ------------------------------------------------------------------------------------
    def _write(self, opcode: int, payload: bytes) -> None:
        if self._writer.is_closing():
            return
        self._writer.write(encode_frame(opcode, payload, mask=self._is_client))

    def _send_close(self, code: int, reason: str) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        payload = b"" if code == CLOSE_NO_STATUS else struct.pack("!H", code) + reason.encode("utf-8")[:120]
        self._write(OP_CLOSE, payload)

    def _finish(self, code: int, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_code, self.close_reason = code, reason
        self.closed.set()
        self._inbox.put_nowait(_CLOSED)
        if not self._writer.is_closing():
            self._writer.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    async def _read_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = await self._reader.readexactly(2)
        fin, rsv, opcode = bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F
        masked, n = bool(b1 & 0x80), b1 & 0x7F
        if rsv:
            raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
        if masked == self._is_client:  # servers mask nothing, clients mask everything
            raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "wrong masking")
        if opcode >= 0x8 and (not fin or n > 125):
            raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "bad control frame")
        if n == 126:
            (n,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self._reader.readexactly(8))
        if n > self._max:
            raise _ProtocolError(CLOSE_TOO_BIG, "message too big")
        key = await self._reader.readexactly(4) if masked else b""
        payload = await self._reader.readexactly(n) if n else b""
        if masked:
            payload = _mask(payload, key)
        return fin, opcode, payload

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        parts: list[bytes] = []
        size = 0
        message_op: int | None = None
        try:
            while True:
                fin, opcode, payload = await self._read_frame()
                self._last_heard = loop.time()
                if opcode == OP_PING:
                    self._write(OP_PONG, payload)
                    continue
                if opcode == OP_PONG:
                    continue
                if opcode == OP_CLOSE:
                    code, reason = CLOSE_NO_STATUS, ""
                    if len(payload) >= 2:
                        (code,) = struct.unpack("!H", payload[:2])
                        reason = payload[2:].decode("utf-8", errors="replace")
                    self._send_close(code if code != CLOSE_NO_STATUS else CLOSE_NORMAL, "")
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await self._writer.drain()
                    self._finish(code, reason)
                    return
                if opcode == OP_CONT:
                    if message_op is None:
                        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation without a message")
                elif opcode in (OP_TEXT, OP_BINARY):
                    if message_op is not None:
                        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
                    message_op = opcode
                else:
                    raise _ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
                size += len(payload)
                if size > self._max:
                    raise _ProtocolError(CLOSE_TOO_BIG, "message too big")
                parts.append(payload)
                if not fin:
                    continue
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                op, parts, size, message_op = message_op, [], 0, None
                if op == OP_TEXT:
                    try:
                        self._inbox.put_nowait(data.decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        raise _ProtocolError(CLOSE_INVALID_DATA, "text message is not UTF-8") from exc
                else:
                    self._inbox.put_nowait(data)
        except _ProtocolError as exc:
            log.warning("websocket %s: protocol error from peer: %s", self.peer, exc)
            self._send_close(exc.code, str(exc))
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._writer.drain()
            self._finish(exc.code, str(exc))
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            self._finish(CLOSE_ABNORMAL, f"connection lost: {type(exc).__name__}")

    async def _keepalive(self, interval: float, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed.is_set():
            await asyncio.sleep(interval)
            if loop.time() - self._last_heard > interval + timeout:
                log.warning("websocket %s: no data for %.0fs, dropping the connection", self.peer, interval + timeout)
                self.abort()
                return
            self._write(OP_PING, b"ka")


async def _read_head(reader: asyncio.StreamReader) -> list[str]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise HandshakeError("handshake headers too long") from exc
    except asyncio.IncompleteReadError as exc:
        raise HandshakeError("connection closed during the handshake") from exc
    return raw.decode("latin-1").split("\r\n")[:-2]


def _valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (ValueError, UnicodeEncodeError):
        return False


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


async def connect(
    url: str,
    *,
    open_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    ssl_context: ssl.SSLContext | None = None,
) -> Connection:
    """Open a WebSocket to a ``ws://`` or ``wss://`` URL. Raises ``OSError`` (refused, DNS, TLS),
    ``TimeoutError`` or :class:`HandshakeError`."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a WebSocket URL: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    ctx = (ssl_context or ssl.create_default_context()) if secure else None
    async with asyncio.timeout(open_timeout):
        reader, writer = await asyncio.open_connection(
            parts.hostname, port, ssl=ctx, limit=MAX_HEADER_BYTES, server_hostname=parts.hostname if ctx else None
        )
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            default_port = port == (443 if secure else 80)
            host = parts.hostname if default_port else f"{parts.hostname}:{port}"
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            writer.write(
                (
                    f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: mmsite-feed\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            lines = await _read_head(reader)
            status = lines[0].split(" ", 2) if lines else []
            headers = _headers(lines[1:])
            if len(status) < 2 or status[1] != "101":
                raise HandshakeError(f"server refused the upgrade: {lines[0] if lines else 'no response'}")
            if headers.get("upgrade", "").lower() != "websocket" or headers.get("sec-websocket-accept") != accept_key(
                key
            ):
                raise HandshakeError("bad upgrade response")
        except BaseException:
            writer.transport.abort()
            raise
    return Connection(reader, writer, is_client=True, ping_interval=ping_interval, ping_timeout=ping_timeout)


@dataclass
class Server:
    """A listening WebSocket server; ``port`` is the bound port (useful with port 0)."""

    host: str
    port: int
    _server: asyncio.base_events.Server
    _connections: set[Connection] = field(default_factory=set)
    _tasks: set[asyncio.Task] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def close(self) -> None:
        self._server.close()
        for conn in list(self._connections):
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


async def serve(
    handler: Callable[[Connection], Awaitable[None]],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    handshake_timeout: float = 10.0,
    ping_interval: float | None = None,
) -> Server:
    """Listen on ``host:port``; run ``handler(conn)`` for each WebSocket connection."""
    server: Server

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        server._tasks.add(task)
        try:
            try:
                async with asyncio.timeout(handshake_timeout):
                    lines = await _read_head(reader)
            except (HandshakeError, TimeoutError):
                writer.transport.abort()
                return
            request = lines[0].split(" ") if lines else []
            headers = _headers(lines[1:])
            key = headers.get("sec-websocket-key", "")
            if (
                len(request) != 3
                or request[0] != "GET"
                or headers.get("upgrade", "").lower() != "websocket"
                or "upgrade" not in headers.get("connection", "").lower()
                or headers.get("sec-websocket-version") != "13"
                or not _valid_key(key)
            ):
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                writer.close()
                return
            writer.write(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
                ).encode()
            )
            conn = Connection(reader, writer, is_client=False, ping_interval=ping_interval)
            server._connections.add(conn)
            try:
                await handler(conn)
            finally:
                server._connections.discard(conn)
                if not conn.closed.is_set():
                    await conn.close()
        finally:
            server._tasks.discard(task)

    listener = await asyncio.start_server(on_client, host, port, limit=MAX_HEADER_BYTES)
    server = Server(host=host, port=listener.sockets[0].getsockname()[1], _server=listener)
    return server
