"""Celery tasks of hedging: thin, idempotent, acknowledged late (a worker lost mid-task is redelivered).

``hedging.hedge_fill`` is sent by the fill service after the fill commits. Running it twice, or two
at once, leaves one bet row and one bookmaker bet per attempt key (``hedging.services``). A bet
still ``pending`` (the bookmaker said pending, or its answer was lost) is retried with backoff and
jitter; ``hedging.hedge_sweep`` (beat) picks up whatever a lost message or a dead worker left.
"""

from __future__ import annotations

import random

from celery import shared_task
from django.db import OperationalError

from .choices import BetStatus
from .services import hedge_fill, hedge_pending_ids


@shared_task(
    name="hedging.hedge_fill",
    bind=True,
    acks_late=True,
    ignore_result=True,
    max_retries=10,
    # the database unreachable for a moment (restart, connection limit): retry with backoff; the
    # bet row and the key make a rerun harmless, and the sweep is the backstop
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
)
def hedge_fill_task(self, fill_id: int) -> str | None:
    bet = hedge_fill(fill_id=fill_id)
    if bet is None:
        return None
    if bet.bet_status == BetStatus.PENDING and not self.request.is_eager:
        # eager (embedded default, tests): the sweep resolves it; a worker retries with backoff
        countdown = min(300, 2 ** (self.request.retries + 1)) + random.uniform(0, 1)  # noqa: S311
        raise self.retry(countdown=countdown)
    return bet.bet_status


@shared_task(name="hedging.hedge_sweep", acks_late=True, ignore_result=True)
def hedge_sweep_task(older_than_seconds: int = 30, limit: int = 500) -> int:
    """Resume every pending bet and hedge every fill that has none (each call is idempotent)."""
    ids = hedge_pending_ids(older_than_seconds=older_than_seconds, limit=limit)
    for fill_id in ids:
        hedge_fill(fill_id=fill_id)
    return len(ids)
