"""Cancelling MM orders on their venues: one order, a client's open orders, every client's.

Locking: each order is cancelled in its own transaction holding ``SELECT ... FOR UPDATE OF`` the
order row *across the venue call* (``lock_order``). Two cancellers of the same order (a stop, a
cancel-all, a single cancel, an emergency) therefore serialize on the row: the second one finds the
order no longer open and never calls the venue, so each venue order is cancelled once. Bulk
cancels take the order locks one at a time in ascending id order and never hold a trading-state
lock meanwhile (the global lock order is system state -> client state -> order).

Truthfulness: the order row records what the venue answers. ``cancelled`` -> CANCELLED;
``filled`` -> FILLED; ``rejected`` -> FAILED; a venue that never saw the order (a
PENDING_PLACEMENT order looked up by its client order id) -> CANCELLED, as nothing rests. A
timeout (``VenueUnknownOutcome``) or a refusal leaves the order open and is reported as a
``CancelFailed``, never as cancelled. This module never writes ``matched_stake``: fills, including
any that happened before the cancel, are applied by the fill service, deduplicated on the venue's
trade id, so they are counted exactly once whatever the cancel saw.

Contract with the placement task: it locks the order row (``lock_order``) and refuses to call the
venue unless the row is still PENDING_PLACEMENT, so an order this module has cancelled before it
reached the venue is never placed afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from exchanges.connectors.base import VenueError, VenueOrder, VenueOrderNotFound, VenueUnknownOutcome
from exchanges.connectors.registry import get_connector
from trading.choices import OPEN_ORDER_STATUSES, OrderStatus
from trading.events import publish_order
from trading.models import Client, Order

log = logging.getLogger(__name__)

#: How many times a bulk cancel re-reads the open orders, to catch orders written while it ran.
MAX_SWEEP_PASSES = 5

VENUE_UNAVAILABLE = "venue_unavailable"
VENUE_ERROR = "venue_error"


class OrderNotOpen(Exception):
    """The order is no longer open (FILLED, CANCELLED, FAILED or EXPIRED): nothing to cancel."""

    def __init__(self, order: Order):
        super().__init__(f"order {order.pk} is {order.order_status}, not open")
        self.order = order


class CancelFailed(Exception):
    """The venue did not confirm the cancel; the order is left open as it was.

    ``code`` is ``venue_unavailable`` (timeout or unparseable answer: the outcome is unknown, ask
    again later) or ``venue_error`` (the venue refused, or still reports the order open).
    """

    def __init__(self, order_id: int, code: str, message: str):
        super().__init__(message)
        self.order_id = order_id
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CancelFailure:
    order_id: int
    code: str
    message: str


@dataclass
class CancelReport:
    """What a bulk cancel did. ``cancelled``: orders this call moved to CANCELLED. ``closed``: orders
    the venue reported already filled or rejected, recorded as such. ``failed``: orders left open
    because the venue did not confirm. Orders another caller closed meanwhile appear in none."""

    cancelled: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    failed: list[CancelFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def merge(self, other: CancelReport) -> CancelReport:
        self.cancelled.extend(other.cancelled)
        self.closed.extend(other.closed)
        self.failed.extend(other.failed)
        return self


def lock_order(*, order_id: int, client: Client | None = None) -> Order:
    """``SELECT ... FOR UPDATE OF`` the order row (not its joined account/fixture), scoped to
    ``client`` when given: another client's id raises ``Order.DoesNotExist``. Call inside
    ``transaction.atomic()``."""
    qs = Order.objects.select_related("account", "fixture").select_for_update(of=("self",))
    if client is not None:
        qs = qs.filter(client=client)
    return qs.get(pk=order_id)


def _ask_venue_to_cancel(order: Order) -> VenueOrder | None:
    """The venue's view of ``order`` after asking it to cancel; None if it never saw the order."""
    venue = get_connector(order.exchange)
    account = order.account.username
    try:
        if order.exchange_order_id:
            try:
                return venue.cancel(account=account, venue_order_id=order.exchange_order_id)
            except VenueOrderNotFound:
                log.warning("venue does not know order %s by id %s", order.pk, order.exchange_order_id)
        found = venue.order_status(account=account, client_order_id=order.client_order_id)
        if found is not None and found.state == "open":
            return venue.cancel(account=account, venue_order_id=found.venue_order_id)
        return found
    except VenueUnknownOutcome as exc:
        raise CancelFailed(order.pk, VENUE_UNAVAILABLE, f"{order.exchange} did not answer: {exc}") from exc
    except VenueError as exc:
        raise CancelFailed(order.pk, VENUE_ERROR, f"{order.exchange} refused the cancel: {exc}") from exc


def _record_venue_answer(order: Order, answer: VenueOrder | None, actor: str) -> None:
    """Write what the venue said onto the locked ``order`` and announce it after commit."""
    if answer is None:
        status, reason = OrderStatus.CANCELLED, f"cancelled by {actor} before reaching the venue"
    elif answer.state == "cancelled":
        status, reason = OrderStatus.CANCELLED, f"cancelled by {actor}"
    elif answer.state == "filled":
        status, reason = OrderStatus.FILLED, f"venue reported filled when {actor} cancelled"
    elif answer.state == "rejected":
        status, reason = OrderStatus.FAILED, f"venue reported rejected when {actor} cancelled"
    elif answer.state == "expired":
        status, reason = OrderStatus.EXPIRED, f"venue reported expired when {actor} cancelled"
    else:  # "open" or "unknown": the cancel is not confirmed
        code = VENUE_ERROR if answer.state == "open" else VENUE_UNAVAILABLE
        raise CancelFailed(order.pk, code, f"{order.exchange} still reports the order {answer.state}")
    fields = ["order_status", "status_reason", "updated_at"]
    if answer is not None and not order.exchange_order_id:
        order.exchange_order_id = answer.venue_order_id
        fields.append("exchange_order_id")
    order.order_status = status
    order.status_reason = reason[:255]
    order.updated_at = timezone.now()
    order.save(update_fields=fields)
    publish_order(order)


def _cancel_locked(*, order_id: int, actor: str, client: Client | None) -> Order:
    with transaction.atomic():
        order = lock_order(order_id=order_id, client=client)
        if order.order_status not in OPEN_ORDER_STATUSES:
            raise OrderNotOpen(order)
        answer = _ask_venue_to_cancel(order)
        _record_venue_answer(order, answer, actor)
    return order


def order_cancel(*, client: Client, order_id: int, actor: str) -> Order:
    """Cancel one of ``client``'s orders at its venue and record the venue's answer.

    Locks the order row (``lock_order``, scoped to ``client``) across the venue call. Raises
    ``Order.DoesNotExist`` (missing or another client's), ``OrderNotOpen``, or ``CancelFailed``
    (nothing written; the order stays open). Returns the order as recorded: CANCELLED, or FILLED /
    FAILED when that is what the venue reports.
    """
    return _cancel_locked(order_id=order_id, actor=actor, client=client)


def _sweep(open_orders: QuerySet[Order], *, actor: str, client: Client | None) -> CancelReport:
    """Cancel every order of ``open_orders`` one at a time in id order, re-reading the set until
    it holds nothing not yet tried (orders written while the sweep ran are caught too)."""
    report = CancelReport()
    tried: set[int] = set()
    for _ in range(MAX_SWEEP_PASSES):
        ids = [i for i in open_orders.order_by("id").values_list("id", flat=True) if i not in tried]
        if not ids:
            break
        for order_id in ids:
            tried.add(order_id)
            try:
                order = _cancel_locked(order_id=order_id, actor=actor, client=client)
            except (OrderNotOpen, Order.DoesNotExist):
                continue  # closed by a concurrent canceller or a fill: not ours to report
            except CancelFailed as exc:
                log.warning("cancel of order %s failed: %s %s", order_id, exc.code, exc.message)
                report.failed.append(CancelFailure(order_id, exc.code, exc.message))
                continue
            (report.cancelled if order.order_status == OrderStatus.CANCELLED else report.closed).append(order_id)
    return report


def orders_cancel_all(
    *, client: Client, actor: str, exchange: str | None = None, fixture_id: str | None = None
) -> CancelReport:
    """Cancel ``client``'s open orders, optionally only on ``exchange`` and/or ``fixture_id``
    (the feed's fixture id). Returns when every venue has answered for every order.

    Locks each order row in turn (``lock_order``); holds no trading-state lock.
    """
    qs = Order.objects.for_client(client).open()
    if exchange:
        qs = qs.filter(exchange=exchange)
    if fixture_id:
        qs = qs.filter(fixture__fixture_id=fixture_id)
    return _sweep(qs, actor=actor, client=client)


def orders_cancel_all_clients(*, actor: str) -> CancelReport:
    """Cancel every open order of every client (emergency, system stop). Operator use only: not
    tenant-scoped. Locks each order row in turn (``lock_order``); holds no trading-state lock."""
    return _sweep(Order.objects.open(), actor=actor, client=None)


# --- changes the venue made on its own (stream order events, reconciliation) ---------------------------------

#: What a venue's closed state means for an open order of ours.
_VENUE_CLOSED = {
    "cancelled": (OrderStatus.CANCELLED, "cancelled by the venue"),
    "expired": (OrderStatus.EXPIRED, "expired at the venue"),
    "rejected": (OrderStatus.FAILED, "rejected by the venue"),
    "filled": (OrderStatus.FILLED, "filled at the venue"),
}


def order_for_venue_order(*, exchange: str, venue_order_id: str, client_order_id: str) -> Order | None:
    """Our order for a venue order: by the venue's id on ``exchange``, else by our client order id."""
    if venue_order_id:
        found = Order.objects.filter(exchange=exchange, exchange_order_id=venue_order_id).order_by("id").first()
        if found is not None:
            return found
    if client_order_id:
        return Order.objects.filter(exchange=exchange, client_order_id=client_order_id).first()
    return None


def order_venue_update(*, exchange: str, venue_order: VenueOrder, reason: str = "") -> Order | None:
    """Record what the venue says of one of our orders when it changed it by itself or we asked
    about it (a stream order event, reconciliation). Returns the order (None if it is not ours).

    Locks the order row (``lock_order``). Only moves an *open* order: PENDING_PLACEMENT + ``open``
    -> PLACED (adopted, with the venue's id); PENDING_PLACEMENT/PLACED + ``cancelled`` /
    ``expired`` / ``rejected`` / ``filled`` -> CANCELLED / EXPIRED / FAILED / FILLED. A closed
    order is never reopened, and ``matched_stake`` is left to the fill service (the venue's trades,
    deduplicated), so a replayed or stale event changes nothing."""
    found = order_for_venue_order(
        exchange=exchange, venue_order_id=venue_order.venue_order_id, client_order_id=venue_order.client_order_id
    )
    if found is None:
        return None
    with transaction.atomic():
        order = lock_order(order_id=found.pk)
        fields: list[str] = []
        if not order.exchange_order_id and venue_order.venue_order_id:
            order.exchange_order_id = venue_order.venue_order_id
            fields.append("exchange_order_id")
        if order.order_status in OPEN_ORDER_STATUSES:
            if venue_order.state == "open" and order.order_status == OrderStatus.PENDING_PLACEMENT:
                order.order_status, order.status_reason = OrderStatus.PLACED, (reason or "adopted from the venue")
                fields += ["order_status", "status_reason"]
            elif venue_order.state in _VENUE_CLOSED:
                status, why = _VENUE_CLOSED[venue_order.state]
                order.order_status, order.status_reason = status, (reason or why)[:255]
                fields += ["order_status", "status_reason"]
        if fields:
            order.updated_at = timezone.now()
            order.save(update_fields=[*fields, "updated_at"])
            publish_order(order)
    return order


def order_mark_unknown_at_venue(*, order_id: int, reason: str) -> Order:
    """A PLACED order the venue has no record of any more: nothing rests there, so it is CANCELLED
    (fills it had stay counted). Locks the order row; a closed order is left as it is."""
    with transaction.atomic():
        order = lock_order(order_id=order_id)
        if order.order_status == OrderStatus.PLACED:
            order.order_status, order.status_reason = OrderStatus.CANCELLED, reason[:255]
            order.updated_at = timezone.now()
            order.save(update_fields=["order_status", "status_reason", "updated_at"])
            publish_order(order)
    return order
