"""Orders on the house exchange: place, cancel, cancel all, amend, kill switch, expiry sweep.

The contract other work builds on (TWAP, scale, dead-man's switch, the brokerage): keyword-only
functions that validate everything first and raise :class:`~exchanges.errors.ExchangeError` before
anything is written, then run one command on the (market, mode) book through
:func:`exchanges.services.matching.run_on_book` (one transaction, one writer per book).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, connection

from exchanges.book import OrderType as BookOrderType
from exchanges.book import StpMode
from exchanges.errors import Codes, ExchangeError
from exchanges.ledger.choices import Mode
from exchanges.models import (
    LIVE_STATUSES,
    ExchangeOrder,
    Market,
    MarketKind,
    MarketStatus,
    OrderStatus,
    Trader,
)

from .matching import Later, Run, _HoldPlan, available, now_us, refuse, run_on_book, trader_account

ZERO = Decimal("0")
SIDES = ("buy", "sell")
ORDER_TYPES = tuple(sorted(BookOrderType.ALL))
#: The SDK's spellings of STP modes, mapped onto the book's.
STP_ALIASES = {"cancel_taker": StpMode.CANCEL_INCOMING, "cancel_maker": StpMode.CANCEL_RESTING}
OPTIONS = {"stop_price", "display_qty", "expire_at", "time_in_force_ms", "stp_mode", "client_order_id"}
MAX_DIGITS = 22  # integer digits a price or quantity may have (NUMERIC(30, 8))


# --- parsing and validation (pure, before any lock) ------------------------------------------------------


#: Markets are read on every request; each process keeps them this long (a console change to a
#: market, e.g. a halt, reaches every process within this time).
MARKET_CACHE_SECONDS = 2.0
_MARKETS: dict[str, tuple[float, Market | None]] = {}


def markets_cache_clear() -> None:
    _MARKETS.clear()


def market_get(*, symbol: Any) -> Market:
    """The market of ``symbol`` (any case); 404 ``invalid_symbol`` when there is none."""
    if not isinstance(symbol, str) or not symbol or len(symbol) > 32:
        raise ExchangeError(Codes.INVALID_SYMBOL, f"unknown symbol {symbol!r}", status=404, parameter="symbol")
    key = symbol.lower()
    now = time.monotonic()
    hit = _MARKETS.get(key)
    if hit is not None and hit[0] > now:
        market = hit[1]
    else:
        market = Market.objects.filter(symbol=key).first()
        if not connection.in_atomic_block:
            _MARKETS[key] = (now + MARKET_CACHE_SECONDS, market)
    if market is None or market.status == MarketStatus.CLOSED:
        raise ExchangeError(Codes.INVALID_SYMBOL, f"unknown symbol {symbol!r}", status=404, parameter="symbol")
    return market


def mode_check(mode: Any) -> str:
    if mode not in Mode.values:
        raise ExchangeError(Codes.INVALID_MODE, f"mode must be live or paper, got {mode!r}", parameter="mode")
    return mode


def decimal_param(value: Any, *, name: str, code: str, allow_zero: bool = False) -> Decimal:
    """``value`` (a string, an int or a Decimal; never a float) as a finite positive Decimal."""
    if isinstance(value, bool) or isinstance(value, float) or value is None:
        raise ExchangeError(code, f'{name} must be a decimal string, e.g. "100"', parameter=name)
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int | str):
        try:
            d = Decimal(str(value).strip())
        except (InvalidOperation, ValueError):
            raise ExchangeError(code, f"{name} is not a number: {value!r}", parameter=name) from None
    else:
        raise ExchangeError(code, f"{name} must be a decimal string", parameter=name)
    if not d.is_finite():
        raise ExchangeError(code, f"{name} must be finite", parameter=name)
    if d < 0 or (d == 0 and not allow_zero):
        raise ExchangeError(code, f"{name} must be positive, got {d}", parameter=name)
    if d.adjusted() >= MAX_DIGITS:
        raise ExchangeError(code, f"{name} is too large", parameter=name)
    return d


def quantity_check(market: Market, value: Any, *, name: str = "quantity") -> Decimal:
    q = decimal_param(value, name=name, code=Codes.INVALID_QUANTITY)
    if q % market.lot_size != 0:
        raise ExchangeError(
            Codes.QUANTITY_OFF_LOT,
            f"{name} {q} is not a multiple of the lot size {_s(market.lot_size)}",
            parameter=name,
        )
    if name == "quantity" and q < market.min_order_size:
        raise ExchangeError(
            Codes.BELOW_MIN_SIZE,
            f"quantity {q} is below the minimum order size {_s(market.min_order_size)}",
            parameter=name,
        )
    return q


def price_check(market: Market, value: Any, *, name: str = "price") -> Decimal:
    code = Codes.INVALID_STOP_PRICE if name == "stop_price" else Codes.INVALID_PRICE
    p = decimal_param(value, name=name, code=code)
    if p % market.tick_size != 0:
        raise ExchangeError(
            Codes.PRICE_OFF_TICK,
            f"{name} {p} is not a multiple of the tick size {_s(market.tick_size)}",
            parameter=name,
        )
    if (market.min_price is not None and p < market.min_price) or (
        market.max_price is not None and p > market.max_price
    ):
        raise ExchangeError(
            Codes.PRICE_OUT_OF_RANGE,
            f"{name} {p} is outside {_s(market.min_price)} .. {_s(market.max_price)}",
            parameter=name,
        )
    return p


def _s(d: Decimal | None) -> str:
    return "" if d is None else format(d.normalize(), "f")


def _int_param(value: Any, *, name: str, code: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ExchangeError(code, f"{name} must be an integer", parameter=name)
    try:
        n = int(value)
    except ValueError:
        raise ExchangeError(code, f"{name} must be an integer, got {value!r}", parameter=name) from None
    if n <= 0 or n > 2**62:
        raise ExchangeError(code, f"{name} must be a positive integer", parameter=name)
    return n


def _funds_check(account, asset: str, need: Decimal) -> None:
    have = available(account)
    if have < need:
        raise insufficient(asset, have, need)


def _new_order_id() -> str:
    return "ord_" + secrets.token_hex(8)


def market_for_orders(symbol: Any) -> Market:
    """The market of ``symbol`` if it takes new orders (orders, TWAPs, scale ladders); 409 when not."""
    market = market_get(symbol=symbol)
    if market.status != MarketStatus.ACTIVE:
        raise ExchangeError(
            Codes.MARKET_NOT_ACTIVE, f"market {market.symbol} is {market.status}: no new orders", status=409
        )
    return market


def side_check(side: Any) -> str:
    """``buy`` or ``sell``; 400 ``invalid_side`` otherwise."""
    if not isinstance(side, str) or side not in SIDES:
        raise ExchangeError(Codes.INVALID_SIDE, f"side must be buy or sell, got {side!r}", parameter="side")
    return side


# --- place ---------------------------------------------------------------------------------------------------


@dataclass
class PlaceSpec:
    """A validated order, ready for its book (:func:`place_prepare`)."""

    trader: Trader
    market: Market
    mode: str
    side: str
    type: str
    qty: Decimal
    limit: Decimal | None
    stop: Decimal | None
    display: Decimal | None
    expire_at: int | None
    stp: str
    client_order_id: str
    order_id: str
    hold_account: Any
    hold_asset: str
    #: what the hold will be, when known before matching (None: a market buy, known from the book)
    known_need: Decimal | None


def place_prepare(
    *,
    trader: Trader,
    symbol: str,
    side: str,
    type: str,  # noqa: A002 - the contract's name
    quantity: Decimal,
    price: Decimal | None = None,
    mode: str = "live",
    **options: Any,
) -> PlaceSpec:
    """Validate an order (everything but the ``client_order_id`` uniqueness and funds checks, which need
    the database: :func:`order_place` does them, and the order gateway does them for a batch at once).
    Raises :class:`ExchangeError`; writes nothing (the trader's accounts are created if absent)."""
    unknown = set(options) - OPTIONS
    if unknown:
        name = sorted(unknown)[0]
        raise ExchangeError(Codes.INVALID_PARAMETER, f"unknown parameter {name!r}", parameter=name)
    mode = mode_check(mode)
    market = market_for_orders(symbol)
    side_check(side)
    if not isinstance(type, str) or type not in BookOrderType.ALL:
        raise ExchangeError(
            Codes.INVALID_ORDER_TYPE,
            f"order_type must be one of {', '.join(ORDER_TYPES)}, got {type!r}",
            parameter="order_type",
        )
    qty = quantity_check(market, quantity)
    needs_price = type in BookOrderType.NEEDS_PRICE
    limit = price_check(market, price) if needs_price else None
    if needs_price and price is None:
        raise ExchangeError(Codes.INVALID_PRICE, f"price is required for {type} orders", parameter="price")
    stop = None
    if type in BookOrderType.STOPS:
        if options.get("stop_price") in (None, ""):
            raise ExchangeError(Codes.INVALID_STOP_PRICE, f"stop_price is required for {type}", parameter="stop_price")
        stop = price_check(market, options["stop_price"], name="stop_price")
    elif options.get("stop_price") not in (None, "", "0"):
        raise ExchangeError(
            Codes.INVALID_STOP_PRICE, "stop_price is only for stop_limit and stop_market", parameter="stop_price"
        )
    display = None
    if options.get("display_qty") not in (None, ""):
        if type not in BookOrderType.MAY_BE_ICEBERG:
            raise ExchangeError(
                Codes.INVALID_DISPLAY_QTY,
                "display_qty is only for limit, post_only and stop_limit",
                parameter="display_qty",
            )
        display = quantity_check(market, options["display_qty"], name="display_qty")
        if display > qty:
            raise ExchangeError(Codes.INVALID_DISPLAY_QTY, "display_qty exceeds quantity", parameter="display_qty")
    expire_at = None
    if options.get("expire_at") not in (None, ""):
        expire_at = _int_param(options["expire_at"], name="expire_at", code=Codes.INVALID_EXPIRE_AT)
    elif options.get("time_in_force_ms") not in (None, ""):
        ms = _int_param(options["time_in_force_ms"], name="time_in_force_ms", code=Codes.INVALID_EXPIRE_AT)
        expire_at = now_us() + ms * 1000
    if expire_at is not None:
        if type not in BookOrderType.MAY_EXPIRE:
            raise ExchangeError(
                Codes.INVALID_EXPIRE_AT, f"good-till-time is not for {type} orders", parameter="expire_at"
            )
        if expire_at <= now_us():
            raise ExchangeError(Codes.ALREADY_EXPIRED, "expire_at is in the past", parameter="expire_at")
    stp = options.get("stp_mode")
    stp = StpMode.CANCEL_RESTING if stp in (None, "") else stp
    if isinstance(stp, str):
        stp = STP_ALIASES.get(stp, stp)
    if not isinstance(stp, str) or stp not in StpMode.ALL:
        raise ExchangeError(
            Codes.INVALID_STP_MODE, f"unknown stp_mode {options.get('stp_mode')!r}", parameter="stp_mode"
        )
    client_order_id = options.get("client_order_id")
    client_order_id = "" if client_order_id is None else client_order_id
    if not isinstance(client_order_id, str) or len(client_order_id) > 64:
        raise ExchangeError(Codes.INVALID_PARAMETER, "client_order_id must be a string of at most 64 characters")
    if type == "stop_market" and side == "buy" and market.max_price is None:
        raise ExchangeError(
            Codes.UNSUPPORTED_ORDER_TYPE,
            "stop_market buys need a price cap to hold funds against; use stop_limit on this market",
            parameter="order_type",
        )

    order_id = _new_order_id()
    hold_asset = market.quote_asset if side == "buy" else market.base_asset
    hold_account = trader_account(trader_id=trader.pk, asset=hold_asset, mode=mode)
    for asset in (market.base_asset, market.quote_asset):  # exist (committed) before the book is locked
        trader_account(trader_id=trader.pk, asset=asset, mode=mode)

    # The funds check: before the book is locked when the amount is known now (a non-locking read;
    # the hold itself is placed under the account lock after matching, which has the last word).
    if side == "sell":
        known_need = qty
    elif limit is not None:
        known_need = qty * limit
    elif type == "stop_market":
        known_need = qty * market.max_price
    else:
        known_need = None  # a market buy: known only from the book
    return PlaceSpec(
        trader=trader,
        market=market,
        mode=mode,
        side=side,
        type=type,
        qty=qty,
        limit=limit,
        stop=stop,
        display=display,
        expire_at=expire_at,
        stp=stp,
        client_order_id=client_order_id,
        order_id=order_id,
        hold_account=hold_account,
        hold_asset=hold_asset,
        known_need=known_need,
    )


def client_order_ids_used(specs: list[PlaceSpec]) -> dict[int, ExchangeError]:
    """The refusals for ``client_order_id`` reuse among ``specs`` (by index), in one query: an id the
    trader used before, or one used earlier in ``specs``."""
    wanted = [(i, sp) for i, sp in enumerate(specs) if sp.client_order_id]
    if not wanted:
        return {}
    used = set(
        ExchangeOrder.objects.filter(
            trader_id__in={sp.trader.pk for _, sp in wanted},
            client_order_id__in={sp.client_order_id for _, sp in wanted},
        ).values_list("trader_id", "client_order_id")
    )
    refused = {}
    for i, sp in wanted:
        key = (sp.trader.pk, sp.client_order_id)
        if key in used:
            refused[i] = duplicate_client_order_id(sp.client_order_id)
        used.add(key)
    return refused


def place_error(spec: PlaceSpec, exc: Exception) -> Exception:
    """The API's answer for a database error of a placement: a ``client_order_id`` taken meanwhile is a
    409, anything else stays what it is."""
    if isinstance(exc, IntegrityError) and spec.client_order_id and "client_order_id" in str(exc):
        return duplicate_client_order_id(spec.client_order_id)
    return exc


def unknown_order(order_id: Any) -> ExchangeError:
    return ExchangeError(Codes.UNKNOWN_ORDER, f"unknown order {order_id!r}", status=404, parameter="order_id")


def duplicate_client_order_id(client_order_id: str) -> ExchangeError:
    return ExchangeError(
        Codes.DUPLICATE_CLIENT_ORDER_ID, f"client_order_id {client_order_id!r} was already used", status=409
    )


def insufficient(asset: str, have: Decimal, need: Decimal) -> ExchangeError:
    return ExchangeError(
        Codes.INSUFFICIENT_BALANCE, f"insufficient {asset} balance: available {_s(have)}, required {_s(need)}"
    )


def order_place(
    *,
    trader: Trader,
    symbol: str,
    side: str,
    type: str,  # noqa: A002 - the contract's name
    quantity: Decimal,
    price: Decimal | None = None,
    mode: str = "live",
    **options: Any,
) -> ExchangeOrder:
    """Place an order; returns the order row as it stands after matching.

    ``options``: ``stop_price``, ``display_qty`` (iceberg), ``expire_at`` (epoch microseconds) or
    ``time_in_force_ms``, ``stp_mode``, ``client_order_id``. The hold (quote for buys, base for sells)
    is placed in the same transaction as the order; ``insufficient_balance`` refuses it.
    """
    spec = place_prepare(
        trader=trader, symbol=symbol, side=side, type=type, quantity=quantity, price=price, mode=mode, **options
    )
    refused = client_order_ids_used([spec])
    if refused:
        raise refused[0]
    if spec.known_need is not None:
        _funds_check(spec.hold_account, spec.hold_asset, spec.known_need)
    try:
        return run_on_book(market=spec.market, mode=spec.mode, command=place_command(spec))
    except IntegrityError as exc:
        answer = place_error(spec, exc)
        if answer is exc:
            raise
        raise answer from exc


def place_command(spec: PlaceSpec) -> Callable[[Run], ExchangeOrder]:
    """The book command that places ``spec`` (for :func:`~exchanges.services.matching.run_on_book` or
    ``run_batch``): refuses (nothing changed) or submits it, and plans its order row and hold."""
    trader, market, mode, side, type = spec.trader, spec.market, spec.mode, spec.side, spec.type
    qty, limit, stop, display, expire_at, stp = spec.qty, spec.limit, spec.stop, spec.display, spec.expire_at, spec.stp
    order_id, client_order_id, known_need = spec.order_id, spec.client_order_id, spec.known_need
    hold_account, hold_asset = spec.hold_account, spec.hold_asset

    def command(run: Run) -> ExchangeOrder:
        inst = run.instrument
        need = known_need
        if need is None:
            asks = run.book.depth().asks
            if not asks:
                refuse(run.book.submit(order_id, trader.pk, side, type, inst.to_lots(qty)))
            need = qty * inst.price(asks[-1][0])  # every fill is at a resting ask price, at most the highest
            if run.available is None:
                _funds_check(hold_account, hold_asset, need)
        if run.available is not None:  # a batch: balances read under the lock, shared by its orders
            have = run.available.get(hold_account.pk, ZERO)
            if have < need:
                raise insufficient(hold_asset, have, need)
        events = inst.submit(
            run.book,
            order_id=order_id,
            owner=trader.pk,
            side=side,
            order_type=type,
            quantity=qty,
            price=limit,
            stop_price=stop,
            display_qty=display,
            expire_at=expire_at,
            stp=stp,
        )
        refuse(events)
        order = ExchangeOrder(
            order_id=order_id,
            client_order_id=client_order_id,
            trader=trader,
            market=market,
            mode=mode,
            side=side,
            order_type=type,
            book_type=type,
            price=limit,
            stop_price=stop,
            quantity=qty,
            open_quantity=qty,
            display_qty=display,
            stp_mode=stp,
            expire_at=expire_at,
            status=OrderStatus.OPEN,
        )
        run.new_orders[order_id] = order
        run.hold_plans.append(_HoldPlan(order=order, amount=need, reference=f"order:{order_id}"))
        if run.available is not None:
            run.available[hold_account.pk] = have - need
        run.apply(events)
        return order

    return command


def orders_place_batch(*, specs: list[PlaceSpec]) -> list[ExchangeOrder | ExchangeError]:
    """Several validated orders (``place_prepare``) placed as one transaction per book (``run_batch``):
    each gets its own answer, as if placed alone (a refusal does not stop the others), in order.
    ``client_order_id`` reuse is checked for all of them in one query (a second use within the batch is
    refused too) and funds against balances read under the book lock, each order counting what the
    earlier ones hold."""
    from .matching import run_batch

    out: list[ExchangeOrder | ExchangeError | None] = [None] * len(specs)
    for i, refusal in client_order_ids_used(specs).items():
        out[i] = refusal
    books: dict[tuple[int, str], list[int]] = {}
    for i, sp in enumerate(specs):
        if out[i] is None:
            books.setdefault((sp.market.pk, sp.mode), []).append(i)
    for indexes in books.values():
        group = [specs[i] for i in indexes]
        results = run_batch(
            market=group[0].market,
            mode=group[0].mode,
            commands=[place_command(sp) for sp in group],
            accounts={sp.hold_account.pk for sp in group},
        )
        for i, sp, result in zip(indexes, group, results, strict=True):
            if isinstance(result, Exception):
                result = place_error(sp, result)
                if not isinstance(result, ExchangeError):
                    raise result
            out[i] = result
    return out  # type: ignore[return-value]


def orders_cancel_batch(
    *, trader: Trader, order_ids: list[str], market: Market, mode: str | None = None
) -> list[ExchangeOrder | ExchangeError]:
    """Cancel several of ``trader``'s orders on ``market`` (``mode``: only that mode's), one transaction
    per book: each gets its own answer as ``order_cancel`` would give it (404 ``unknown_order`` for an
    order of another trader, pair or mode, 409 ``order_not_open`` for one already done)."""
    from .matching import run_batch

    if mode is not None:
        mode = mode_check(mode)
    out: list[ExchangeOrder | ExchangeError | None] = [None] * len(order_ids)
    valid = {oid for oid in order_ids if isinstance(oid, str) and oid and len(oid) <= 40}
    rows = {
        oid: (m, md, st)
        for oid, m, md, st in ExchangeOrder.objects.for_trader(trader)
        .filter(order_id__in=valid)
        .values_list("order_id", "market_id", "mode", "status")
    }
    books: dict[str, list[int]] = {}
    for i, oid in enumerate(order_ids):
        row = rows.get(oid)
        out[i] = cancel_refusal(oid, row, market_id=market.pk, mode=mode)
        if out[i] is None:
            books.setdefault(row[1], []).append(i)
    for book_mode, indexes in books.items():
        ids = [order_ids[i] for i in indexes]
        results = run_batch(
            market=market,
            mode=book_mode,
            commands=[cancel_command(oid) for oid in ids],
            preload_orders=[[oid] for oid in ids],
        )
        for i, result in zip(indexes, results, strict=True):
            if isinstance(result, Exception) and not isinstance(result, ExchangeError):
                raise result
            out[i] = result
    return out  # type: ignore[return-value]


# --- cancel, cancel all, kill switch ---------------------------------------------------------------------


def cancel_refusal(
    order_id: Any, row: tuple[int, str, str] | None, *, market_id: int | None = None, mode: str | None = None
) -> ExchangeError | None:
    """Why ``order_id`` cannot be cancelled, from its row ``(market_id, mode, status)`` (``None``: no order
    of the caller's), or ``None`` when it can: 404 ``unknown_order`` for none, another pair (``market_id``)
    or another mode (``mode``; ``None``: either), 409 ``order_not_open`` for one already done. The one rule
    of ``order_cancel``, batch cancel and the order gateway."""
    if row is None or (market_id is not None and row[0] != market_id) or (mode is not None and row[1] != mode):
        return unknown_order(order_id)
    if row[2] not in LIVE_STATUSES:
        return ExchangeError(Codes.ORDER_NOT_OPEN, f"order {order_id} is {row[2]}", status=409)
    return None


def _order_for(trader: Trader, order_id: Any, mode: str | None) -> ExchangeOrder:
    if not isinstance(order_id, str) or not order_id or len(order_id) > 40:
        raise unknown_order(order_id)
    qs = ExchangeOrder.objects.for_trader(trader).select_related("market").filter(order_id=order_id)
    if mode is not None:
        qs = qs.filter(mode=mode)
    order = qs.first()
    if order is None:
        raise unknown_order(order_id)
    return order


def order_cancel(
    *, trader: Trader, order_id: str, mode: str | None = "live", symbol: str | None = None
) -> ExchangeOrder:
    """Cancel one live order of ``trader``; its hold is released. 404 ``unknown_order`` for an order of
    another trader, another mode (``mode=None``: either) or another pair (``symbol``), 409
    ``order_not_open`` for an order already done."""
    if mode is not None:
        mode = mode_check(mode)
    # Before the lock only what picks the book and refuses early (market, mode, status); the row itself
    # is read under the lock (preload).
    if not isinstance(order_id, str) or not order_id or len(order_id) > 40:
        raise unknown_order(order_id)
    qs = ExchangeOrder.objects.for_trader(trader).filter(order_id=order_id)
    if mode is not None:
        qs = qs.filter(mode=mode)
    row = qs.values_list("market_id", "mode", "status").first()
    if row is None:
        raise unknown_order(order_id)
    market = _market_by_id(row[0], symbol)
    if symbol is not None and market.symbol != symbol.lower():
        raise unknown_order(order_id)
    refusal = cancel_refusal(order_id, row)
    if refusal is not None:
        raise refusal
    mode = row[1]

    return run_on_book(market=market, mode=mode, command=cancel_command(order_id), preload_orders=[order_id])


def cancel_command(order_id: str) -> Callable[[Run], Any]:
    """The book command that cancels ``order_id`` (its row preloaded under the lock); 409
    ``order_not_open`` when the book no longer has it. Returns the order row as persisted."""

    def command(run: Run):
        events = run.book.cancel(order_id)
        if len(events) == 1 and events[0].type == "rejected":
            raise ExchangeError(Codes.ORDER_NOT_OPEN, f"order {order_id} is no longer open", status=409)
        run.apply(events)
        return Later(lambda: run.orders[order_id])

    return command


def _market_by_id(market_id: int, symbol: str | None) -> Market:
    """The market ``market_id``: the per-process cached one when the request named it by ``symbol``
    (as a placement uses), else read."""
    if isinstance(symbol, str):
        try:
            market = market_get(symbol=symbol)
        except ExchangeError:
            market = None
        if market is not None and market.pk == market_id:
            return market
    return Market.objects.get(pk=market_id)


def orders_cancel_all(
    *, trader: Trader, symbol: str | None = None, mode: str = "live", side: str | None = None
) -> list[ExchangeOrder]:
    """Cancel every live order of ``trader`` (on ``symbol``, or on every market; of ``side`` if given).
    One transaction per market. Returns the cancelled orders."""
    mode = mode_check(mode)
    if side is not None and side not in SIDES:
        raise ExchangeError(Codes.INVALID_SIDE, f"side must be buy or sell, got {side!r}", parameter="side")
    qs = ExchangeOrder.objects.for_trader(trader).live().filter(mode=mode)
    if symbol is not None:
        qs = qs.filter(market=market_get(symbol=symbol))
    market_ids = sorted(set(qs.values_list("market_id", flat=True)))
    cancelled: list[ExchangeOrder] = []
    for market in Market.objects.filter(pk__in=market_ids).order_by("pk"):

        def command(run: Run):
            for view in run.book.open_orders(owner=trader.pk):
                if side is None or view.side == side:
                    run.apply(run.book.cancel(view.order_id))
            return Later(lambda: [o for o in run.orders.values() if o.status == OrderStatus.CANCELLED])

        cancelled.extend(run_on_book(market=market, mode=mode, command=command) or [])
    return cancelled


def orders_kill_switch(*, trader: Trader, mode: str | None = None) -> list[ExchangeOrder]:
    """Cancel every live order of ``trader`` on every market, in ``mode`` or (None) in both modes."""
    modes = [mode_check(mode)] if mode is not None else list(Mode.values)
    out: list[ExchangeOrder] = []
    for m in modes:
        out.extend(orders_cancel_all(trader=trader, mode=m))
    return out


# --- amend ---------------------------------------------------------------------------------------------------


def order_amend(
    *,
    trader: Trader,
    order_id: str,
    price: Any = None,
    quantity: Any = None,
    mode: str | None = None,
) -> ExchangeOrder:
    """Change a resting order's limit price and/or total size (``quantity`` includes what is filled).

    A price change sends the order to the back of the queue at its new price (and it may trade at once);
    a smaller size keeps its place, a larger one loses it. The hold is replaced by one for the new open
    size at the new price. Stop orders waiting for their trigger cannot be amended.
    """
    if mode is not None:
        mode = mode_check(mode)
    order = _order_for(trader, order_id, mode)
    market = order.market
    if price in (None, "") and quantity in (None, ""):
        raise ExchangeError(Codes.INVALID_PARAMETER, "give price and/or quantity to amend")
    if order.status not in LIVE_STATUSES:
        raise ExchangeError(Codes.ORDER_NOT_OPEN, f"order {order_id} is {order.status}", status=409)
    if order.status == OrderStatus.WAITING_TRIGGER:
        raise ExchangeError(Codes.NOT_AMENDABLE, "a stop order waiting for its trigger cannot be amended")
    new_price = price_check(market, price) if price not in (None, "") else None
    new_qty = quantity_check(market, quantity, name="new quantity") if quantity not in (None, "") else None
    if market.status == MarketStatus.HALTED:
        raise ExchangeError(Codes.MARKET_NOT_ACTIVE, f"market {market.symbol} is halted", status=409)

    def command(run: Run):
        core = run.book.get_order(order.order_id)
        if core is None:
            raise ExchangeError(Codes.ORDER_NOT_OPEN, f"order {order_id} is no longer open", status=409)
        inst = run.instrument
        fresh = run.loaded.get(order.order_id)  # read under the lock, in its round trip
        if fresh is None:
            fresh = ExchangeOrder.objects.select_related("hold", "trader").get(pk=order.pk)
        open_now = inst.qty(core.qty)
        filled = fresh.filled_quantity
        target_open = open_now if new_qty is None else new_qty - filled
        if target_open <= 0:
            raise ExchangeError(
                Codes.INVALID_QUANTITY,
                f"new quantity must exceed the filled quantity {_s(filled)}",
                parameter="quantity",
            )
        if new_qty is not None and new_qty < market.min_order_size:
            raise ExchangeError(Codes.BELOW_MIN_SIZE, "new quantity is below the minimum order size")
        limit = new_price if new_price is not None else fresh.price
        need = target_open * limit if fresh.side == "buy" else target_open
        asset = market.quote_asset if fresh.side == "buy" else market.base_asset
        hold_remaining = (
            fresh.hold.remaining if fresh.hold_id and fresh.hold.status in ("active", "partially_captured") else 0
        )
        if need > hold_remaining:
            have = available(trader_account(trader_id=trader.pk, asset=asset, mode=fresh.mode)) + hold_remaining
            if have < need:
                raise ExchangeError(
                    Codes.INSUFFICIENT_BALANCE,
                    f"insufficient {asset} balance: available {_s(have)}, required {_s(need)}",
                )
        events = inst.amend(
            run.book,
            order.order_id,
            price=new_price,
            quantity=None if new_qty is None else target_open,
        )
        refuse(events, op="amend")
        fresh.amend_count += 1
        fresh.market = market
        if need != hold_remaining:
            run.hold_plans.append(
                _HoldPlan(
                    order=fresh,
                    amount=need,
                    reference=f"order:{fresh.order_id}:{fresh.amend_count}",
                    release_old=fresh.hold if hold_remaining else None,
                )
            )
        run.loaded[fresh.order_id] = fresh
        run.apply(events)
        return Later(lambda: run.orders[order.order_id])

    return run_on_book(market=market, mode=order.mode, command=command, preload_orders=[order.order_id])


# --- expiry ----------------------------------------------------------------------------------------------------


def books_expire_due() -> int:
    """Expire good-till-time orders that are due, on every book that has some. Returns books touched."""
    now = now_us()
    due = (
        ExchangeOrder.objects.live()
        .filter(expire_at__isnull=False, expire_at__lte=now)
        .values_list("market_id", "mode")
        .distinct()
    )
    count = 0
    for market_id, mode in sorted(set(due)):
        market = Market.objects.get(pk=market_id)
        run_on_book(market=market, mode=mode, command=lambda run: None)
        count += 1
    return count


def market_kind_is_prediction(market: Market) -> bool:
    return market.kind == MarketKind.PREDICTION
