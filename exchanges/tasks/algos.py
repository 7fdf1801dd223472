"""Tasks of TWAP, scale orders and the dead-man's switch (thin: the services hold the logic).

All are idempotent and acknowledged late: a slice is placed in the transaction that marks it placed
(a second run finds it placed), and a fired dead-man's switch is off (a second sweep finds nothing).
Queue ``algos`` (``CELERY_TASK_ROUTES``); the two sweeps run every second from beat.
"""

from __future__ import annotations

from celery import shared_task

from exchanges.services import deadman, twap


@shared_task(name="exchanges.twap_slice_run", acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=50)
def twap_slice_run(slice_id: int) -> str | None:
    """Run one TWAP slice if it is pending and due (slice 0 right after the TWAP commits)."""
    piece = twap.twap_slice_run(slice_id=slice_id)
    return None if piece is None else piece.status


@shared_task(name="exchanges.twap_run_due", acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=50)
def twap_run_due() -> int:
    """Beat, every second: run every due TWAP slice."""
    return twap.twaps_run_due()


@shared_task(name="exchanges.deadman_sweep", acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=50)
def deadman_sweep() -> int:
    """Beat, every second: fire every dead-man's switch whose heartbeats stopped."""
    return deadman.dms_trigger_due()
