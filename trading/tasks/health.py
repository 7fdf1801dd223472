"""Celery task: the stale-input check behind the automatic soft pause (trading.services.health)."""

from __future__ import annotations

from celery import shared_task

from trading.services.health import health_check


@shared_task(name="trading.health.check", acks_late=True, ignore_result=True)
def health_check_task() -> dict:
    """Soft-pause the clients a stale feed or venue stream concerns; lift it when they recover.
    Idempotent: it only writes when a client's state must change, under the client's row lock."""
    report = health_check()
    return {"stale": sorted(report.stale), "paused": report.paused, "resumed": report.resumed}
