"""Celery tasks: placement of MM orders, the sweep of ambiguous placements, and the kick-off sweep
of quotes (see trading/tasks/__init__.py). Thin: they take ids, call a service that refuses a
wrong state, and are safe to run twice (acknowledged late)."""

from __future__ import annotations

import datetime as dt
import logging
import random

from celery import shared_task

from trading.models import LiveQuote
from trading.services.placement import PlacementThrottled, order_place, order_resolve_unknown, orders_needing_resolution
from trading.services.quoting import quote_refresh, quotes_cancel_not_quotable

log = logging.getLogger(__name__)

#: A PENDING_PLACEMENT order untouched this long is looked at by the sweep.
STALE_PENDING = dt.timedelta(seconds=15)


@shared_task(name="trading.order_place", bind=True, acks_late=True, ignore_result=True, max_retries=100)
def order_place_task(self, order_id: int) -> None:
    """Place order ``order_id`` (``trading.services.placement.order_place``). When the account's
    token bucket is empty, retry after the wait it names (plus jitter), never sleeping in a
    worker. In-process (eager) mode there is no delayed retry: the order stays PENDING_PLACEMENT
    and the ``trading.orders_resolve_unknown`` sweep sends it."""
    try:
        order_place(order_id=order_id)
    except PlacementThrottled as exc:
        if self.request.is_eager:
            log.info("order %s throttled in eager mode; left for the sweep", order_id)
            return
        raise self.retry(countdown=exc.retry_after + random.uniform(0, 0.25)) from exc


@shared_task(name="trading.orders_resolve_unknown", acks_late=True, ignore_result=True)
def orders_resolve_unknown_task(older_than_seconds: float = STALE_PENDING.total_seconds()) -> int:
    """Every PENDING_PLACEMENT order untouched for a while: ask its venue what became of it (or send
    it, if it was never sent). Returns how many were looked at."""
    ids = orders_needing_resolution(older_than=dt.timedelta(seconds=older_than_seconds))
    for order_id in ids:
        try:
            order_resolve_unknown(order_id=order_id)
        except PlacementThrottled:
            log.info("sweep: order %s throttled; next run", order_id)
    return len(ids)


@shared_task(name="trading.quotes_cancel_not_quotable", acks_late=True, ignore_result=True)
def quotes_cancel_not_quotable_task() -> int:
    """Cancel live quotes on fixtures that started (tournament not quoted in play) or ended."""
    return quotes_cancel_not_quotable()


@shared_task(name="trading.quote_repost", acks_late=True, ignore_result=True)
def quote_repost_task(order_id: int) -> str | None:
    """After a fill of order ``order_id``: decide its quote key again (``quote_refresh``), which
    reposts the filled size when trading is active and ``max_outcome_stake`` leaves room, and
    does nothing while paused or stopped. Only for the key's live order: a late fill of an older
    order must not requote with that order's stale bookmaker price. Safe to run twice: the second
    run finds the key unchanged."""
    if not LiveQuote.objects.filter(order_id=order_id).exists():
        return None
    decision = quote_refresh(order_id=order_id)
    return decision.action.value if decision is not None else None
