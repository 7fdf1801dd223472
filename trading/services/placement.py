"""Placing MM orders on their venues, and resolving placements whose outcome is unknown.

Lifecycle (seed 001): an order row is written ``PENDING_PLACEMENT`` with a deterministic client
order id by the quoting service, before any venue call; this module moves it to ``PLACED`` (with
the venue's ``exchange_order_id``), ``FAILED`` (a definite refusal, or the venue never received
it and it is too old to send), or whatever the venue reports (``FILLED``, ``CANCELLED``).

Never placed twice. Before each ``place`` is sent, a ``PlacementAttempt`` row counting sends is
committed. So an order still ``PENDING_PLACEMENT`` whose attempt shows a send may be at the venue
(a timeout, an unparseable answer, a worker that died mid-call): it is resolved by asking the
venue (``order_status`` by client order id) and recording what the venue says; only when the
venue has never seen it, and it is younger than ``RESEND_WINDOW``, is it sent again (the same
client order id, which the venues also deduplicate on). An older one is ``FAILED``: its price is
stale, the quoting service writes a fresh order on the next tick.

Locks: ``lock_order`` (the order row, ``SELECT ... FOR UPDATE OF``), held across the venue call, as
the cancel service does, so a cancel and a placement of one order serialize: an order cancelled
before it reached the venue is never placed afterwards.

Rate limits: every venue call draws a token from the exchange account's bucket
(``trading.ratelimit``); an empty bucket raises ``PlacementThrottled`` with the time to wait, and
nothing is written or sent.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from exchanges.connectors.base import PlaceRequest, VenueError, VenueOrder, VenueUnknownOutcome
from exchanges.connectors.registry import get_connector
from trading.choices import OrderStatus
from trading.events import publish_order
from trading.models import Order, PlacementAttempt
from trading.ratelimit import take_token
from trading.services.orders import lock_order
from trading.services.venue_sessions import venue_held

log = logging.getLogger(__name__)

__all__ = [
    "RESEND_WINDOW",
    "PlacementThrottled",
    "order_place",
    "order_resolve_unknown",
    "orders_needing_resolution",
]

#: A PENDING_PLACEMENT order the venue never received is sent again only while younger than this;
#: after it, its price is stale and it is FAILED instead.
RESEND_WINDOW = dt.timedelta(seconds=60)

UNKNOWN_REASON = "placement outcome unknown: resolving with the venue"


class PlacementThrottled(Exception):
    """The account's token bucket is empty; try again in ``retry_after`` seconds."""

    def __init__(self, order_id: int, retry_after: float):
        super().__init__(f"order {order_id}: venue rate limit, retry in {retry_after:.3f}s")
        self.order_id = order_id
        self.retry_after = retry_after


def _request(order: Order) -> PlaceRequest:
    return PlaceRequest(
        client_order_id=order.client_order_id,
        account=order.account.username,
        market=order.exchange_outcome_id,
        side=order.side,
        price=order.order_cents,
        size=order.order_stake,
    )


#: How long a placement held by a reconciling venue stream waits before its task retries.
HOLD_RETRY_SECONDS = 1.0


def _throttle(order: Order) -> None:
    """Take a token of the account's bucket, or raise ``PlacementThrottled``. Also raised while the
    account's venue stream holds placement (disconnected, reconciliation not finished:
    ``trading.services.reconciliation``): nothing goes to the venue before its state is known."""
    if venue_held(exchange=order.exchange, account=order.account.username):
        raise PlacementThrottled(order.pk, HOLD_RETRY_SECONDS)
    allowed, wait = take_token(account_id=order.account_id, exchange=order.exchange)
    if not allowed:
        raise PlacementThrottled(order.pk, wait)


def _save(order: Order, fields: list[str]) -> None:
    order.updated_at = timezone.now()
    order.save(update_fields=[*fields, "updated_at"])
    publish_order(order)


def _record(order: Order, venue: VenueOrder) -> None:
    """Write the venue's view of the (locked, PENDING_PLACEMENT) ``order``. ``matched_stake`` is left
    to the fill service (it dedupes on trade ids); only the statuses follow the venue here."""
    fields = ["order_status", "status_reason"]
    if not order.exchange_order_id and venue.venue_order_id:
        order.exchange_order_id = venue.venue_order_id
        fields.append("exchange_order_id")
    status = {
        "open": OrderStatus.PLACED,
        "filled": OrderStatus.FILLED,
        "cancelled": OrderStatus.CANCELLED,
        "rejected": OrderStatus.FAILED,
        "expired": OrderStatus.EXPIRED,
    }.get(venue.state)
    if status is None:  # "unknown": the venue itself does not know yet
        return
    order.order_status = status
    order.status_reason = "" if status == OrderStatus.PLACED else f"venue reports {venue.state}"
    _save(order, fields)


def _fail(order: Order, reason: str) -> None:
    order.order_status = OrderStatus.FAILED
    order.status_reason = reason[:255]
    _save(order, ["order_status", "status_reason"])


def _lookup(order: Order) -> VenueOrder | None:
    """The venue's view of ``order`` by client order id; raises ``VenueUnknownOutcome`` if it does
    not answer."""
    return get_connector(order.exchange).order_status(
        account=order.account.username, client_order_id=order.client_order_id
    )


def order_place(*, order_id: int, now: dt.datetime | None = None) -> Order:
    """Send order ``order_id`` to its venue once, and record the answer. Idempotent: an order no
    longer PENDING_PLACEMENT is returned untouched; one that may already be at the venue is looked
    up there first (``order_resolve_unknown``) and sent again only if the venue never saw it.

    Two transactions, each locking the order row (``lock_order``): the first checks the state and
    commits the send count (so a crash after the send is known to be ambiguous), the second sends
    and records. Raises ``PlacementThrottled`` (nothing sent) when the account's bucket is empty.
    """
    with transaction.atomic():
        order = lock_order(order_id=order_id)
        if order.order_status != OrderStatus.PENDING_PLACEMENT:
            return order
        attempt, _ = PlacementAttempt.objects.get_or_create(order=order)
        ambiguous = attempt.sent > 0
        if not ambiguous:
            _throttle(order)
            attempt.sent += 1
            attempt.save(update_fields=["sent", "updated_at"])
    if ambiguous:  # a send may have reached the venue: ask it, outside this transaction
        return order_resolve_unknown(order_id=order_id, now=now)
    return _send(order_id=order_id, claimed=attempt.sent)


def _send(*, order_id: int, claimed: int) -> Order:
    """Send the place counted as send number ``claimed`` and record the answer. Only the latest
    claim sends: if another worker claimed a later send meanwhile (after asking the venue), this
    one sends nothing, so no send ever follows another without a lookup in between."""
    with transaction.atomic():
        order = lock_order(order_id=order_id)
        if order.order_status != OrderStatus.PENDING_PLACEMENT:
            return order  # cancelled or resolved meanwhile: nothing to send
        if PlacementAttempt.objects.filter(order=order).values_list("sent", flat=True).first() != claimed:
            return order
        try:
            answer = get_connector(order.exchange).place(_request(order))
        except VenueUnknownOutcome as exc:
            log.warning("placement of order %s: outcome unknown (%s); will ask the venue", order.pk, exc)
            PlacementAttempt.objects.filter(order=order).update(last_error=str(exc)[:255], updated_at=timezone.now())
            order.status_reason = UNKNOWN_REASON
            _save(order, ["status_reason"])
            return order
        except VenueError as exc:
            log.info("placement of order %s refused: %s", order.pk, exc)
            _fail(order, f"venue refused: {exc}")
            return order
        _record(order, answer)
    return order


def order_resolve_unknown(*, order_id: int, now: dt.datetime | None = None) -> Order:
    """Resolve a PENDING_PLACEMENT order whose placement may have reached the venue, by asking the
    venue, never by sending blindly:

    * the venue knows it -> record what it says (PLACED with its id, FILLED, CANCELLED, FAILED);
    * the venue does not answer -> leave it pending (the sweep asks again later);
    * the venue never saw it -> send it again (same client order id) if it is younger than
      ``RESEND_WINDOW``, else FAILED ("never reached the venue").

    Locks the order row (``lock_order``) across the lookup. May raise ``PlacementThrottled``.
    """
    now = now or timezone.now()
    with transaction.atomic():
        order = lock_order(order_id=order_id)
        if order.order_status != OrderStatus.PENDING_PLACEMENT:
            return order
        attempt, _ = PlacementAttempt.objects.get_or_create(order=order)
        if attempt.sent:  # a send may have reached the venue: ask before sending again
            _throttle(order)
            try:
                found = _lookup(order)
            except VenueUnknownOutcome as exc:
                log.warning("order %s: venue did not answer the lookup (%s)", order.pk, exc)
                return order
            if found is not None:
                _record(order, found)
                return order
            if now - order.created_at > RESEND_WINDOW:
                _fail(order, "never reached the venue; too old to send again")
                return order
        _throttle(order)
        attempt.sent += 1
        attempt.save(update_fields=["sent", "updated_at"])
    return _send(order_id=order_id, claimed=attempt.sent)


def orders_needing_resolution(*, older_than: dt.timedelta, now: dt.datetime | None = None) -> list[int]:
    """Ids of PENDING_PLACEMENT orders not touched for ``older_than``: ambiguous placements to ask
    the venue about, and orders whose placement task was lost."""
    cutoff = (now or timezone.now()) - older_than
    return list(
        Order.objects.filter(order_status=OrderStatus.PENDING_PLACEMENT, updated_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:500]
    )
