"""Celery tasks: settlement of a fixture, and the sweep that finds fixtures left to settle.

``trading.settlement.settle_fixture`` is sent by the odds feed when a fixture reaches a final
status (``current_app.send_task(..., args=[fixture.pk])``), by the operator's result and void, and
by the sweep. Both tasks are routed to the ``settlement`` queue (CELERY_TASK_ROUTES), acknowledged
late and safe to run twice: the service writes only what is still undecided, under row locks.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import OperationalError

from trading.models import Fixture
from trading.services.settlement import enqueue_settlement, fixtures_needing_settlement, settle_fixture

log = logging.getLogger(__name__)


@shared_task(
    name="trading.settlement.settle_fixture",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(OperationalError,),  # a lost connection or a lock timeout: run again, it is idempotent
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def settle_fixture_task(fixture_id: int) -> dict:
    """Settle fixture ``fixture_id`` (the row's pk). Returns the summary as JSON-able data."""
    try:
        summary = settle_fixture(fixture_id=int(fixture_id))
    except Fixture.DoesNotExist:
        log.error("settle_fixture: no fixture with pk %s", fixture_id)
        return {"fixture": fixture_id, "error": "not_found"}
    return summary.as_dict()


@shared_task(name="trading.settlement.sweep", acks_late=True, ignore_result=True)
def settlement_sweep_task() -> int:
    """Send the settlement of every finished or voided fixture with undecided orders it can
    decide, or placed bets still undecided on settled orders. Returns how many were sent."""
    ids = fixtures_needing_settlement()
    for fixture_pk in ids:
        enqueue_settlement(fixture_pk)
    return len(ids)
