"""The order gateway: the hottest endpoints served beside Django's request cycle, batched per book.

``POST /api/v1/exchange/{symbol}/orders`` (place), ``DELETE /api/v1/exchange/{symbol}/orders/{order_id}``
(cancel) and ``POST|DELETE /api/v1/exchange/{symbol}/orders/batch`` (up to 10 of either, each order a
command of its own) are answered here, in the ASGI process, when the request is one this module can
answer exactly as the regular view would (docs/exchange-matching.md, "The order gateway"):

1. **In the event loop** (no database, no thread): route, read the body, authenticate from the process's
   credential cache (:func:`~exchanges.api.authentication.cached_trader`), parse the JSON object. Anything
   else (no or unknown credential, a browser's ``Origin``, a body that is not a JSON object, another
   content type, an unusual query) is handed to Django untouched, which answers it (and warms the cache).
2. **In a gateway thread** (``EXCHANGE_GATEWAY_THREADS``, long-lived, each with its own database
   connection): every request waiting at that moment is taken as one batch; its rate limits are counted
   in one Redis round trip (:func:`~exchanges.api.throttling.throttle_many`), orders are validated by the
   same service code as the view (``place_args`` -> ``place_prepare``), ``client_order_id`` reuse and
   funds are checked for the whole batch in one query each, cancels are looked up in one query, and then
   each book's commands run in **one transaction** (:func:`~exchanges.services.matching.run_batch`: one
   book lock, one persist, one commit: group commit).
3. The answers go back to the event loop in one call; the batch's stream events are published after.

Every answer is the regular view's: the same status, body (``order_json`` / the placed order with its
fills) and error shape (``render_exchange``), ``Retry-After`` on 429. Tests run the same requests through
both paths and compare.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import orjson
from django.conf import settings
from django.db import DatabaseError, OperationalError, connections
from django.http.request import split_domain_port, validate_host
from rest_framework import exceptions

from exchanges.errors import Codes, ExchangeError
from exchanges.services import matching
from exchanges.services import orders as svc
from mmsite.api.errors import render_exchange
from mmsite.api.renderers import _default as json_default

from .authentication import cached_trader
from .base import api_error
from .parsers import _refuse_constant
from .render import batch_json, order_json
from .throttling import throttle_many

log = logging.getLogger(__name__)

PREFIX = "/api/v1/exchange/"
PLACE_PATH = re.compile(r"^/api/v1/exchange/([A-Za-z0-9_.-]{1,32})/orders/?$")
CANCEL_PATH = re.compile(r"^/api/v1/exchange/([A-Za-z0-9_.-]{1,32})/orders/(ord_[0-9a-f]{1,32})/?$")
BATCH_PATH = re.compile(r"^/api/v1/exchange/([A-Za-z0-9_.-]{1,32})/orders/batch/?$")
#: Fixed paths under ``{symbol}/orders/`` that are views of their own (never an order id).
MAX_BODY = 64 * 1024
MAX_BATCH = 256
PHASES: dict[str, float] = {"before": 0.0, "books": 0.0}
#: ``EXCHANGE_GATEWAY_STATS=1``: log batch counts and times every 5 s (benchmarks).
STATS = os.environ.get("EXCHANGE_GATEWAY_STATS") == "1"

#: The headers every answer carries (as the regular view's: DRF's ``Vary`` and Django's security middleware).
BASE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"vary", b"Accept"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def enabled() -> bool:
    return bool(getattr(settings, "EXCHANGE_ORDER_GATEWAY", False))


# --- the ASGI side -----------------------------------------------------------------------------------------


@dataclass
class Item:
    """One request waiting for a gateway thread."""

    kind: str  # "place" | "cancel" | "batch_place" | "batch_cancel"
    trader: Any
    symbol: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    body: dict | None = None
    order_id: str = ""
    mode: str | None = None
    #: the answer: (status, body bytes, extra headers)
    answer: tuple[int, bytes, list] | None = None
    spec: Any = None
    market: Any = None
    book_mode: str = ""
    #: a batch request ("batch_place" / "batch_cancel"): its orders in request order, each an Item of its
    #: own ("place" / "cancel") with ``parent`` set, run in the books' transactions with the others
    subs: list[Item] | None = None
    parent: Item | None = None
    #: a batch's order: what it came to (the order row, or the ExchangeError refusing it)
    result: Any = None


class OrderGatewayApp:
    """ASGI middleware: the gateway's two endpoints, everything else (and any request it would not answer
    exactly as the regular view) to ``app``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX) or not enabled():
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        if method == "POST":
            m = PLACE_PATH.match(path)
            if m is not None:
                return await self._place(scope, receive, send, m.group(1))
            m = BATCH_PATH.match(path)
            if m is not None:
                return await self._batch(scope, receive, send, m.group(1), "batch_place")
        elif method == "DELETE":
            m = CANCEL_PATH.match(path)
            if m is not None and m.group(2) not in ("batch", "open", "history"):
                return await self._cancel(scope, receive, send, m.group(1), m.group(2))
            m = BATCH_PATH.match(path)
            if m is not None:
                return await self._batch(scope, receive, send, m.group(1), "batch_cancel")
        return await self.app(scope, receive, send)

    # Each handler either answers, or hands the request to Django (with the body it already read).

    async def _place(self, scope, receive, send, symbol: str):
        headers = _headers(scope)
        trader = _trader(headers, scope)
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        body, messages = await _read_body(receive)
        if trader is None or ctype != b"application/json" or body is None:
            return await self.app(scope, _replay(messages, receive), send)
        path = settings.EXCHANGE_MATCHER_SOCKET
        if path:  # the matcher parses the body (and sends back anything that is not a JSON object)
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                return await self.app(scope, _replay(messages, receive), send)
            remote = {"k": "place", "t": trader.pk, "s": symbol, "b": text}
            if await _via_matcher(path, remote, scope, send, messages, receive, self.app):
                return
        try:
            data = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            data = None
        if not isinstance(data, dict):
            return await self.app(scope, _replay(messages, receive), send)
        item = Item(kind="place", trader=trader, symbol=symbol, body=data, **_future())
        await _answer(send, await gateway().submit(item))

    async def _cancel(self, scope, receive, send, symbol: str, order_id: str):
        headers = _headers(scope)
        trader = _trader(headers, scope)
        query = scope.get("query_string", b"")
        mode: str | None = None
        ok = trader is not None
        if ok and query:
            params = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            if len(params) != 1 or params[0][0] != "mode" or params[0][1] not in ("live", "paper", ""):
                ok = False
            else:
                mode = params[0][1] or None
        body, messages = await _read_body(receive)
        if not ok or body is None or body.strip():
            return await self.app(scope, _replay(messages, receive), send)
        path = settings.EXCHANGE_MATCHER_SOCKET
        if path:
            remote = {"k": "cancel", "t": trader.pk, "s": symbol, "o": order_id, "m": mode}
            if await _via_matcher(path, remote, scope, send, messages, receive, self.app):
                return
        item = Item(kind="cancel", trader=trader, symbol=symbol, order_id=order_id, mode=mode, **_future())
        await _answer(send, await gateway().submit(item))

    async def _batch(self, scope, receive, send, symbol: str, kind: str):
        """``POST …/orders/batch`` (up to 10 orders) and ``DELETE …/orders/batch`` (up to 10 ids): each
        order becomes a command of its book's transaction beside the other requests' (a batch of 10 is
        one lock, one write and one commit with them), answered in ``BatchOrdersView``'s shape. Only a
        well-formed batch is taken here (Django answers every malformed one, with its own refusal); with
        a matcher process (``EXCHANGE_MATCHER_SOCKET``) it is handed to the matcher as single orders are."""
        headers = _headers(scope)
        trader = _trader(headers, scope)
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        body, messages = await _read_body(receive)
        if trader is None or ctype != b"application/json" or body is None or scope.get("query_string"):
            return await self.app(scope, _replay(messages, receive), send)
        path = settings.EXCHANGE_MATCHER_SOCKET
        if path:  # the matcher parses the body (and sends back any batch the view must refuse)
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                return await self.app(scope, _replay(messages, receive), send)
            if await _via_matcher(
                path, {"k": kind, "t": trader.pk, "s": symbol, "b": text}, scope, send, messages, receive, self.app
            ):
                return
        try:
            data = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            data = None
        item = _batch_item(kind, trader, symbol, data)
        if item is None:
            return await self.app(scope, _replay(messages, receive), send)
        await _answer(send, await gateway().submit(item))


def _batch_item(kind: str, trader, symbol: str, data: Any) -> Item | None:
    """The batch request as an Item with one sub-Item per order, or None if the view would refuse the
    request as a whole (not a JSON object or array, no orders or ids, too many, a bad mode)."""
    from .views_trading import BATCH_MAX

    mode = data.get("mode") if isinstance(data, dict) else None
    if mode not in (None, "live", "paper"):
        return None
    if kind == "batch_place":
        orders = data if isinstance(data, list) else (data.get("orders") if isinstance(data, dict) else None)
        if not isinstance(orders, list) or not 0 < len(orders) <= BATCH_MAX:
            return None
        item = Item(kind=kind, trader=trader, symbol=symbol, mode=mode, **_future())
        item.subs = [
            Item(kind="place", trader=trader, symbol=symbol, body=o, loop=item.loop, future=item.future) for o in orders
        ]
    else:
        ids = data.get("order_ids") if isinstance(data, dict) else None
        if not isinstance(ids, list) or not 0 < len(ids) <= BATCH_MAX or not all(isinstance(i, str) for i in ids):
            return None
        item = Item(kind=kind, trader=trader, symbol=symbol, mode=mode, **_future())
        item.subs = [
            Item(
                kind="cancel", trader=trader, symbol=symbol, order_id=oid, mode=mode, loop=item.loop, future=item.future
            )
            for oid in ids
        ]
    for sub in item.subs:
        sub.parent = item
    return item


async def _via_matcher(path, message, scope, send, messages, receive, app) -> bool:
    """Have the matcher process answer (True when the request was answered, by it or by Django); False:
    it could not be reached, serve the request here."""
    from . import matcher

    try:
        answer = await matcher.client(path).request(message)
    except matcher.MatcherUnavailable:
        return False
    except ConnectionError:
        await _answer(send, matcher.lost_answer())
        return True
    if answer.get("fall"):
        await app(scope, _replay(messages, receive), send)
        return True
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.get("h", ())]
    await _answer(send, (answer["st"], answer["b"].encode(), headers))
    return True


def _future() -> dict:
    loop = asyncio.get_running_loop()
    return {"loop": loop, "future": loop.create_future()}


def _headers(scope) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        if name in out:  # a repeated header: leave the request to Django
            out[b"x-gateway-repeated"] = b"1"
        out[name] = value
    return out


def _trader(headers: dict[bytes, bytes], scope) -> Any:
    """The caller, from the process's credential cache only; None: let Django answer (also for a browser's
    request, a host Django would refuse, or plain HTTP where Django would redirect to HTTPS)."""
    if b"origin" in headers or b"x-gateway-repeated" in headers or b"cookie" in headers:
        return None
    domain, _port = split_domain_port(headers.get(b"host", b"").decode("latin-1"))
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    if settings.SECURE_SSL_REDIRECT and scope.get("scheme") != "https":
        return None
    auth = headers.get(b"authorization")
    if auth is not None:
        scheme, _, token = auth.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return None  # DRF would go on to the API key; leave such mixes to it
        return cached_trader(bearer=token.strip())
    key = headers.get(b"x-api-key")
    if key is not None:
        return cached_trader(api_key=key.decode("latin-1"))
    return None


def _allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


async def _read_body(receive) -> tuple[bytes | None, list[dict]]:
    """The request body (None if over ``MAX_BODY`` or the client left) and the messages read, to replay."""
    messages, chunks, size = [], [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None, messages
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > MAX_BODY:
            return None, messages
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def _replay(messages: list[dict], receive):
    pending = list(messages)

    async def replayed():
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _answer(send, answer: tuple[int, bytes, list]) -> None:
    status, body, extra = answer
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*BASE_HEADERS, (b"content-length", str(len(body)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- the gateway threads -------------------------------------------------------------------------------------


class Gateway:
    """Two stages of threads and a publisher. The **prepare** thread takes every request waiting, counts
    their rate limits and validates them (no book lock); the **book** thread(s) take every prepared
    request waiting and run each book's as one transaction; so one batch is prepared while the one before
    holds the book. The publisher sends committed batches' stream events."""

    def __init__(self, threads: int):
        # The book thread waits on the database several times per batch; when an answer arrives while
        # another thread runs Python, it gets the GIL back only at the next switch (Python's default: 5 ms).
        interval = float(getattr(settings, "EXCHANGE_GATEWAY_SWITCH_INTERVAL", 0) or 0)
        if interval > 0:
            sys.setswitchinterval(interval)
        self.queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.prepared: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.after_commit: queue.SimpleQueue[list] = queue.SimpleQueue()
        self.stages = [
            (self.queue, threading.Thread(target=self._prepare_run, name="order-gateway-prepare", daemon=True)),
            *(
                (self.prepared, threading.Thread(target=self._book_run, name=f"order-gateway-book-{i}", daemon=True))
                for i in range(threads)
            ),
        ]
        self.publisher = threading.Thread(target=self._after_commit_run, name="order-gateway-publish", daemon=True)
        reserve_pool_connections(connections["default"].pool, len(self.stages) + 1)
        #: requests the gateway answered, book batches and the requests in them (bench and tests read these)
        self.requests = 0
        self.batches = 0
        self.batched = 0
        self.busy = 0.0
        self._next_stats = 0.0
        for _, t in self.stages:
            t.start()
        self.publisher.start()

    async def submit(self, item: Item) -> tuple[int, bytes, list]:
        self.queue.put(item)
        return await item.future

    def close_connections(self, timeout: float = 5.0) -> None:
        """Have every gateway thread close its database connections (tests, before the test database is
        dropped); returns when they all have."""
        done = threading.Barrier(len(self.stages) + 2)
        for q, _ in self.stages:
            q.put(_Close(done))
        self.after_commit.put([_Close(done)])
        try:
            done.wait(timeout)
        except threading.BrokenBarrierError:
            pass

    @staticmethod
    def _take(q: queue.SimpleQueue) -> list[Item] | None:
        """Every item waiting on ``q`` (blocking for the first), up to about ``MAX_BATCH`` orders (a batch
        request counts its orders: one transaction, and a failed one's one-by-one rerun, stay bounded);
        None after serving a ``_Close``."""
        first = q.get()
        if isinstance(first, _Close):
            first()
            return None
        items = [first]
        size = _orders_in(first)
        while size < MAX_BATCH:
            try:
                nxt = q.get_nowait()
            except queue.Empty:
                break
            if isinstance(nxt, _Close):
                q.put(nxt)  # for a thread that is not busy (this one has a batch to answer)
                break
            items.append(nxt)
            size += _orders_in(nxt)
        return items

    def _prepare_run(self) -> None:
        while True:
            items = self._take(self.queue)
            if items is None:
                continue
            self.requests += len(items)
            try:
                prepare(items)
            except Exception:  # noqa: BLE001 - every request gets an answer, whatever happened
                log.exception("order gateway: preparing %d requests failed", len(items))
                _busy(items)
            finally:
                done = [it for it in items if it.answer is not None]
                if done:
                    _deliver(done)
                for it in items:
                    if it.answer is None:
                        self.prepared.put(it)
                _tidy_connection()

    def _book_run(self) -> None:
        while True:
            items = self._take(self.prepared)
            if items is None:
                continue
            deferred: list = []
            started = time.perf_counter()
            try:
                execute(items, deferred)
            except Exception:  # noqa: BLE001 - every request gets an answer, whatever happened
                log.exception("order gateway: a batch of %d failed", len(items))
            finally:
                _busy(items)
                self.batches += 1
                self.batched += len(items)
                _deliver(items)
                self.busy += time.perf_counter() - started
                if STATS and time.monotonic() > self._next_stats:
                    self._next_stats = time.monotonic() + 5
                    log.warning(
                        "order gateway: %d batches, %d requests (%.1f per batch), %.2f ms per batch (%s)",
                        self.batches,
                        self.batched,
                        self.batched / self.batches,
                        1000 * self.busy / self.batches,
                        ", ".join(f"{k} {1000 * v / self.batches:.2f}" for k, v in PHASES.items()),
                    )
                if deferred:
                    self.after_commit.put(deferred)
                _tidy_connection()

    def _after_commit_run(self) -> None:
        """Stream publishing of committed batches, in commit order, off the book thread (it runs the next
        batch meanwhile)."""
        while True:
            for fn in self.after_commit.get():
                try:
                    fn()
                except Exception:  # noqa: BLE001 - a stream failure never undoes a committed order
                    log.exception("order gateway: publishing after commit failed")
            _tidy_connection()


def _orders_in(it: Item) -> int:
    return len(it.subs) if it.subs is not None else 1


def reserve_pool_connections(pool, held: int) -> None:
    """Grow the process's connection pool (``DB_POOL``, ``OPTIONS["pool"]``) by the ``held`` connections
    the gateway's threads keep for good, so that what was configured stays for the request threads. Without
    it a pool of 4 with two book threads left the views none: they waited the pool's timeout and failed.
    No pool (``CONN_MAX_AGE`` connections per thread): nothing to do."""
    if pool is None or held <= 0:
        return
    pool.open()  # Django creates it closed and opens it on first use; resizing needs it open (a no-op if so)
    pool.resize(pool.min_size, pool.max_size + held)
    log.info("order gateway: connection pool grown to %d (%d held by its threads)", pool.max_size, held)


def _busy(items: list[Item]) -> None:
    """Every item still without an answer gets ``503 busy`` (a failure that is nobody's refusal)."""
    for it in items:
        if it.answer is None:
            it.answer = _busy_answer()


def _busy_answer() -> tuple[int, bytes, list]:
    return _error_answer(ExchangeError(Codes.BUSY, "the order could not be processed, try again", status=503))


def _tidy_connection() -> None:
    """A gateway thread keeps its database connection (with ``DB_POOL`` it holds one of the pool's for
    good; size the pool for it), closing it only after an error left it unusable (as Django does between
    requests, without the max-age rule: the thread is the connection's only user)."""
    conn = connections["default"]
    if conn.connection is None:
        return
    if conn.get_autocommit() != conn.settings_dict["AUTOCOMMIT"] or (conn.errors_occurred and not conn.is_usable()):
        conn.close()
    conn.errors_occurred = False


class _Close:
    """A request to a gateway thread to close its database connections."""

    def __init__(self, barrier: threading.Barrier):
        self.barrier = barrier

    def __call__(self) -> None:
        connections.close_all()
        try:
            self.barrier.wait(5)
        except threading.BrokenBarrierError:
            pass


def _deliver(items: list[Item]) -> None:
    by_loop: dict[Any, list[Item]] = {}
    for it in items:
        by_loop.setdefault(it.loop, []).append(it)
    for loop, group in by_loop.items():

        def resolve(group=group):
            for it in group:
                if not it.future.done():
                    it.future.set_result(it.answer)

        try:
            loop.call_soon_threadsafe(resolve)
        except RuntimeError:  # the loop is gone (server shutting down)
            pass


_GATEWAY: Gateway | None = None
_GATEWAY_LOCK = threading.Lock()


def gateway() -> Gateway:
    global _GATEWAY
    if _GATEWAY is None:
        with _GATEWAY_LOCK:
            if _GATEWAY is None:
                _GATEWAY = Gateway(max(1, int(getattr(settings, "EXCHANGE_GATEWAY_THREADS", 1))))
    return _GATEWAY


# --- one batch ------------------------------------------------------------------------------------------------


def _json(data: Any) -> bytes:
    return orjson.dumps(data, default=json_default)


def _error_answer(exc: Exception) -> tuple[int, bytes, list]:
    if isinstance(exc, exceptions.Throttled):
        headers = []
        if exc.wait is not None:
            headers.append((b"retry-after", str(int(exc.wait + 0.999)).encode()))
        return exc.status_code, _json(render_exchange(exc)), headers
    if isinstance(exc, ExchangeError):
        return exc.status, _json(render_exchange(api_error(exc))), []
    if isinstance(exc, OperationalError | DatabaseError):
        busy = ExchangeError(Codes.BUSY, "the exchange is busy, try again", status=503)
        return busy.status, _json(render_exchange(api_error(busy))), []
    log.error("order gateway: unexpected %r", exc, exc_info=exc)
    return 500, _json({"error": "internal_error", "message": "Internal server error"}), []


def process(items: list[Item], deferred: list) -> None:
    """Answer every item of one batch (``item.answer``); stream publishing goes to ``deferred``."""
    prepare(items)
    execute(items, deferred)


def prepare(items: list[Item]) -> None:
    """Rate limits and validation: refused items get their answer, the others their book."""
    t0 = time.perf_counter()
    # 1. Rate limits, counted as the views count them, in one round trip (a batch place counts its orders
    #    only when its pair exists, as the view looks the pair up first).
    from .views_trading import place_args

    requests, counts, unknown = [], [], {}
    for it in items:
        symbol = None
        if it.kind == "place":
            symbol = it.symbol.lower()
        elif it.kind == "batch_place":
            try:
                it.market = svc.market_get(symbol=it.symbol)
                symbol = it.symbol.lower()
            except ExchangeError as exc:
                unknown[id(it)] = exc
        requests.append((it.trader, symbol))
        counts.append(len(it.subs) if it.kind == "batch_place" else 1)
    for it, refused in zip(items, throttle_many(requests, counts), strict=True):
        if refused is not None:
            it.answer = _error_answer(refused)

    # 2. Validation (the view's own code; no database but the cached markets and accounts). A cancel goes to
    #    the book of the path's pair in the asked mode (live if none asked; an order found in the other mode
    #    is sent there in a second round).
    places = []
    for it in items:
        if it.answer is not None:
            continue
        try:
            if it.kind == "place":
                it.spec = svc.place_prepare(**place_args(it.trader, it.symbol, it.body))
                it.market, it.book_mode = it.spec.market, it.spec.mode
                places.append(it)
            elif it.kind == "cancel":
                try:
                    it.market = svc.market_get(symbol=it.symbol)
                except ExchangeError:
                    raise svc.unknown_order(it.order_id) from None
                it.book_mode = it.mode or "live"
            elif it.kind == "batch_place":
                if id(it) in unknown:
                    raise unknown[id(it)]
                for sub in it.subs:
                    try:
                        sub.spec = svc.place_prepare(**place_args(it.trader, it.symbol, sub.body, it.mode))
                    except ExchangeError as exc:
                        _refuse(sub, exc)
                        continue
                    sub.market, sub.book_mode = sub.spec.market, sub.spec.mode
                    places.append(sub)
            else:  # batch_cancel
                market = svc.market_get(symbol=it.symbol)
                for sub in it.subs:
                    sub.market, sub.book_mode = market, sub.mode or "live"
        except ExchangeError as exc:
            it.answer = _error_answer(exc)
    _check_client_order_ids(places)
    PHASES["before"] += time.perf_counter() - t0


#: the ``answer`` of a batch's order once it has its ``result`` (the batch is answered as a whole)
_SUB_DONE: tuple[int, bytes, list] = (0, b"", [])


def _refuse(it: Item, exc: Exception) -> None:
    """Answer ``it`` with the refusal ``exc`` (a batch's order: its result; anything but an ExchangeError
    fails the whole batch request, as it fails the view)."""
    if it.parent is None:
        it.answer = _error_answer(exc)
    elif isinstance(exc, ExchangeError):
        it.result, it.answer = exc, _SUB_DONE
    else:
        it.answer = _SUB_DONE
        it.parent.answer = _error_answer(exc)


def execute(items: list[Item], deferred: list) -> None:
    """Each book's prepared items (a batch request's orders among them) in one transaction
    (``item.answer``); publishing goes to ``deferred``."""
    t1 = time.perf_counter()
    flat: list[Item] = []
    for it in items:
        if it.subs is None:
            flat.append(it)
        elif it.answer is None:
            flat += it.subs
    # 3. Each book's commands in one transaction, in arrival order.
    for _round in range(2):
        books: dict[tuple[int, str], list[Item]] = {}
        for it in flat:
            if it.answer is None and it.market is not None:
                books.setdefault((it.market.pk, it.book_mode), []).append(it)
        if not books:
            break
        for group in books.values():
            _run_book(group, deferred)
    for it in items:
        if it.subs is not None and it.answer is None:
            it.answer = _batch_answer(it)
    PHASES["books"] += time.perf_counter() - t1


def _batch_answer(it: Item) -> tuple[int, bytes, list]:
    """``BatchOrdersView``'s answer (``render.batch_json``)."""
    if any(sub.answer is None for sub in it.subs):  # never expected: as a lone request left unanswered
        return _busy_answer()
    ids = [sub.order_id for sub in it.subs] if it.kind == "batch_cancel" else None
    return 200, _json(batch_json([sub.result for sub in it.subs], ids)), []


def _run_book(group: list[Item], deferred: list) -> None:
    commands, preloads, accounts = [], [], set()
    for it in group:
        if it.kind == "place":
            commands.append(svc.place_command(it.spec))
            preloads.append([])
            accounts.add(it.spec.hold_account.pk)
        else:
            commands.append(_cancel_command(it))
            preloads.append([it.order_id])
    t_book = time.perf_counter()
    results = matching.run_batch(
        market=group[0].market,
        mode=group[0].book_mode,
        commands=commands,
        preload_orders=preloads,
        deferred=deferred,
        accounts=accounts,
    )
    for it, result in zip(group, results, strict=True):
        if isinstance(result, OtherBook):
            it.book_mode = result.mode  # asked again in its own book's round
        elif isinstance(result, Exception):
            _refuse(it, svc.place_error(it.spec, result) if it.kind == "place" else result)
        elif it.parent is not None:
            it.result, it.answer = result, _SUB_DONE
        elif it.kind == "place":
            from .views_trading import _placed_json

            it.answer = (201, _json(_placed_json(result)), [])
        else:
            it.answer = (200, _json(order_json(result)), [])
    PHASES["run_book"] = PHASES.get("run_book", 0.0) + time.perf_counter() - t_book


class OtherBook(ExchangeError):
    """A cancel (no ``mode`` asked) of an order that lives in the other mode's book."""

    def __init__(self, mode: str):
        super().__init__(Codes.UNKNOWN_ORDER, "order in the other mode's book", status=404)
        self.mode = mode


def _cancel_command(it: Item):
    """``order_cancel``'s checks, made on the order's row read under the book lock, then its command."""
    cancel = svc.cancel_command(it.order_id)
    first_round = it.mode is None and it.book_mode == "live"

    def command(run):
        order = run.loaded.get(it.order_id)
        row = None if order is None or order.trader_id != it.trader.pk else (order.market_id, order.mode, order.status)
        if first_round and row is not None and row[0] == run.market.pk and row[1] != run.mode:
            raise OtherBook(row[1])
        refusal = svc.cancel_refusal(it.order_id, row, market_id=run.market.pk, mode=run.mode)
        if refusal is not None:
            raise refusal
        return cancel(run)

    return command


def _check_client_order_ids(places: list[Item]) -> None:
    """``client_order_id`` reuse across the batch's placements, in one query (``client_order_ids_used``)."""
    places = [it for it in places if it.answer is None]
    for i, refusal in svc.client_order_ids_used([it.spec for it in places]).items():
        _refuse(places[i], refusal)


if STATS:  # timing of the matching service's steps (benchmarks only)

    def _timed(name, fn):
        PHASES[name] = 0.0

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                PHASES[name] += time.perf_counter() - t

        return wrapper

    matching._lock_book_state = _timed("lock", matching._lock_book_state)
    matching._persist = _timed("persist", matching._persist)
    matching._write_batch = _timed("write", matching._write_batch)
    matching._rebuild = _timed("rebuild", matching._rebuild)
