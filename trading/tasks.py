"""Celery tasks of the MM engine: thin wrappers that call services (JSON arguments only).

Beat entry for the PnL rollup (settings are owned elsewhere; add it there)::

    CELERY_BEAT_SCHEDULE = {
        "pnl-days-refresh": {"task": "trading.pnl_days_refresh", "schedule": 60.0, "options": {"expires": 55}},
    }
"""

from __future__ import annotations

from celery import shared_task

from trading.services.pnl import pnl_days_refresh


@shared_task(name="trading.pnl_days_refresh", acks_late=True, ignore_result=True)
def pnl_days_refresh_task(limit: int = 2000) -> int:
    """Recompute up to ``limit`` stale PnL rollup days. Idempotent: running it twice, or two at
    once, recomputes nothing wrongly (per-client lock, generation check); what it leaves is
    still answered exactly by ``GET /pnl``, only more slowly."""
    return pnl_days_refresh(limit=limit)
