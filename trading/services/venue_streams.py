"""Consuming a venue account's user stream: fills, order updates, and reconciliation on every connect.

One :class:`AccountStreamRunner` per exchange account (``manage.py run_venue_streams`` runs one
thread each). Per connection:

1. **hold** placement for the account (``venue_sessions.venue_hold``);
2. **subscribe** from the stored cursor (``connector.stream(account=, cursor=)``: the
   subscription is made at once, so nothing that happens from here on is missed);
3. **reconcile** (``account_reconcile``): open orders and fills against the venue. If the venue
   does not answer everything, back off and start again, placement still held;
4. **release** the hold and send the placements that waited (``trading.order_place`` for the
   account's PENDING_PLACEMENT orders): quoting resumes only now;
5. **consume**: ``fill`` events through ``fills_stream_apply`` (deduplicated on the venue trade
   id under the order lock, hedged after commit), ``order`` events through
   ``order_venue_update`` (cancelled / expired / rejected / filled by the venue, adoption of a
   pending order), ``idle`` events as keep-alives. The cursor is saved after each event and
   ``heartbeat("venue:<exchange>")`` is called on every event, idle ones included, so a silent or
   dead stream soft-pauses its clients (``trading.services.health``).

A disconnect (``VenueStreamDisconnected``), any ``VenueUnknownOutcome`` or a database error goes
back to 1 after a
backoff (0.5 s doubling to 10 s, with jitter). Polling (beat ``trading.fills_poll_all``) stays on
beside the stream: the same trade from both is applied once.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from django.db import DatabaseError, close_old_connections, connection

from exchanges.connectors.base import VenueEvent, VenueUnknownOutcome
from exchanges.connectors.registry import get_connector
from trading.choices import OrderStatus
from trading.models import ExchangeAccount, Order
from trading.services.fills import fills_stream_apply
from trading.services.orders import order_venue_update
from trading.services.reconciliation import ReconcileReport, account_reconcile
from trading.services.venue_sessions import (
    venue_connected,
    venue_cursor_save,
    venue_down,
    venue_hold,
    venue_release,
    venue_session,
)

log = logging.getLogger(__name__)

BACKOFF_START = 0.5
BACKOFF_MAX = 10.0


def _default_heartbeat(source: str) -> None:
    from trading.services.health import heartbeat

    heartbeat(source)


def venue_event_apply(*, account: ExchangeAccount, event: VenueEvent) -> None:
    """Apply one stream event of ``account``'s venue (fill, order update; idle is nothing)."""
    if event.kind == "fill":
        fills_stream_apply(account=account, events=[event])
    elif event.kind == "order" and event.order is not None:
        order_venue_update(exchange=account.exchange, venue_order=event.order)


def placements_kick(*, account: ExchangeAccount) -> int:
    """Send the placement of every PENDING_PLACEMENT order of the account (held while it
    reconciled). ``order_place`` is idempotent: one already sent is looked up, never resent."""
    from trading.tasks.placement import order_place_task

    ids = list(
        Order.objects.filter(account=account, order_status=OrderStatus.PENDING_PLACEMENT).values_list("id", flat=True)
    )
    for order_id in ids:
        order_place_task.delay(order_id)
    return len(ids)


class AccountStreamRunner:
    """Runs one account's stream until ``stop`` is set (or ``max_connects`` connections ended)."""

    def __init__(
        self,
        account: ExchangeAccount,
        *,
        stop: threading.Event | None = None,
        heartbeat: Callable[[str], None] | None = None,
        on_reconciled: Callable[[ReconcileReport], None] | None = None,
    ):
        self.account = account
        self.exchange = account.exchange
        self.user = account.username
        self.stop = stop or threading.Event()
        self.heartbeat = heartbeat or _default_heartbeat
        self.on_reconciled = on_reconciled
        self.source = f"venue:{account.exchange}"
        self.connects = 0
        self.events = 0

    def _beat(self) -> None:
        try:
            self.heartbeat(self.source)
        except Exception:  # noqa: BLE001 - a cache hiccup must not kill the stream; logged
            log.exception("heartbeat for %s failed", self.source)

    def connect_once(self, *, max_events: int | None = None) -> None:
        """One connection: hold, subscribe, reconcile, release, consume until the stream drops,
        ``stop`` is set or ``max_events`` events were handled. Raises ``VenueUnknownOutcome`` on a
        drop or an incomplete reconciliation (the hold stays)."""
        venue = get_connector(self.exchange)
        venue_hold(exchange=self.exchange, account=self.user, reason="stream connecting")
        cursor = venue_session(exchange=self.exchange, account=self.user).cursor
        stream = venue.stream(account=self.user, cursor=cursor)
        venue_connected(exchange=self.exchange, account=self.user)
        self.connects += 1
        report = account_reconcile(account=self.account)
        if self.on_reconciled is not None:
            self.on_reconciled(report)
        if not report.complete:
            raise VenueUnknownOutcome("reconciliation incomplete: " + "; ".join(report.errors))
        venue_release(exchange=self.exchange, account=self.user)
        placements_kick(account=self.account)
        self._beat()
        handled = 0
        for event in stream:
            venue_event_apply(account=self.account, event=event)
            if event.cursor:
                venue_cursor_save(exchange=self.exchange, account=self.user, cursor=event.cursor)
            self._beat()
            self.events += 1
            handled += 1
            if self.stop.is_set() or (max_events is not None and handled >= max_events):
                return

    def run(self, *, max_connects: int | None = None, max_events: int | None = None) -> None:
        backoff = BACKOFF_START
        try:
            while not self.stop.is_set() and (max_connects is None or self.connects < max_connects):
                try:
                    self.connect_once(max_events=max_events)
                    backoff = BACKOFF_START
                    if max_events is not None:
                        return
                except (VenueUnknownOutcome, DatabaseError) as exc:
                    log.warning("venue stream %s:%s down: %s; reconnecting", self.exchange, self.user, exc)
                    if isinstance(exc, DatabaseError) and not connection.in_atomic_block:
                        close_old_connections()  # a broken connection is replaced on the next query
                    venue_hold(exchange=self.exchange, account=self.user, reason=str(exc))
                    self.stop.wait(backoff + random.uniform(0, backoff / 2))  # noqa: S311 - jitter
                    backoff = min(BACKOFF_MAX, backoff * 2)
        finally:
            venue_down(exchange=self.exchange, account=self.user)
