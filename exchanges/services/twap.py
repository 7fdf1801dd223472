"""TWAP orders (seed 004 ``POST /api/v1/exchange/{symbol}/twap``): a quantity worked in equal slices
over a duration. docs/exchange-algos.md has the decisions; in short:

- all slices are written when the TWAP is accepted: slice ``i`` of ``n`` is due at
  ``created + i * duration / n`` (the first at once) with sizes differing by at most one lot;
- a due slice is run by :func:`twap_slice_run` (Celery: the beat sweep ``exchanges.twap_run_due``
  every second, and one task right after the TWAP commits for slice 0). It locks the TWAP row, then
  the slice row, checks the slice is still pending, places the child order through ``order_place``
  and marks the slice placed **in the same transaction**: a task that runs twice, or dies half way,
  places each slice at most once (the child's ``client_order_id`` ``<twap_id>-<index>`` is unique per
  trader as a second guard);
- the child is an ``ioc`` limit order at ``price_limit`` when one is set (so it executes only at the
  limit or better; what cannot fill there lapses with that slice, later slices do not chase it), and a
  ``market`` order otherwise. Nothing of a slice ever rests on the book;
- a child the exchange refuses (insufficient balance, no liquidity, halted market) marks that slice
  ``failed`` with the error code; later slices still run;
- cancel stops every slice not yet run; there is no resting slice to pull (children never rest).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from exchanges.algomath import AlgoMathError, twap_schedule, twap_slices
from exchanges.errors import Codes, ExchangeError
from exchanges.models import Trader
from exchanges.models.algos import TwapOrder, TwapSlice, TwapSliceStatus, TwapStatus
from exchanges.services.orders import (
    decimal_param,
    market_for_orders,
    market_get,
    mode_check,
    order_place,
    price_check,
    quantity_check,
    side_check,
)

log = logging.getLogger(__name__)

MAX_DURATION_MINUTES = 7 * 24 * 60
MAX_SLICES = 1000
TWAP_NOT_ACTIVE = "twap_not_active"
UNKNOWN_TWAP = "unknown_twap"


def int_param(value: Any, *, name: str, default: int, low: int, high: int) -> int:
    """An integer parameter (JSON number or digit string), ``low..high``; 400 ``invalid_parameter``."""
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ExchangeError(Codes.INVALID_PARAMETER, f"{name} must be an integer", parameter=name)
    try:
        n = int(value)
    except ValueError:
        raise ExchangeError(
            Codes.INVALID_PARAMETER, f"{name} must be an integer, got {value!r}", parameter=name
        ) from None
    if not low <= n <= high:
        raise ExchangeError(Codes.INVALID_PARAMETER, f"{name} must be {low}..{high}, got {n}", parameter=name)
    return n


def _algo_error(exc: AlgoMathError) -> ExchangeError:
    return ExchangeError(exc.code, exc.message, parameter=exc.parameter)


# --- create / cancel ------------------------------------------------------------------------------------------


def twap_create(
    *,
    trader: Trader,
    symbol: str,
    side: Any,
    quantity: Any,
    duration_minutes: Any = None,
    num_slices: Any = None,
    price_limit: Any = None,
    mode: Any = "live",
) -> TwapOrder:
    """Accept a TWAP and write its slices; the first slice runs right after commit."""
    mode = mode_check(mode if mode not in (None, "") else "live")
    market = market_for_orders(symbol)
    side_check(side)
    qty = quantity_check(market, quantity)
    duration = int_param(duration_minutes, name="duration_minutes", default=60, low=1, high=MAX_DURATION_MINUTES)
    n = int_param(num_slices, name="num_slices", default=10, low=1, high=MAX_SLICES)
    limit: Decimal | None = None
    if price_limit not in (None, ""):
        raw = decimal_param(price_limit, name="price_limit", code=Codes.INVALID_PRICE, allow_zero=True)
        limit = None if raw == 0 else price_check(market, raw, name="price_limit")
    try:
        sizes = twap_slices(qty, n, market.lot_size, market.min_order_size)
    except AlgoMathError as exc:
        raise _algo_error(exc) from None

    now = timezone.now()
    with transaction.atomic():
        twap = TwapOrder.objects.create(
            twap_id="twap_" + secrets.token_hex(8),
            trader=trader,
            market=market,
            mode=mode,
            side=side,
            quantity=qty,
            price_limit=limit,
            duration_minutes=duration,
            num_slices=n,
            ends_at=now + dt.timedelta(minutes=duration),
        )
        TwapSlice.objects.bulk_create(
            TwapSlice(twap=twap, index=i, quantity=size, due_at=due)
            for i, (size, due) in enumerate(zip(sizes, twap_schedule(now, duration, n), strict=True))
        )
        first = TwapSlice.objects.get(twap=twap, index=0)
        transaction.on_commit(lambda: _kick(first.pk))
    return twap


def _kick(slice_id: int) -> None:
    from exchanges.tasks.algos import twap_slice_run

    try:
        twap_slice_run.delay(slice_id)
    except Exception:  # noqa: BLE001 - the broker is away: the beat sweep runs the slice within a second
        log.warning("could not queue TWAP slice %s; the sweep will run it", slice_id, exc_info=True)


def twap_get(*, trader: Trader, symbol: str, twap_id: Any) -> TwapOrder:
    """One of ``trader``'s TWAPs on ``symbol``; 404 ``unknown_twap`` for anyone else's or another pair's."""
    market = market_get(symbol=symbol)
    twap = None
    if isinstance(twap_id, str) and 0 < len(twap_id) <= 40:
        twap = TwapOrder.objects.filter(trader=trader, market=market, twap_id=twap_id).select_related("market").first()
    if twap is None:
        raise ExchangeError(UNKNOWN_TWAP, f"unknown TWAP {twap_id!r}", status=404, parameter="twap_id")
    return twap


def twap_cancel(*, trader: Trader, symbol: str, twap_id: Any) -> TwapOrder:
    """Stop a TWAP: every slice not yet run is cancelled. Cancelling a cancelled TWAP returns it
    unchanged; a completed one is 409 ``twap_not_active``. Locks the TWAP row (then its slices)."""
    twap = twap_get(trader=trader, symbol=symbol, twap_id=twap_id)
    with transaction.atomic():
        twap = TwapOrder.objects.select_for_update().select_related("market").get(pk=twap.pk)
        if twap.status == TwapStatus.CANCELLED:
            return twap
        if twap.status != TwapStatus.ACTIVE:
            raise ExchangeError(TWAP_NOT_ACTIVE, f"TWAP {twap.twap_id} is {twap.status}", status=409)
        now = timezone.now()
        twap.slices.filter(status=TwapSliceStatus.PENDING).update(status=TwapSliceStatus.CANCELLED, ran_at=now)
        twap.status = TwapStatus.CANCELLED
        twap.finished_at = now
        twap.save(update_fields=["status", "finished_at", "updated_at"])
    return twap


def twaps_active(*, trader: Trader, symbol: str) -> list[TwapOrder]:
    market = market_get(symbol=symbol)
    return list(
        TwapOrder.objects.filter(trader=trader, market=market, status=TwapStatus.ACTIVE)
        .select_related("market")
        .order_by("created_at")
    )


# --- running slices -----------------------------------------------------------------------------------------


def twap_slice_run(*, slice_id: int, now: dt.datetime | None = None) -> TwapSlice | None:
    """Run one slice if it is pending, due and its TWAP active; idempotent (see the module docstring).

    Locks, in this order: the ``TwapOrder`` row, the ``TwapSlice`` row, then whatever ``order_place``
    locks (the book's state row, ledger accounts). Returns the slice, or None if there is no such slice.
    """
    now = now or timezone.now()
    twap_pk = TwapSlice.objects.filter(pk=slice_id).values_list("twap_id", flat=True).first()
    if twap_pk is None:
        return None
    with transaction.atomic():
        twap = TwapOrder.objects.select_for_update().select_related("market", "trader").get(pk=twap_pk)
        piece = TwapSlice.objects.select_for_update().get(pk=slice_id)
        if piece.status != TwapSliceStatus.PENDING or piece.due_at > now:
            return piece
        if twap.status != TwapStatus.ACTIVE:
            piece.status = TwapSliceStatus.CANCELLED
            piece.ran_at = now
            piece.save(update_fields=["status", "ran_at"])
            return piece
        piece.twap = twap
        try:
            with transaction.atomic():
                if twap.price_limit is not None:
                    order_type, price = "ioc", twap.price_limit
                else:
                    order_type, price = "market", None
                order = order_place(
                    trader=twap.trader,
                    symbol=twap.market.symbol,
                    side=twap.side,
                    type=order_type,
                    quantity=piece.quantity,
                    price=price,
                    mode=twap.mode,
                    client_order_id=piece.client_order_id,
                )
        except ExchangeError as exc:
            piece.status = TwapSliceStatus.FAILED
            piece.error_code = exc.code
            piece.error_message = exc.message[:255]
            log.info("TWAP %s slice %s refused: %s", twap.twap_id, piece.index, exc.code)
        else:
            piece.status = TwapSliceStatus.PLACED
            piece.order = order
            piece.filled_quantity = order.filled_quantity
            twap.executed_quantity += order.filled_quantity
            twap.executed_notional += order.filled_notional
        piece.ran_at = now
        piece.save(update_fields=["status", "order", "filled_quantity", "error_code", "error_message", "ran_at"])
        twap.slices_done += 1
        fields = ["executed_quantity", "executed_notional", "slices_done", "updated_at"]
        if not twap.slices.filter(status=TwapSliceStatus.PENDING).exists():
            twap.status = TwapStatus.COMPLETED
            twap.finished_at = now
            fields += ["status", "finished_at"]
        twap.save(update_fields=fields)
    return piece


def twaps_run_due(*, now: dt.datetime | None = None, limit: int = 200) -> int:
    """Run every due pending slice (oldest first, at most ``limit``). Returns how many ran."""
    now = now or timezone.now()
    due = list(
        TwapSlice.objects.filter(status=TwapSliceStatus.PENDING, due_at__lte=now)
        .order_by("due_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    ran = 0
    for slice_id in due:
        piece = twap_slice_run(slice_id=slice_id, now=now)
        if piece is not None and piece.status != TwapSliceStatus.PENDING:
            ran += 1
    return ran
