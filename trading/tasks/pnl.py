"""The PnL rollup refresh (scheduled in CELERY_BEAT_SCHEDULE, mmsite/settings/base.py)."""

from __future__ import annotations

from celery import shared_task

from trading.services.pnl import pnl_days_refresh


@shared_task(name="trading.pnl_days_refresh", acks_late=True, ignore_result=True)
def pnl_days_refresh_task(limit: int = 2000) -> int:
    """Recompute up to ``limit`` stale PnL rollup days. Idempotent: running it twice, or two at
    once, recomputes nothing wrongly (per-client lock, generation check); what it leaves is
    still answered exactly by ``GET /pnl``, only more slowly."""
    return pnl_days_refresh(limit=limit)
