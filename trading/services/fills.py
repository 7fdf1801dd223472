"""Applying venue fills to MM orders, from the venue stream and from polling (both on).

``fill_apply`` is the one writer of ``Fill`` rows and of ``Order.matched_stake``. Guarantees:

* **Once per trade.** A fill is identified by ``(exchange, venue trade id)`` (the
  ``fill_unique_venue_trade`` constraint). The same trade reported twice, by the stream, by polling
  or by both, is applied once: later reports find the row and return None.
* **Serialized per order.** The order row is locked (``lock_order_for_fill``: ``SELECT ... FOR
  NO KEY UPDATE OF`` the order) for the whole transaction, so concurrent fills of one order add up
  exactly (``matched_stake`` is incremented, never overwritten) and the duplicate check and insert
  cannot interleave. ``NO KEY UPDATE``, not ``UPDATE``: it serializes fill writers all the same,
  but lets the deferred foreign-key checks of concurrent hedge-bet inserts (``FOR KEY SHARE`` of
  the order, at their commit) through. With ``FOR UPDATE`` a hedge transaction holding the PnL
  dirty-day marker (trading/0003 triggers) would wait at commit for this order lock while this
  transaction waits for that marker: a deadlock. An ``IntegrityError`` on the insert (the same
  trade committed by a path that did not hold the lock) rolls the transaction back and is
  "already applied".
* **Never above the order.** ``matched_stake`` never exceeds ``order_stake`` (a check constraint).
  A venue that reports more than the unmatched rest is logged as an error and the fill is clamped
  to the rest (nothing is recorded when nothing is left): we hedge what the order could have
  filled, and the discrepancy is left for reconciliation.
* **Late fills count.** Fills on orders already CANCELLED or FILLED (a cancel races a fill) are
  applied; an order that becomes fully matched is FILLED unless it had FAILED or EXPIRED.
* **Hedged after commit.** Each new fill schedules ``hedging.hedge_fill`` with ``on_commit``; the
  order event is published after commit too, and ``trading.quote_repost`` (placement queue) quotes
  the filled size again when trading is active and the exposure cap allows. Nothing here reads
  the trading controls: a fill that happened is recorded and hedged under pause, stop and
  emergency.

Polling keeps its cursor per account in the cache (``fills-cursor:<account id>``). Losing it only
replays trades, which the dedupe absorbs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from decimal import Decimal

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from exchanges.connectors.base import VenueEvent, VenueFill
from exchanges.connectors.registry import get_connector
from trading.choices import MatchedStatus, OrderStatus
from trading.events import publish_order
from trading.models import ExchangeAccount, Fill, Order

log = logging.getLogger(__name__)

#: Order statuses a full match turns into FILLED (FAILED/EXPIRED are kept as the venue last said).
_FILLABLE = (OrderStatus.PENDING_PLACEMENT, OrderStatus.PLACED, OrderStatus.CANCELLED)
#: Pages of ``fills_since`` read per poll (the rest is read by the next poll).
MAX_POLL_PAGES = 20


def lock_order_for_fill(*, exchange: str, venue_order_id: str, client_order_id: str) -> Order | None:
    """``SELECT ... FOR NO KEY UPDATE OF`` the order a venue fill belongs to, found by the venue's order id
    on ``exchange``, else by our client order id; None if neither is ours. Call inside
    ``transaction.atomic()``; the lock is held to the end of that transaction."""
    q = Q()
    if venue_order_id:
        q |= Q(exchange=exchange, exchange_order_id=venue_order_id)
    if client_order_id:
        q |= Q(client_order_id=client_order_id)
    if not q:
        return None
    return (
        Order.objects.select_related("account", "fixture")
        .select_for_update(of=("self",), no_key=True)
        .filter(q)
        .order_by("id")
    ).first()


def fill_apply(*, exchange: str, venue_fill: VenueFill, source: str) -> Fill | None:
    """Apply one venue fill; the new ``Fill``, or None if already applied, not ours or nothing left."""
    try:
        return _fill_apply(exchange=exchange, venue_fill=venue_fill, source=source)
    except IntegrityError:  # the same trade committed by a path that did not hold the order lock
        return None


def _fill_apply(*, exchange: str, venue_fill: VenueFill, source: str) -> Fill | None:
    with transaction.atomic():
        order = lock_order_for_fill(
            exchange=exchange, venue_order_id=venue_fill.venue_order_id, client_order_id=venue_fill.client_order_id
        )
        if order is None:
            log.warning("fill %s on %s matches none of our orders", venue_fill.trade_id, exchange)
            return None
        if Fill.objects.filter(exchange=exchange, venue_trade_id=venue_fill.trade_id).exists():
            return None
        rest = order.order_stake - order.matched_stake
        stake = venue_fill.size
        if stake > rest:
            log.error(
                "venue over-reports: fill %s of %s on order %s with only %s unmatched; clamped",
                venue_fill.trade_id,
                stake,
                order.pk,
                rest,
            )
            stake = rest
        if stake <= 0:
            return None
        # No savepoint around the insert (two round trips less on the hot path): under the order
        # lock the check above sees every committed fill of this trade; a unique violation from
        # anywhere else rolls the whole transaction back and ``fill_apply`` reports "already applied".
        fill = Fill.objects.create(
            order=order,
            client_id=order.client_id,
            exchange=exchange,
            venue_trade_id=venue_fill.trade_id,
            price=venue_fill.price,
            stake=stake,
            source=source,
            matched_at=venue_fill.at or timezone.now(),
        )
        order.matched_stake += stake
        full = order.matched_stake >= order.order_stake
        order.matched_status = MatchedStatus.FULLY_MATCHED if full else MatchedStatus.PARTIALLY_MATCHED
        if full and order.order_status in _FILLABLE:
            order.order_status = OrderStatus.FILLED
        order.matched_at = max(filter(None, [order.matched_at, fill.matched_at]))
        order.updated_at = timezone.now()
        order.save(update_fields=["matched_stake", "matched_status", "order_status", "matched_at", "updated_at"])
        # on_commit callbacks run in order: the hedge first (it is the latency that matters), then
        # the order event and the repost.
        transaction.on_commit(lambda fill_id=fill.pk: _schedule_hedge(fill_id))
        publish_order(order)
        transaction.on_commit(lambda order_id=order.pk: _schedule_repost(order_id))
    return fill


def _schedule_hedge(fill_id: int) -> None:
    """Send ``hedging.hedge_fill`` (after commit). A broker that cannot be reached does not undo
    the committed fill: it is logged, and ``hedging.hedge_sweep`` hedges the fill on its next run."""
    from hedging.tasks import hedge_fill_task

    try:
        hedge_fill_task.delay(fill_id)
    except BrokerUnavailable:
        log.exception("could not send the hedge of fill %s; the hedge sweep will pick it up", fill_id)


def _schedule_repost(order_id: int) -> None:
    """Send ``trading.quote_repost`` (placement queue, after commit): the filled size is quoted
    again if trading is active and the exposure cap allows (``quote_refresh`` decides). Losing the
    message only loses a repost: the next price update requotes the key anyway."""
    from trading.tasks.placement import quote_repost_task

    try:
        quote_repost_task.delay(order_id)
    except BrokerUnavailable:
        log.exception("could not send the repost after a fill of order %s", order_id)


def _cursor_key(account: ExchangeAccount) -> str:
    return f"fills-cursor:{account.pk}"


def fills_poll(*, account: ExchangeAccount) -> list[Fill]:
    """Read the account's trades since its cursor and apply each (``source='poll'``); the new fills.

    Safe to run concurrently with the stream and with another poll: every fill is deduplicated."""
    venue = get_connector(account.exchange)
    cursor = cache.get(_cursor_key(account), "")
    applied: list[Fill] = []
    for _ in range(MAX_POLL_PAGES):
        page = venue.fills_since(account=account.username, cursor=cursor)
        for venue_fill in page.fills:
            fill = fill_apply(exchange=account.exchange, venue_fill=venue_fill, source="poll")
            if fill is not None:
                applied.append(fill)
        if page.cursor == cursor or not page.fills:
            break
        cursor = page.cursor
        cache.set(_cursor_key(account), cursor, timeout=None)
    return applied


def fills_stream_apply(*, account: ExchangeAccount, events: Iterable[VenueEvent]) -> int:
    """Apply the fill events of a venue user stream (``connector.stream(account=)``) as they come,
    ``source='stream'``; order events are left to the order services. Returns the fills applied.
    Runs beside polling: a trade seen by both is applied once."""
    applied = 0
    for event in events:
        if event.kind == "fill" and event.fill is not None:
            if fill_apply(exchange=account.exchange, venue_fill=event.fill, source="stream") is not None:
                applied += 1
    return applied


def fills_matched_total(*, order: Order) -> Decimal:
    """Σ fill stakes of ``order`` (equals ``order.matched_stake``; for checks and reconciliation)."""
    return sum((f.stake for f in order.fills.all()), Decimal("0"))
