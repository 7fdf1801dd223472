"""The matching service: one writer per (market, mode) book across every process, persisting each
command's orders, trades, cancels, ledger holds, captures, releases and fees in one transaction.

How one command runs (docs/exchange-matching.md has the why):

1. ``SELECT ... FOR UPDATE`` the book's ``BookState`` row inside ``transaction.atomic()``: every other
   writer of this book, in this process or any other, waits here. This row is the per-symbol mutex.
2. The process's in-memory book (the pure core, ``exchanges.book``) is used if its ``stamp`` equals the
   row's; otherwise it is rebuilt from the live order rows and the row's counters.
3. The command runs on the in-memory book (expiry first, with the database's clock), and its events
   are turned into row changes and ledger calls: all ledger accounts the command touches are locked up
   front in ascending id order (the ledger's one lock order), then holds placed, orders written, trades
   inserted and settled (``trade_settle``: captures with maker/taker fees), holds released.
4. The row gets the book's counters and a new random ``stamp``; the transaction commits.
5. After commit: ``exchanges.streams.publish.publish(events)`` and ``trades_committed``.

Any exception inside drops the process's in-memory book (it may be ahead of the database); the next
command rebuilds it. A refusal raises :class:`~exchanges.errors.ExchangeError` and writes nothing.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, IntegrityError, OperationalError, connection, models, transaction
from django.db.models.signals import post_migrate
from django.utils import timezone

from exchanges import signals
from exchanges.book import (
    Accepted,
    Amended,
    BookDelta,
    Cancelled,
    Expired,
    Instrument,
    OrderBook,
    Reduced,
    Rejected,
    Trade,
    Triggered,
)
from exchanges.book.book import SNAPSHOT_VERSION
from exchanges.errors import Codes, ExchangeError
from exchanges.ledger import services as ledger
from exchanges.ledger.choices import OPEN_HOLD_STATUSES, OwnerType
from exchanges.ledger.exceptions import InsufficientFunds
from exchanges.models import (
    LIVE_STATUSES,
    BookState,
    ExchangeOrder,
    ExchangeTrade,
    Hold,
    LedgerAccount,
    Market,
    OrderStatus,
)

from . import fees as fee_service

log = logging.getLogger(__name__)

ZERO = Decimal("0")
LOCK_TIMEOUT_MS = 5000

#: Book rejection reasons -> API error codes.
REJECT_CODES = {
    "invalid_side": Codes.INVALID_SIDE,
    "invalid_order_type": Codes.INVALID_ORDER_TYPE,
    "invalid_qty": Codes.INVALID_QUANTITY,
    "invalid_price": Codes.INVALID_PRICE,
    "invalid_stop_price": Codes.INVALID_STOP_PRICE,
    "invalid_display_qty": Codes.INVALID_DISPLAY_QTY,
    "invalid_expire_at": Codes.INVALID_EXPIRE_AT,
    "invalid_stp": Codes.INVALID_STP_MODE,
    "already_expired": Codes.ALREADY_EXPIRED,
    "price_off_tick": Codes.PRICE_OFF_TICK,
    "qty_off_lot": Codes.QUANTITY_OFF_LOT,
    "post_only_would_cross": Codes.POST_ONLY_WOULD_CROSS,
    "fok_unfillable": Codes.FOK_UNFILLABLE,
    "no_liquidity": Codes.NO_LIQUIDITY,
    "stop_would_trigger": Codes.STOP_WOULD_TRIGGER,
    "not_amendable": Codes.NOT_AMENDABLE,
    "unknown_order": Codes.UNKNOWN_ORDER,
    "duplicate_order_id": Codes.INVALID_PARAMETER,
}

REJECT_MESSAGES = {
    "post_only_would_cross": "post_only order would trade on arrival",
    "fok_unfillable": "fok order cannot be filled completely at once",
    "no_liquidity": "market order: nothing on the other side of the book",
    "stop_would_trigger": "stop_price is already reached by the last trade price",
    "not_amendable": "a stop order waiting for its trigger cannot be amended: cancel it and place again",
    "already_expired": "expire_at is in the past",
}


def now_us() -> int:
    """The exchange clock: epoch microseconds (the unit of ``expire_at``)."""
    return time.time_ns() // 1000


# --- the in-memory books of this process -----------------------------------------------------------------


@dataclass
class LocalBook:
    book: OrderBook
    instrument: Instrument
    stamp: str
    market_updated_at: Any


_BOOKS: dict[tuple[int, str], LocalBook] = {}
_BOOKS_GUARD = threading.Lock()


def local_books_clear() -> None:
    """Forget every in-memory book of this process (a restart, as far as the books are concerned)."""
    with _BOOKS_GUARD:
        _BOOKS.clear()
    _STATES_KNOWN.clear()


def _drop(key: tuple[int, str]) -> None:
    with _BOOKS_GUARD:
        _BOOKS.pop(key, None)


_STATES_KNOWN: set[tuple[int, str]] = set()


def book_state_ensure(*, market: Market, mode: str) -> None:
    """Make sure the book's ``BookState`` row exists (committed), once per process and book."""
    key = (market.pk, mode)
    if key in _STATES_KNOWN:
        return
    if not BookState.objects.filter(market=market, mode=mode).exists():
        try:
            with transaction.atomic():
                BookState.objects.create(market=market, mode=mode)
        except IntegrityError:  # another process created it first
            pass
    if not connection.in_atomic_block:
        _STATES_KNOWN.add(key)


def _rebuild(market: Market, mode: str, state: BookState) -> LocalBook:
    """The book of (market, mode) as the database has it: live orders in queue order, the row's counters."""
    inst = Instrument(market.tick_size, market.lot_size)

    def ticks(v: Decimal | None) -> int | None:
        return None if v is None else inst.to_ticks(v)

    orders = []
    rows = (
        ExchangeOrder.objects.filter(market=market, mode=mode, status__in=LIVE_STATUSES)
        .order_by("book_arrival", "book_sub_no")
        .values_list(
            "order_id",
            "trader_id",
            "side",
            "book_type",
            "price",
            "open_quantity",
            "visible_quantity",
            "display_qty",
            "stp_mode",
            "expire_at",
            "stop_price",
            "book_sub_no",
            "book_arrival",
            "status",
        )
    )
    for oid, owner, side, btype, price, open_q, vis_q, disp, stp, exp, stop, sub_no, arrival, status in rows:
        resting = status != OrderStatus.WAITING_TRIGGER
        orders.append(
            {
                "order_id": oid,
                "owner": owner,
                "side": side,
                "order_type": btype,
                "price": ticks(price) if btype not in ("market", "stop_market") else None,
                "qty": inst.to_lots(open_q),
                "visible": inst.to_lots(vis_q) if resting and vis_q else 0,
                "display_qty": None if disp is None else inst.to_lots(disp),
                "stp": stp,
                "expire_at": exp,
                "stop_price": ticks(stop),
                "sub_no": sub_no,
                "arrival": arrival,
                "resting": resting,
            }
        )
    snap = {
        "version": SNAPSHOT_VERSION,
        "symbol": market.symbol,
        "default_stp": "cancel_resting",
        "seq": state.sequence,
        "trade_no": state.trade_no,
        "last_price": ticks(state.last_price),
        "clock": state.clock,
        "counter": state.counter,
        "orders": orders,
    }
    return LocalBook(OrderBook.restore(snap), inst, state.stamp, market.updated_at)


# --- ledger accounts (ids never change: cached per process) ------------------------------------------------

_ACCOUNTS: dict[tuple[str, str, str, str], LedgerAccount] = {}


def trader_account(*, trader_id: int, asset: str, mode: str) -> LedgerAccount:
    key = (OwnerType.TRADER, str(trader_id), asset.upper(), mode)
    acct = _ACCOUNTS.get(key)
    if acct is None:
        acct = ledger.account_get_or_create(
            owner_type=OwnerType.TRADER, owner_id=str(trader_id), asset=asset, mode=mode
        )
        _remember(key, acct)
    return acct


def fee_account(*, asset: str, mode: str) -> LedgerAccount:
    key = (OwnerType.PLATFORM, "fees", asset.upper(), mode)
    acct = _ACCOUNTS.get(key)
    if acct is None:
        acct = ledger.fee_account(asset=asset, mode=mode)
        _remember(key, acct)
    return acct


def _remember(key: tuple[str, str, str, str], acct: LedgerAccount) -> None:
    """Cache an account only once its row is committed: an account created inside a transaction that
    rolls back must not be remembered (its id would point at nothing)."""
    if connection.in_atomic_block:
        transaction.on_commit(lambda: _ACCOUNTS.__setitem__(key, acct))
    else:
        _ACCOUNTS[key] = acct


def accounts_cache_clear() -> None:
    _ACCOUNTS.clear()


def available(account: LedgerAccount) -> Decimal:
    balance, held = LedgerAccount.objects.filter(pk=account.pk).values_list("balance", "held").get()
    return balance - held


# --- one command on one book ---------------------------------------------------------------------------------


@dataclass
class _HoldPlan:
    order: ExchangeOrder
    amount: Decimal
    reference: str
    release_old: Hold | None = None


@dataclass
class Run:
    """One command on one locked book: the events it produced and what they mean for the rows."""

    market: Market
    mode: str
    local: LocalBook
    state: BookState
    now: int
    events: list = field(default_factory=list)
    new_orders: dict[str, ExchangeOrder] = field(default_factory=dict)
    #: existing order rows the command already loaded under the book lock (persist reuses them)
    loaded: dict[str, ExchangeOrder] = field(default_factory=dict)
    hold_plans: list[_HoldPlan] = field(default_factory=list)
    dirty: bool = False
    #: every order row the run touched, by order id, as persisted (filled in by ``_persist``)
    orders: dict[str, ExchangeOrder] = field(default_factory=dict)
    #: available balance (``balance - held``) of the accounts a batch asked for, read under the book lock;
    #: a placement checks its hold against it and takes its share (``run_batch(accounts=...)``)
    available: dict[int, Decimal] | None = None

    @property
    def book(self) -> OrderBook:
        return self.local.book

    @property
    def instrument(self) -> Instrument:
        return self.local.instrument

    def apply(self, events: list) -> list:
        """Record ``events`` of a book call (which must not be a rejection) for persisting."""
        if events and not (len(events) == 1 and isinstance(events[0], Rejected)):
            self.dirty = True
            self.events.extend(events)
        return events

    def expire(self) -> None:
        self.apply(self.book.expire(self.now))


_STATE_FIELDS = ("id", "market_id", "mode", "sequence", "trade_no", "counter", "last_price", "clock", "stamp")


class _Preload:
    """Order rows (with their trader and hold) a command will touch, known before the lock: the query is
    compiled before the lock and, on PostgreSQL, sent in the lock's own round trip (read after the lock
    is granted, so as fresh as a query under the lock)."""

    #: compiled once per number of ids (the SQL depends on nothing else; the ids are its only params)
    _COMPILED: dict[int, tuple[Any, str]] = {}

    def __init__(self, order_ids: Iterable[str]):
        ids = sorted(set(order_ids))
        hit = self._COMPILED.get(len(ids))
        if hit is None:
            qs = ExchangeOrder.objects.filter(order_id__in=ids).select_related("trader", "hold")
            compiler = qs.query.get_compiler(using="default")
            sql, params = compiler.as_sql()
            if list(params) != ids:  # not the shape this cache assumes: compile every time
                self.compiler, self.sql, self.params = compiler, sql, params
                return
            hit = self._COMPILED[len(ids)] = (compiler, sql)
        self.compiler, self.sql = hit
        self.params = ids

    def orders(self, rows: list) -> dict[str, ExchangeOrder]:
        from django.db.models.query import get_related_populators

        compiler = self.compiler
        select, klass_info = compiler.select, compiler.klass_info
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        init_list = [f[0].target.attname for f in select[start:end]]
        populators = get_related_populators(klass_info, select, "default")
        out: dict[str, ExchangeOrder] = {}
        for row in compiler.results_iter(results=[rows]):
            obj = ExchangeOrder.from_db("default", init_list, row[start:end])
            for populator in populators:
                populator.populate(row, obj)
            out[obj.order_id] = obj
        return out


def _lock_book_state(
    market: Market, mode: str, preload: _Preload | None = None, accounts: list[int] | None = None
) -> tuple[BookState, dict, dict[int, Decimal]]:
    """``SELECT … FOR UPDATE`` the book's row. On PostgreSQL one round trip sets a 5 s lock timeout for
    this transaction, takes the lock (the values are an integer id and a checked mode string) and reads
    the ``preload`` order rows and the available balance (``balance - held``) of ``accounts`` (read, not
    locked: the holds' conditional updates have the last word). Returns the row, those orders by order
    id, and ``{account id: available}``."""
    if mode not in ("live", "paper"):
        raise ExchangeError(Codes.INVALID_MODE, f"unknown mode {mode!r}")
    acct_sql = ""
    if accounts:
        acct_sql = (
            f"SELECT id, balance - held FROM {LedgerAccount._meta.db_table} "
            f"WHERE id IN ({', '.join(str(int(a)) for a in sorted(set(accounts)))})"
        )
    try:
        if connection.vendor == "postgresql":
            sql = (
                f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'; "
                f"SELECT {', '.join(_STATE_FIELDS)} FROM {BookState._meta.db_table} "
                f"WHERE market_id = {int(market.pk)} AND mode = '{mode}' FOR UPDATE"
            )
            parts, params = [sql], []
            if preload is not None:
                parts.append(preload.sql)
                params = list(preload.params)
            if acct_sql:
                parts.append(acct_sql)
            with connection.cursor() as cur:
                cur.execute("; ".join(parts), params or None)
                cur.nextset()  # the first result is the SET's
                row = cur.fetchone()
                rows, avail = [], {}
                if preload is not None:
                    cur.nextset()
                    rows = cur.fetchall()
                if acct_sql:
                    cur.nextset()
                    avail = dict(cur.fetchall())
            state = BookState(**dict(zip(_STATE_FIELDS, row, strict=True)))
            state._state.adding = False
            state._state.db = "default"
            return state, (preload.orders(rows) if preload is not None else {}), avail
        state = BookState.objects.select_for_update().get(market=market, mode=mode)
        loaded, avail = {}, {}
        with connection.cursor() as cur:
            if preload is not None:
                cur.execute(preload.sql, preload.params)
                loaded = preload.orders(cur.fetchall())
            if acct_sql:
                cur.execute(acct_sql)
                avail = dict(cur.fetchall())
        return state, loaded, avail
    except OperationalError as exc:
        if "lock timeout" in str(exc).lower() or "lock_timeout" in str(exc).lower():
            raise ExchangeError(Codes.BUSY, "the order book is busy, try again", status=503) from exc
        raise


def _local_book(market: Market, mode: str, state: BookState) -> LocalBook:
    """This process's book of (market, mode) if it is the committed one (its stamp is the locked row's and
    the market row has not changed), else rebuilt from the database. Call under the book lock."""
    key = (market.pk, mode)
    with _BOOKS_GUARD:
        local = _BOOKS.get(key)
    if local is None or local.stamp != state.stamp or local.market_updated_at != market.updated_at:
        local = _rebuild(market, mode, state)
        with _BOOKS_GUARD:
            _BOOKS[key] = local
    return local


def run_on_book(*, market: Market, mode: str, command: Callable[[Run], Any], preload_orders: Iterable[str] = ()) -> Any:
    """Run ``command(run)`` on the locked (market, mode) book and persist what it did, in one transaction.

    Holds the book's ``BookState`` row ``FOR UPDATE`` throughout. ``command`` calls the in-memory book
    through ``run.apply(...)``; it may raise :class:`ExchangeError` (nothing is written). Returns what
    ``command`` returned. ``preload_orders``: ids of existing orders the command will touch; their rows
    (with trader and hold) are read right after the lock, in its round trip, into ``run.loaded``.
    """
    book_state_ensure(market=market, mode=mode)
    key = (market.pk, mode)
    after: list[Callable[[], None]] = []
    preload = _Preload(preload_orders) if preload_orders else None
    try:
        with transaction.atomic():
            state, loaded, _ = _lock_book_state(market, mode, preload)
            local = _local_book(market, mode, state)
            run = Run(market=market, mode=mode, local=local, state=state, now=now_us(), loaded=loaded)
            run.expire()
            result = command(run)
            if run.dirty:
                # Any error rolls back this whole transaction, so the ledger needs no savepoints of its own.
                with ledger.savepoints_off():
                    after.append(_persist(run))
            if isinstance(result, Later):
                result = result.fn()
    except BaseException:
        _drop(key)
        raise
    for fn in after:
        fn()
    return result


def run_batch(
    *,
    market: Market,
    mode: str,
    commands: list[Callable[[Run], Any]],
    preload_orders: Iterable[Iterable[str]] | None = None,
    deferred: list[Callable[[], None]] | None = None,
    accounts: Iterable[int] = (),
) -> list[Any]:
    """Run several commands on the (market, mode) book in **one** transaction (group commit): one lock,
    one persist, one commit for all of them. Returns one entry per command, in order: what it returned,
    or the :class:`ExchangeError` it raised (a command refuses **before** it changes the book, so a
    refusal leaves the others alone). ``preload_orders``: per command, the ids of existing orders it
    touches (read under the lock, as :func:`run_on_book` does).

    If anything else fails (the database, a hold short of funds after matching, a duplicate
    ``client_order_id``), the transaction rolls back, the in-memory book is dropped, and every command
    runs again alone through :func:`run_on_book`, so each gets its own answer as if it came alone.
    After commit, the events of the whole batch are published together (one stream message per group);
    with ``deferred`` given, that publishing is appended to it for the caller to run once it has answered
    (the one-by-one fallback publishes as it goes). An unexpected exception of one command in the
    fallback is returned in its place (logged), so the others still get their answers. ``accounts``:
    ledger accounts whose available balance is read in the lock's round trip into ``run.available``
    (placements check their holds against it, in order).
    """
    accounts = sorted(set(accounts))
    if not commands:
        return []
    per_command = [list(ids) for ids in preload_orders] if preload_orders is not None else [[] for _ in commands]
    # Inside a caller's transaction the batch is a savepoint: a failure rolls back to it, then the
    # commands run one by one, each in a savepoint of its own (``run_on_book``).
    book_state_ensure(market=market, mode=mode)
    key = (market.pk, mode)
    all_ids = [i for ids in per_command for i in ids]
    preload = _Preload(all_ids) if all_ids else None
    after: list[Callable[[], None]] = []
    try:
        with transaction.atomic():
            state, loaded, avail = _lock_book_state(market, mode, preload, accounts)
            local = _local_book(market, mode, state)
            run = Run(market=market, mode=mode, local=local, state=state, now=now_us(), loaded=loaded)
            if accounts:
                run.available = avail
            run.expire()
            results: list[Any] = []
            for cmd in commands:
                try:
                    results.append(cmd(run))
                except ExchangeError as exc:
                    results.append(exc)
            if run.dirty:
                with ledger.savepoints_off():
                    after.append(_persist(run))
            results = [r.fn() if isinstance(r, Later) else r for r in results]
    except (KeyboardInterrupt, SystemExit):
        _drop(key)
        raise
    except Exception:
        _drop(key)
        log.info("batch of %d on %s/%s failed as a whole: running them one by one", len(commands), market, mode)
        return [_one(market, mode, cmd, ids) for cmd, ids in zip(commands, per_command, strict=True)]
    if deferred is not None:
        deferred.extend(after)
    else:
        for fn in after:
            fn()
    return results


def _one(market: Market, mode: str, command: Callable[[Run], Any], preload_orders: list[str]) -> Any:
    try:
        return run_on_book(market=market, mode=mode, command=command, preload_orders=preload_orders)
    except ExchangeError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - one command's failure must not take the others' answers
        log.exception("command on %s/%s failed", market, mode)
        return exc


class Later:
    """A command's result computed after its run is persisted (e.g. ``Later(lambda: run.orders[oid])``)."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn


# --- persisting a run ---------------------------------------------------------------------------------------


def _order_ids(events: Iterable) -> set[str]:
    ids: set[str] = set()
    for ev in events:
        t = type(ev)
        if t is Trade:
            ids.add(ev.taker_order_id)
            ids.add(ev.maker_order_id)
        elif t in (Cancelled, Reduced, Expired, Amended, Triggered, Accepted):
            ids.add(ev.order_id)
    return ids


def _q(inst: Instrument, lots: int) -> Decimal:
    return inst.qty(lots)


def _persist(run: Run) -> Callable[[], None]:
    """Write everything ``run.events`` did; return the after-commit callback (publish, signal)."""
    market, mode, inst, book = run.market, run.mode, run.instrument, run.book
    events = run.events
    ids = _order_ids(events)
    orders: dict[str, ExchangeOrder] = {**run.loaded, **run.new_orders}
    missing = ids - orders.keys()
    if missing:
        for o in ExchangeOrder.objects.filter(order_id__in=missing).select_related("trader", "hold"):
            o.market = market
            orders[o.order_id] = o
    for o in orders.values():
        o.market = market
    run.orders = orders

    # Pass 1, in Python: what the events mean for the orders.
    trades: list[tuple[Trade, ExchangeOrder, ExchangeOrder]] = []
    done_reason: dict[str, tuple[str, str]] = {}
    reductions: list[tuple[ExchangeOrder, Decimal]] = []
    publish: list[dict] = []
    touched: dict[str, ExchangeOrder] = {}
    for ev in events:
        t = type(ev)
        if t is BookDelta:
            price = inst.price(ev.price)
            level = [(price, _q(inst, ev.qty))]
            publish.append(
                {
                    "type": "book",
                    "symbol": market.symbol,
                    "mode": mode,
                    "sequence": ev.seq,
                    "bids": level if ev.side == "buy" else [],
                    "asks": level if ev.side == "sell" else [],
                }
            )
        elif t is Trade:
            taker, maker = orders[ev.taker_order_id], orders[ev.maker_order_id]
            trades.append((ev, taker, maker))
            touched[taker.order_id] = taker
            touched[maker.order_id] = maker
        elif t is Cancelled:
            done_reason[ev.order_id] = (OrderStatus.CANCELLED, ev.reason)
            touched[ev.order_id] = orders[ev.order_id]
        elif t is Expired:
            done_reason[ev.order_id] = (OrderStatus.EXPIRED, "expired")
            touched[ev.order_id] = orders[ev.order_id]
        elif t is Reduced:
            o = orders[ev.order_id]
            reductions.append((o, _q(inst, ev.qty)))
            touched[ev.order_id] = o
        elif t is Triggered:
            o = orders[ev.order_id]
            o.book_type = ev.order_type
            touched[ev.order_id] = o
        elif t is Amended:
            o = orders[ev.order_id]
            o.price = inst.price(ev.price)
            o.quantity = o.filled_quantity + _q(inst, ev.qty)
            touched[ev.order_id] = o
        elif t is Accepted:
            touched[ev.order_id] = orders[ev.order_id]

    # Every ledger account this command moves: each touched order's hold account, and for trades the
    # receiving accounts and the fee accounts. Locked now, ascending by id, in one statement (the
    # ledger's lock order); a single account is locked by the one ledger call that moves it.
    base, quote = market.base_asset, market.quote_asset
    acct_ids = {_hold_account(o, market, mode).pk for o in touched.values()}
    for ev, taker, maker in trades:
        buy, sell = (taker, maker) if ev.taker_side == "buy" else (maker, taker)
        acct_ids.add(trader_account(trader_id=buy.trader_id, asset=base, mode=mode).pk)
        acct_ids.add(trader_account(trader_id=sell.trader_id, asset=quote, mode=mode).pk)
    if trades:
        acct_ids.add(fee_account(asset=base, mode=mode).pk)
        acct_ids.add(fee_account(asset=quote, mode=mode).pk)
    plain = _plain(run, touched, trades, reductions)
    if len(acct_ids) > 1 and not plain:  # plain: locked in the write message, first
        ledger.lock_accounts(acct_ids)

    # Holds first (new orders, amends), so every trade below settles against a hold. Several new orders
    # (a batch) get theirs in one statement.
    fresh = [] if plain else [p for p in run.hold_plans if p.release_old is None and p.order.order_id in run.new_orders]
    if len(fresh) > 1:
        accts = [_hold_account(p.order, market, mode) for p in fresh]
        try:
            holds = ledger.holds_place_new([(a, p.amount, p.reference) for a, p in zip(accts, fresh, strict=True)])
        except InsufficientFunds as exc:
            asset = next(a.asset for a in accts if a.pk == exc.account_id)
            raise ExchangeError(
                Codes.INSUFFICIENT_BALANCE,
                f"insufficient {asset} balance: available {exc.available}, required {exc.requested}",
            ) from exc
        for p, h in zip(fresh, holds, strict=True):
            p.order.hold = h
    else:
        fresh = []
    bulk = {id(p) for p in fresh}
    for plan in () if plain else run.hold_plans:
        if id(plan) in bulk:
            continue
        if plan.release_old is not None:
            ledger.hold_release(hold=plan.release_old)
        acct = _hold_account(plan.order, market, mode)
        place = ledger.hold_place_new if plan.order.order_id in run.new_orders else ledger.hold_place
        try:
            plan.order.hold = place(account=acct, amount=plan.amount, reference=plan.reference)
        except InsufficientFunds as exc:
            raise ExchangeError(
                Codes.INSUFFICIENT_BALANCE,
                f"insufficient {acct.asset} balance: available {exc.available}, required {plan.amount}",
            ) from exc

    # Final state of every touched order, from the book.
    for oid, o in touched.items():
        core = book.get_order(oid)
        if core is not None:
            o.open_quantity = _q(inst, core.qty)
            o.visible_quantity = _q(inst, core.visible_qty)
            o.book_sub_no = core.sub_no
            o.book_arrival = core.arrival
            o.book_type = core.order_type
            if core.status == "waiting_trigger":
                o.status = OrderStatus.WAITING_TRIGGER
            else:
                o.status = (
                    OrderStatus.PARTIALLY_FILLED if o.filled_quantity or _fills_of(oid, trades) else OrderStatus.OPEN
                )

    # Trades: fills on the orders (and their fees), rows, settlement.
    trade_rows: list[ExchangeTrade] = []
    settle_args = []
    for ev, taker, maker in trades:
        price, qty = inst.price(ev.price), _q(inst, ev.qty)
        notional = price * qty
        buy, sell = (taker, maker) if ev.taker_side == "buy" else (maker, taker)
        buyer_fee = fee_service.fee_on(
            amount=qty,
            bps=fee_service.fee_bps(
                market=market, trader_id=buy.trader_id, trader_tier=buy.trader.tier, mode=mode, is_maker=buy is maker
            ),
        )
        seller_fee = fee_service.fee_on(
            amount=notional,
            bps=fee_service.fee_bps(
                market=market, trader_id=sell.trader_id, trader_tier=sell.trader.tier, mode=mode, is_maker=sell is maker
            ),
        )
        for o, fee, asset in ((buy, buyer_fee, base), (sell, seller_fee, quote)):
            o.filled_quantity += qty
            o.filled_notional += notional
            o.fees_paid += fee
            o.fee_asset = asset
        trade_rows.append(
            ExchangeTrade(
                trade_id=f"{market.symbol}-{mode}-{ev.trade_no}",
                market=market,
                mode=mode,
                trade_no=ev.trade_no,
                price=price,
                quantity=qty,
                taker_side=ev.taker_side,
                taker_order=taker,
                maker_order=maker,
                taker_trader_id=taker.trader_id,
                maker_trader_id=maker.trader_id,
                taker_fee=buyer_fee if taker is buy else seller_fee,
                maker_fee=buyer_fee if maker is buy else seller_fee,
            )
        )
        settle_args.append((ev.trade_no, buy, sell, notional, qty, buyer_fee, seller_fee))
        publish.append(
            {
                "type": "trade",
                "symbol": market.symbol,
                "mode": mode,
                "trade_id": trade_rows[-1].trade_id,
                "price": price,
                "quantity": qty,
                "taker_side": ev.taker_side,
                "timestamp": None,  # filled in after insert
            }
        )

    # Done orders: final status; their holds are released after the trades settle.
    to_release: list[ExchangeOrder] = []
    for oid, o in touched.items():
        if oid in book:
            continue
        status, reason = done_reason.get(oid, (OrderStatus.FILLED, ""))
        if status == OrderStatus.CANCELLED and o.filled_quantity >= o.quantity:
            status, reason = OrderStatus.FILLED, ""
        o.status = status
        o.cancel_reason = reason
        o.open_quantity = ZERO
        o.visible_quantity = ZERO
        to_release.append(o)

    # The book's counters and a new stamp: other processes' copies are now stale.
    state = run.state
    state.sequence = book.seq
    state.trade_no = book.trade_no
    state.counter = book.counter
    state.last_price = None if book.last_price is None else inst.price(book.last_price)
    state.clock = book.clock
    state.stamp = secrets.token_hex(8)
    state_fields = ["sequence", "trade_no", "counter", "last_price", "clock", "stamp", "updated_at"]

    if plain:
        _write_plain(run, touched, to_release, acct_ids)
    else:
        # Writes, in a fixed order. The book row's update goes with the order writes: on PostgreSQL with the
        # common single order insert or update, both are one round trip.
        new_ids = set(run.new_orders)
        existing = [o for oid, o in touched.items() if oid not in new_ids]
        batch = connection.vendor == "postgresql" and len(run.new_orders) + len(existing) == 1
        if batch:
            (o,) = [*run.new_orders.values(), *existing]
            if existing:
                _write_batch([_update_sql(o, ORDER_UPDATE_FIELDS), _state_update_sql(state)])
            else:
                ((pk,),) = _write_batch([_insert_sql(o), _state_update_sql(state)])[0]
                o.pk = pk
                o._state.adding, o._state.db = False, "default"
            existing = []
        if not batch:
            if len(run.new_orders) > 1:
                ExchangeOrder.objects.bulk_create(list(run.new_orders.values()))
            else:
                for o in run.new_orders.values():
                    o.save(force_insert=True)
        if existing:
            now = timezone.now()
            for o in existing:
                o.updated_at = now
            if len(existing) == 1:
                existing[0].save(update_fields=ORDER_UPDATE_FIELDS)
            elif connection.vendor == "postgresql":
                _orders_update(existing)
            else:
                ExchangeOrder.objects.bulk_update(existing, ORDER_UPDATE_FIELDS)
        if trade_rows:
            ExchangeTrade.objects.bulk_create(trade_rows)
            created = {row.trade_id: row.created_at for row in trade_rows}
            for p in publish:
                if p["type"] == "trade":
                    p["timestamp"] = created[p["trade_id"]]
        for trade_no, buy, sell, notional, qty, buyer_fee, seller_fee in settle_args:
            ledger.trade_settle(
                idempotency_key=f"trade:{market.symbol}:{mode}:{trade_no}",
                buyer_hold=buy.hold,
                seller_hold=sell.hold,
                quote_amount=notional,
                base_qty=qty,
                buyer_base_account=trader_account(trader_id=buy.trader_id, asset=base, mode=mode),
                seller_quote_account=trader_account(trader_id=sell.trader_id, asset=quote, mode=mode),
                buyer_fee=buyer_fee,
                seller_fee=seller_fee,
                base_fee_account=fee_account(asset=base, mode=mode),
                quote_fee_account=fee_account(asset=quote, mode=mode),
                memo=f"{market.symbol} trade {trade_no}",
            )
        for o, qty in reductions:
            if o.hold_id and o.order_id in book:
                amount = qty * o.price if o.side == "buy" else qty
                h = Hold.objects.get(pk=o.hold_id)
                amount = min(amount, h.remaining)
                if amount > 0 and h.status in OPEN_HOLD_STATUSES:
                    ledger.hold_release(hold=h, amount=amount)
        releasing = [o for o in to_release if o.hold_id]
        if len(releasing) > 1:
            for o, h in zip(releasing, ledger.holds_release_rest([o.hold for o in releasing]), strict=True):
                o.hold = h
        for o in releasing if len(releasing) == 1 else ():
            o.hold = ledger.hold_release_rest(hold=o.hold)

        if not batch:
            if connection.vendor == "postgresql":
                _write_batch([_state_update_sql(state)])
            else:
                state.save(update_fields=state_fields)
    run.local.stamp = state.stamp

    touched_orders = list(touched.values())

    def after_commit() -> None:
        # Stream events that need the rows (orders, fills, balances): rendered after commit, outside the
        # lock, from the rows as committed (nothing changes them after the transaction); only for traders
        # with a private stream open (the audience: one round trip, which spares the rest the rendering,
        # the balance read and the sends).
        from exchanges.api.render import fill_json, order_json
        from exchanges.streams.publish import audience

        trader_ids = {o.trader_id for o in touched_orders}
        listening = audience(symbol=market.symbol, mode=mode, trader_ids=trader_ids)
        for o in touched_orders:
            if listening.trader(o.trader_id):
                publish.append({"type": "order", "trader_id": o.trader_id, "mode": mode, "order": order_json(o)})
        for row in trade_rows:
            for tid in {row.taker_trader_id, row.maker_trader_id}:
                if listening.trader(tid):
                    publish.append({"type": "fill", "trader_id": tid, "mode": mode, "fill": fill_json(row, tid)})
        publish.extend(_balance_events({t for t in trader_ids if listening.trader(t)}, (base, quote), mode))
        _after_commit(publish, trade_rows, mode, listening)

    return lambda: transaction.on_commit(after_commit)


ORDER_UPDATE_FIELDS = [
    "price",
    "quantity",
    "filled_quantity",
    "filled_notional",
    "open_quantity",
    "visible_quantity",
    "fees_paid",
    "fee_asset",
    "status",
    "cancel_reason",
    "hold",
    "amend_count",
    "book_type",
    "book_sub_no",
    "book_arrival",
    "updated_at",
]


def _plain(run: Run, touched: dict, trades: list, reductions: list) -> bool:
    """Whether this run only placed resting orders and cancelled or expired others (no trades, amends,
    triggers or partial reductions), with more than one order row to write: then all of its writes go to
    PostgreSQL in one message (:func:`_write_plain`)."""
    if connection.vendor != "postgresql" or trades or reductions:
        return False
    if len(run.hold_plans) != len(run.new_orders):
        return False
    if any(p.release_old is not None or p.order.order_id not in run.new_orders for p in run.hold_plans):
        return False
    if any(oid not in run.book for oid in run.new_orders):
        return False
    if any(type(ev) in (Amended, Triggered) for ev in run.events):
        return False
    return len(touched) > 1


def _write_plain(run: Run, touched: dict, to_release: list, acct_ids: set) -> None:
    """The writes of a plain run (:func:`_plain`) as one multi-statement round trip, in the ledger's lock
    order: lock the accounts (ascending), raise ``held`` and insert the new holds (only if every account
    covers its new holds), insert the new orders and point them at their holds, update the done orders,
    release their holds, update the book's row. Any shortfall raises (the transaction rolls back; a batch
    then runs its commands one by one, where the shortfall is refused with ``insufficient_balance``)."""
    now = timezone.now()
    acct = LedgerAccount._meta.db_table
    statements: list[tuple[str, list, int | None]] = []
    if len(acct_ids) > 1:
        statements.append(
            (f"SELECT id FROM {acct} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [sorted(acct_ids)], len(acct_ids))
        )
    new = list(run.new_orders.values())
    plans = {p.order.order_id: p for p in run.hold_plans}
    fetch: set[int] = set()  # indexes of the statements whose rows are read
    if new:
        accounts = [_hold_account(o, run.market, run.mode).pk for o in new]
        refs = [plans[o.order_id].reference for o in new]
        amounts = [plans[o.order_id].amount for o in new]
        holds_at = len(statements)
        fetch |= {holds_at, holds_at + 1}
        statements.append((*ledger.holds_place_new_sql(list(zip(accounts, amounts, refs, strict=True)), now), len(new)))
        statements.append(_insert_orders_sql(new, accounts, refs))
    existing = [o for oid, o in touched.items() if oid not in run.new_orders]
    if existing:
        for o in existing:
            o.updated_at = now
        statements.append((*_orders_update_sql(existing), len(existing)))
    releasing = sorted({o.hold_id for o in to_release if o.hold_id})
    if releasing:
        released_at = len(statements)  # the accounts' update (RETURNING id, held); the holds' rows are not read
        fetch.add(released_at)
        statements += [(sql, params, None) for sql, params in ledger.holds_release_rest_sql(releasing, now)]
    statements.append(_state_update_sql(run.state))
    results = _write_batch(statements, fetch)
    if new:
        hold_ids = {ref: pk for pk, ref in results[holds_at]}
        order_ids = dict((oid, pk) for pk, oid in results[holds_at + 1])
        for o in new:
            o.pk = order_ids[o.order_id]
            o._state.adding, o._state.db = False, "default"
            o.hold_id = hold_ids[plans[o.order_id].reference]
    if releasing and any(held < 0 for _, held in results[released_at]):
        raise DatabaseError("releasing holds: an account's held would go negative")


_ORDER_INSERT: tuple[str, list] | None = None


def _insert_orders_sql(orders: list[ExchangeOrder], accounts: list[int], refs: list[str]) -> tuple[str, list, int]:
    """``INSERT`` the new ``orders`` (as ``bulk_create`` would fill them in: ``auto_now`` fields set on the
    objects) with each one's ``hold_id`` taken from its hold (``accounts[i]``, ``refs[i]``) inserted earlier
    in the same message, so the row is written once. ``RETURNING id, order_id``. An order whose hold is
    missing is not inserted (the expected row count then fails the message)."""
    global _ORDER_INSERT
    if _ORDER_INSERT is None:
        meta = ExchangeOrder._meta
        fields = [
            f
            for f in meta.local_concrete_fields
            if f is not meta.auto_field and not f.generated and f.attname != "hold_id"
        ]
        cols = [connection.ops.quote_name(f.column) for f in fields]
        arrays = [f"%s::{f.db_type(connection)}[]" for f in fields]
        table, hold_t = meta.db_table, Hold._meta.db_table
        names = ", ".join(cols)
        sql = (
            f"INSERT INTO {table} ({names}, hold_id) SELECT {', '.join('v.' + c for c in cols)}, h.id "
            f"FROM unnest({', '.join(arrays)}, %s::bigint[], %s::varchar[]) AS v({names}, _account, _reference) "
            f"JOIN {hold_t} AS h ON h.account_id = v._account AND h.reference = v._reference "
            f"RETURNING {table}.id, {table}.order_id"
        )
        # Fields whose value goes to the driver as it is on the object (strings, numbers, Decimals, times:
        # the types psycopg adapts); the others through the field's own preparation, as Django does.
        plain = (models.CharField, models.DecimalField, models.IntegerField, models.DateTimeField, models.ForeignKey)
        _ORDER_INSERT = (sql, [(f, isinstance(f, plain)) for f in fields])
    sql, fields = _ORDER_INSERT
    now = timezone.now()
    params = []
    for f, plain in fields:
        if isinstance(f, models.DateTimeField) and (f.auto_now or f.auto_now_add):
            for o in orders:
                setattr(o, f.attname, now)
            params.append([now] * len(orders))
        elif plain:
            params.append([getattr(o, f.attname) for o in orders])
        else:
            params.append([f.get_db_prep_save(f.pre_save(o, True), connection) for o in orders])
    return sql, [*params, accounts, refs], len(orders)


_ORDER_UPDATE: tuple[str, list[str]] | None = None


def _orders_update_sql(orders: list[ExchangeOrder]) -> tuple[str, list]:
    """The ``UPDATE … FROM unnest(…)`` of ``orders``' ``ORDER_UPDATE_FIELDS`` (columns and array types from
    the model's fields, built once)."""
    global _ORDER_UPDATE
    if _ORDER_UPDATE is None:
        meta = ExchangeOrder._meta
        fields = [meta.get_field(name) for name in ORDER_UPDATE_FIELDS]
        cols = [connection.ops.quote_name(f.column) for f in fields]
        arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
        sets = ", ".join(f"{c} = v.{c}" for c in cols)
        sql = (
            f"UPDATE {meta.db_table} AS o SET {sets} FROM unnest(%s::bigint[], {arrays}) "
            f"AS v(id, {', '.join(cols)}) WHERE o.id = v.id"
        )
        _ORDER_UPDATE = (sql, [f.attname for f in fields])
    sql, attnames = _ORDER_UPDATE
    return sql, [[o.pk for o in orders], *([getattr(o, a) for o in orders] for a in attnames)]


def _orders_update(orders: list[ExchangeOrder]) -> None:
    """``bulk_update(orders, ORDER_UPDATE_FIELDS)`` as one ``UPDATE … FROM unnest(…)`` statement (Django's
    ``CASE WHEN`` form costs ~1 ms of Python per order). Every row must be updated (else it raises)."""
    _write_batch([(*_orders_update_sql(orders), len(orders))])


def _insert_sql(obj: Any) -> tuple[str, list, int | None]:
    """The ``INSERT … RETURNING id`` that ``obj.save(force_insert=True)`` would run (auto fields filled
    in on ``obj``, as ``save`` does)."""
    from django.db.models.sql import InsertQuery

    meta = type(obj)._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field and not f.generated]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    compiler = query.get_compiler("default")
    compiler.returning_fields = [meta.pk]
    ((sql, params),) = compiler.as_sql()
    return sql, list(params), 1


def _state_update_sql(state: BookState) -> tuple[str, list, int]:
    """``_update_sql(state, [sequence, trade_no, counter, last_price, clock, stamp, updated_at])``, written
    out (it runs with every command; the ORM's compiler costs more than the statement)."""
    state.updated_at = timezone.now()
    return (
        f"UPDATE {BookState._meta.db_table} SET sequence = %s, trade_no = %s, counter = %s, last_price = %s, "
        f"clock = %s, stamp = %s, updated_at = %s WHERE id = %s",
        [
            state.sequence,
            state.trade_no,
            state.counter,
            state.last_price,
            state.clock,
            state.stamp,
            state.updated_at,
            state.pk,
        ],
        1,
    )


def _update_sql(obj: Any, names: list[str]) -> tuple[str, list, int | None]:
    """The ``UPDATE`` that ``obj.save(update_fields=names)`` would run (``auto_now`` fields set on ``obj``)."""
    from django.db.models.sql import UpdateQuery

    model = type(obj)
    fields = [model._meta.get_field(n) for n in names]
    query = UpdateQuery(model)
    query.add_update_fields([(f, None, f.pre_save(obj, False)) for f in fields])
    query.add_filter("pk", obj.pk)
    sql, params = query.get_compiler("default").as_sql()
    return sql, list(params), 1


def _write_batch(
    statements: list[tuple[str, list, int | None]], fetch: Container[int] | None = None
) -> list[list[tuple]]:
    """Run ``(sql, params, expected row count)`` statements in order in one round trip (PostgreSQL: one
    simple-query message; they run inside the caller's transaction). Returns each one's rows (only those
    of the statements whose index is in ``fetch``, when given; ``[]`` for the others); a statement that
    does not touch its expected number of rows raises (the caller's transaction rolls back)."""
    out: list[list[tuple]] = []
    with connection.cursor() as cur:
        cur.execute("; ".join(sql for sql, _, _ in statements), [p for _, params, _ in statements for p in params])
        # The driver's cursor for the results: psycopg has them all once ``execute`` returns (an error is
        # raised there, through Django's wrapper); Django's per-call wrapping of ``nextset``/``fetchall``
        # costs more than reading them.
        raw = cur.cursor
        for i, (sql, _, expected) in enumerate(statements):
            if i:
                raw.nextset()
            if expected is not None and raw.rowcount != expected:
                raise DatabaseError(f"{sql[:60]}…: {raw.rowcount} rows, expected {expected}")
            wanted = fetch is None or i in fetch
            result = raw.pgresult
            out.append(raw.fetchall() if wanted and result is not None and result.nfields else [])
    return out


def _balance_events(trader_ids: set[int], assets: tuple[str, str], mode: str) -> list[dict]:
    """Balance events of the touched traders, read after commit (the latest balance, outside the lock)."""
    if not trader_ids:
        return []
    if connection.vendor != "postgresql":
        rows = LedgerAccount.objects.filter(
            owner_type=OwnerType.TRADER, owner_id__in=[str(t) for t in trader_ids], asset__in=list(assets), mode=mode
        ).values_list("owner_id", "asset", "balance", "held")
        return [_balance_event(mode, *r) for r in rows]
    # One plain statement (this runs after every command): the same rows as the ORM query above.
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT owner_id, asset, balance, held FROM {LedgerAccount._meta.db_table} "
            f"WHERE owner_type = %s AND mode = %s AND owner_id IN ({', '.join(['%s'] * len(trader_ids))}) "
            f"AND asset IN ({', '.join(['%s'] * len(assets))})",
            [OwnerType.TRADER, mode, *[str(t) for t in trader_ids], *[a.upper() for a in assets]],
        )
        rows = cur.fetchall()
    return [_balance_event(mode, *r) for r in rows]


def _balance_event(mode: str, owner_id: str, asset: str, balance: Decimal, held: Decimal) -> dict:
    return {
        "type": "balance",
        "trader_id": int(owner_id),
        "mode": mode,
        "asset": asset,
        "available": balance - held,
        "locked": held,
    }


def _fills_of(order_id: str, trades: list) -> bool:
    return any(taker.order_id == order_id or maker.order_id == order_id for _, taker, maker in trades)


def _hold_account(order: ExchangeOrder, market: Market, mode: str) -> LedgerAccount:
    asset = market.quote_asset if order.side == "buy" else market.base_asset
    return trader_account(trader_id=order.trader_id, asset=asset, mode=mode)


def _after_commit(publish: list[dict], trades: list[ExchangeTrade], mode: str, listening=None) -> None:
    from exchanges.streams.publish import publish as stream_publish

    try:
        stream_publish(publish, listening)
    except Exception:  # a stream failure never undoes a committed trade; log it loudly
        log.exception("exchange stream publish failed (%d events)", len(publish))
    if trades:
        for receiver, response in signals.trades_committed.send_robust(sender=ExchangeTrade, trades=trades, mode=mode):
            if isinstance(response, Exception):
                log.error("trades_committed receiver %r failed: %r", receiver, response, exc_info=response)


def refuse(events: list, *, op: str = "submit") -> None:
    """Raise the API error for a book rejection (``events == [Rejected]``); nothing changed."""
    if len(events) == 1 and isinstance(events[0], Rejected):
        reason = events[0].reason
        code = REJECT_CODES.get(reason, Codes.INVALID_PARAMETER)
        status = 404 if code == Codes.UNKNOWN_ORDER else 400
        raise ExchangeError(code, REJECT_MESSAGES.get(reason, reason.replace("_", " ")), status=status)


def process_caches_clear(**kwargs) -> None:
    """Forget everything this process remembers of the database (books, book rows, account ids, markets,
    fee tiers, API keys). Runs on ``post_migrate``, which also follows the flush between transactional
    tests, so ids remembered from a flushed database are never reused."""
    from exchanges.api.authentication import api_key_cache_clear

    from . import fees, orders

    local_books_clear()
    accounts_cache_clear()
    orders.markets_cache_clear()
    fees.tiers_reset()
    api_key_cache_clear()


post_migrate.connect(process_caches_clear, dispatch_uid="exchanges.matching.process_caches_clear")
