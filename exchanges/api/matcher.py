"""The order gateway's batches in a process of their own: the matcher (``manage.py run_order_matcher``).

With ``EXCHANGE_MATCHER_SOCKET`` set, each web process's order gateway (``gateway.py``) still reads,
authenticates and parses place and cancel requests in its event loop, then hands them over one Unix
socket to the matcher process, which runs the gateway's threads (rate limits, validation, one
transaction per book per batch, the answers, stream publishing) and sends each answer back. The web
processes then spend their CPU on HTTP only, the matcher's on the books, so the two use both cores, and
every request of every web process on a book lands in the same batches (no lock hand-offs between
processes, no stale book copies to rebuild).

Wire: frames of a 4-byte big-endian length and a JSON object. Request ``{"i": id, "k": "place" |
"cancel" | "batch_place" | "batch_cancel", "t": trader id, "s": symbol, "b": body text, "o": order id,
"m": mode}``; answer ``{"i": id,
"st": status, "b": body text, "h": [[name, value], ...]}``, or ``{"i": id, "fall": true}`` for a request
the web process must give to Django (a body that is not a JSON object as the views parse it, a trader the
matcher does not know).

Failure: a web process that cannot reach the matcher serves the request with its own gateway threads
(the book lock keeps one writer per book either way). A connection lost **after** a request was sent
answers ``503 busy`` (the matcher may have committed it: the client looks at its open orders, as after a
timeout); it is never sent twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import time
from decimal import Decimal
from typing import Any

import orjson

from exchanges.errors import Codes, ExchangeError

log = logging.getLogger(__name__)

FRAME = struct.Struct("!I")
#: the requests the matcher serves (anything else goes back to the web process's Django)
KINDS = ("place", "cancel", "batch_place", "batch_cancel")
MAX_FRAME = 1 << 20


def _frame(message: dict) -> bytes:
    data = orjson.dumps(message)
    return FRAME.pack(len(data)) + data


async def _read_frame(reader: asyncio.StreamReader) -> dict:
    (n,) = FRAME.unpack(await reader.readexactly(FRAME.size))
    if n > MAX_FRAME:
        raise ConnectionError(f"frame of {n} bytes")
    return orjson.loads(await reader.readexactly(n))


# --- the web side ----------------------------------------------------------------------------------------


class MatcherUnavailable(Exception):
    """The matcher could not be reached before the request was sent: serve it here."""


class MatcherClient:
    """One connection per web process (per event loop) to the matcher; requests multiplexed by id."""

    RETRY_AFTER = 1.0  # seconds between connection attempts while the matcher is down

    def __init__(self, path: str):
        self.path = path
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self.next_id = 0
        self.down_until = 0.0
        self._connecting: asyncio.Lock | None = None
        self.sent = 0

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self.writer is not None:
                return
            if time.monotonic() < self.down_until:
                raise MatcherUnavailable(self.path)
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError as exc:
                self.down_until = time.monotonic() + self.RETRY_AFTER
                log.warning("order matcher at %s unreachable (%s): serving orders in this process", self.path, exc)
                raise MatcherUnavailable(self.path) from exc
            self.writer = writer
            asyncio.get_running_loop().create_task(self._read(reader, writer))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                message = await _read_frame(reader)
                fut = self.pending.pop(message.get("i"), None)
                if fut is not None and not fut.done():
                    fut.set_result(message)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError) as exc:
            log.warning("order matcher connection lost: %r", exc)
        finally:
            if self.writer is writer:
                self.writer = None
            writer.close()
            lost, self.pending = self.pending, {}
            for fut in lost.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("order matcher connection lost"))

    async def request(self, message: dict) -> dict:
        """The matcher's answer; :class:`MatcherUnavailable` if it could not be sent (nothing happened);
        ``ConnectionError`` if it was sent and the connection was lost before the answer."""
        if self.writer is None:
            await self._connect()
        writer = self.writer
        if writer is None:
            raise MatcherUnavailable(self.path)
        self.next_id += 1
        message["i"] = i = self.next_id
        fut = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        try:
            writer.write(_frame(message))
        except (ConnectionError, RuntimeError) as exc:
            self.pending.pop(i, None)
            raise MatcherUnavailable(self.path) from exc
        self.sent += 1
        return await fut


_CLIENTS: dict[Any, MatcherClient] = {}


def client(path: str) -> MatcherClient:
    """This event loop's client (a web process has one loop; tests may have several)."""
    loop = asyncio.get_running_loop()
    c = _CLIENTS.get(loop)
    if c is None or c.path != path:
        c = _CLIENTS[loop] = MatcherClient(path)
    return c


def lost_answer() -> tuple[int, bytes, list]:
    from .gateway import _error_answer

    return _error_answer(
        ExchangeError(
            Codes.BUSY,
            "the order service went away while handling this request: check your open orders before retrying",
            status=503,
        )
    )


# --- the matcher side ------------------------------------------------------------------------------------


def _trader_db(pk: int):
    """Runs on a short-lived executor thread: its connection is closed here, not left to that thread."""
    from django.db import connection

    from .authentication import trader_by_id

    try:
        return trader_by_id(pk)
    finally:
        connection.close()


async def _trader(pk: Any):
    """The trader a web process authenticated, through the same per-process cache as the API's own
    (``authentication.cached_trader_by_id``), so a revocation clears it here too."""
    from .authentication import cached_trader_by_id

    if not isinstance(pk, int):
        return None
    return cached_trader_by_id(pk) or await asyncio.to_thread(_trader_db, pk)


def _parse_json(text: Any) -> Any:
    """The body as the views parse it (decimals exact, no NaN), or None."""
    from .parsers import _refuse_constant

    if not isinstance(text, str):
        return None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None


def _parse_order_body(text: Any) -> dict | None:
    data = _parse_json(text)
    return data if isinstance(data, dict) else None


class MatcherServer:
    """The matcher process's socket server: each request becomes a gateway item; answers go back on the
    connection it came from, in whatever order their batches finish."""

    def __init__(self, path: str):
        self.path = path
        self.served = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.server = await asyncio.start_unix_server(self._connection, path=self.path)
        os.chmod(self.path, 0o660)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks: set[asyncio.Task] = set()
        try:
            while True:
                message = await _read_frame(reader)
                task = asyncio.get_running_loop().create_task(self._serve(message, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
            pass
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()

    async def _serve(self, message: dict, writer: asyncio.StreamWriter) -> None:
        from .gateway import Item, _batch_item, _future, gateway

        i = message.get("i")
        try:
            trader = await _trader(message.get("t"))
            kind, symbol = message.get("k"), message.get("s")
            if trader is None or kind not in KINDS or not isinstance(symbol, str):
                answer = {"i": i, "fall": True}
            else:
                if kind in ("batch_place", "batch_cancel"):
                    item = _batch_item(kind, trader, symbol, _parse_json(message.get("b")))
                elif kind == "place":
                    body = _parse_order_body(message.get("b"))
                    item = None
                    if body is not None:
                        item = Item(kind="place", trader=trader, symbol=symbol, body=body, **_future())
                else:
                    item = Item(
                        kind="cancel",
                        trader=trader,
                        symbol=symbol,
                        order_id=str(message.get("o") or ""),
                        mode=message.get("m"),
                        **_future(),
                    )
                if item is None:
                    answer = {"i": i, "fall": True}
                else:
                    status, body_bytes, headers = await gateway().submit(item)
                    self.served += 1
                    answer = {
                        "i": i,
                        "st": status,
                        "b": body_bytes.decode(),
                        "h": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers],
                    }
        except Exception:  # noqa: BLE001 - the web process gets an answer whatever happened here
            log.exception("order matcher: request %r failed", i)
            from .gateway import _error_answer

            status, body_bytes, _ = _error_answer(RuntimeError("matcher failure"))
            answer = {"i": i, "st": status, "b": body_bytes.decode(), "h": []}
        try:
            writer.write(_frame(answer))
        except (ConnectionError, RuntimeError):
            pass


async def serve_forever(path: str, stop: asyncio.Event | None = None) -> None:
    server = MatcherServer(path)
    await server.start()
    log.warning("order matcher listening on %s", path)
    try:
        if stop is None:
            await asyncio.Event().wait()
        else:
            await stop.wait()
    finally:
        await server.close()
