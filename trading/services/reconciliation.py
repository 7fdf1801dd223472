"""Reconciliation: make our orders and fills agree with what a venue says, account by account.

Run at start-up and after every venue stream (re)connect, before placement resumes for the
account (the stream runner holds placement meanwhile: ``trading.services.venue_sessions``), and
from beat as a sweep (``trading.reconcile_all``). Every write goes through the services that
own it, under their locks, so reconciliation is safe beside the stream, polling, placement,
cancels and another reconciliation; running it twice changes nothing the first run did not.

1. **Venue open orders** (``open_orders``):
   * one we know by client order id that we still think ``PENDING_PLACEMENT`` (its placement
     answer was lost) is **adopted**: PLACED with the venue's id;
   * one we do not know at all, or that we already consider closed (cancelled, failed, expired,
     filled), is an **orphan**: cancelled at the venue, so nothing of ours rests unaccounted.
2. **Our open orders the venue does not list** (created before this run started): asked about
   one by one (``order_status`` by client order id) and recorded as the venue says: FILLED,
   CANCELLED, EXPIRED or FAILED. A PLACED order the venue has no record of is CANCELLED ("venue
   has no record"); a PENDING_PLACEMENT one it never saw is left to placement (sent again only
   within ``RESEND_WINDOW``, by the placement service).
3. **Fills**: the account's trades since the poll cursor are applied (``fills_poll``); if an
   order still has less matched than the venue says it filled, the account's whole trade
   history is replayed (``fills_since`` from the start; the dedupe on trade ids absorbs what is
   known). Every new fill is hedged after commit as usual, and fills of the last hour without a
   bet (a lost hedge message) are sent to the hedger again.

A venue that does not answer (``VenueUnknownOutcome``) makes the run **incomplete**
(``report.complete`` false): the stream runner keeps placement held and tries again.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone

from exchanges.connectors.base import VenueError, VenueOrder, VenueUnknownOutcome
from exchanges.connectors.registry import get_connector
from trading.choices import OPEN_ORDER_STATUSES, OrderStatus
from trading.models import ExchangeAccount, Fill, Order
from trading.services.fills import _schedule_hedge, fill_apply, fills_poll
from trading.services.orders import order_mark_unknown_at_venue, order_venue_update

log = logging.getLogger(__name__)

#: Pages of ``fills_since`` read by a full replay (PAGE trades each on the simulated venue).
MAX_REPLAY_PAGES = 200
#: Fills this recent without a hedge bet are hedged again by reconciliation.
NAKED_WINDOW = dt.timedelta(hours=1)


@dataclass
class ReconcileReport:
    account_id: int
    adopted: list[int] = field(default_factory=list)
    orphans_cancelled: list[str] = field(default_factory=list)
    resolved: dict[int, str] = field(default_factory=dict)
    fills_applied: int = 0
    replayed: bool = False
    hedges_scheduled: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.errors


def _ours(account: ExchangeAccount, coids: list[str]) -> dict[str, Order]:
    return {o.client_order_id: o for o in Order.objects.filter(exchange=account.exchange, client_order_id__in=coids)}


def _cancel_orphan(account: ExchangeAccount, vo: VenueOrder, report: ReconcileReport) -> None:
    try:
        answer = get_connector(account.exchange).cancel(account=account.username, venue_order_id=vo.venue_order_id)
    except VenueUnknownOutcome as exc:
        report.errors.append(f"cancel of orphan {vo.venue_order_id}: {exc}")
        return
    except VenueError as exc:  # already gone: nothing rests
        log.info("orphan %s on %s: %s", vo.venue_order_id, account.exchange, exc)
        return
    if answer.state != "cancelled":  # it filled or expired meanwhile: nothing of ours rests
        return
    log.warning(
        "reconcile %s:%s: cancelled venue orphan %s (%s)",
        account.exchange,
        account.pk,
        vo.venue_order_id,
        vo.client_order_id,
    )
    report.orphans_cancelled.append(vo.venue_order_id)


def _venue_open_orders(account: ExchangeAccount, report: ReconcileReport, short: dict[int, Decimal]) -> set[str]:
    """Step 1; returns the client order ids the venue lists as open."""
    venue_open = get_connector(account.exchange).open_orders(account=account.username)
    ours = _ours(account, [vo.client_order_id for vo in venue_open])
    for vo in venue_open:
        order = ours.get(vo.client_order_id)
        if order is None or order.order_status not in OPEN_ORDER_STATUSES:
            _cancel_orphan(account, vo, report)
            continue
        if order.order_status == OrderStatus.PENDING_PLACEMENT or not order.exchange_order_id:
            updated = order_venue_update(exchange=account.exchange, venue_order=vo, reason="adopted by reconciliation")
            if updated is not None and updated.order_status == OrderStatus.PLACED:
                report.adopted.append(order.pk)
        if vo.filled > order.matched_stake:
            short[order.pk] = vo.filled
    return {vo.client_order_id for vo in venue_open}


def _unlisted_open_orders(
    account: ExchangeAccount, listed: set[str], started: dt.datetime, report: ReconcileReport, short: dict[int, Decimal]
) -> None:
    """Step 2: our open orders the venue did not list, asked about one by one."""
    venue = get_connector(account.exchange)
    candidates = (
        Order.objects.filter(account=account, order_status__in=OPEN_ORDER_STATUSES, created_at__lt=started)
        .exclude(client_order_id__in=listed)
        .filter(Q(order_status=OrderStatus.PLACED) | Q(placement_attempt__sent__gt=0))
        .order_by("id")
    )
    for order in candidates:
        try:
            found = venue.order_status(account=account.username, client_order_id=order.client_order_id)
        except VenueUnknownOutcome as exc:
            report.errors.append(f"order status of {order.pk}: {exc}")
            continue
        if found is None:
            if order.order_status == OrderStatus.PLACED:
                updated = order_mark_unknown_at_venue(order_id=order.pk, reason="venue has no record of the order")
                report.resolved[order.pk] = updated.order_status
            continue  # PENDING_PLACEMENT the venue never saw: placement's job (RESEND_WINDOW)
        updated = order_venue_update(exchange=account.exchange, venue_order=found, reason="")
        if updated is not None and updated.order_status != order.order_status:
            report.resolved[order.pk] = updated.order_status
        if found.filled > order.matched_stake:
            short[order.pk] = found.filled


def fills_replay(*, account: ExchangeAccount) -> int:
    """Apply the account's whole trade history from the venue (``source='reconcile'``); each trade
    already known is a no-op. Returns the fills applied."""
    venue = get_connector(account.exchange)
    cursor, applied = "", 0
    for _ in range(MAX_REPLAY_PAGES):
        page = venue.fills_since(account=account.username, cursor=cursor)
        for venue_fill in page.fills:
            if fill_apply(exchange=account.exchange, venue_fill=venue_fill, source="reconcile") is not None:
                applied += 1
        if not page.fills or page.cursor == cursor:
            break
        cursor = page.cursor
    return applied


def _rehedge_naked(account: ExchangeAccount, report: ReconcileReport) -> None:
    since = timezone.now() - NAKED_WINDOW
    ids = list(
        Fill.objects.filter(order__account=account, hedge_bet__isnull=True, created_at__gte=since).values_list(
            "id", flat=True
        )[:500]
    )
    for fill_id in ids:
        _schedule_hedge(fill_id)
    report.hedges_scheduled = len(ids)


def account_reconcile(*, account: ExchangeAccount) -> ReconcileReport:
    """Reconcile one exchange account with its venue (see the module docstring). Never raises for a
    venue that does not answer: the report says what is left (``complete`` false)."""
    report = ReconcileReport(account_id=account.pk)
    started = timezone.now()
    short: dict[int, Decimal] = {}
    try:
        listed = _venue_open_orders(account, report, short)
        _unlisted_open_orders(account, listed, started, report, short)
        report.fills_applied += len(fills_poll(account=account))
        still_short = Order.objects.filter(pk__in=list(short)).values_list("pk", "matched_stake")
        if any(matched < short[pk] for pk, matched in still_short):
            report.replayed = True
            report.fills_applied += fills_replay(account=account)
        _rehedge_naked(account, report)
    except VenueUnknownOutcome as exc:
        report.errors.append(str(exc))
    if report.errors:
        log.warning("reconcile %s:%s incomplete: %s", account.exchange, account.pk, "; ".join(report.errors))
    elif report.adopted or report.orphans_cancelled or report.resolved or report.fills_applied:
        log.warning(
            "reconcile %s:%s: adopted %s, orphans cancelled %s, resolved %s, fills applied %s",
            account.exchange,
            account.pk,
            report.adopted,
            report.orphans_cancelled,
            report.resolved,
            report.fills_applied,
        )
    return report


def accounts_to_reconcile() -> list[int]:
    return list(ExchangeAccount.objects.filter(active=True).order_by("id").values_list("id", flat=True))
