"""Celery tasks: fills (see trading/tasks/__init__.py)."""

from __future__ import annotations

from celery import shared_task

from trading.models import ExchangeAccount
from trading.services.fills import fills_poll


@shared_task(name="trading.fills_poll", acks_late=True, ignore_result=True)
def fills_poll_task(account_id: int) -> int:
    """Poll one exchange account's fills. Idempotent: a fill seen twice is applied once."""
    account = ExchangeAccount.objects.filter(pk=account_id, active=True).first()
    if account is None:
        return 0
    return len(fills_poll(account=account))


@shared_task(name="trading.fills_poll_all", acks_late=True, ignore_result=True)
def fills_poll_all_task() -> int:
    """Fan out one ``trading.fills_poll`` per active account (for beat)."""
    ids = list(ExchangeAccount.objects.filter(active=True).values_list("id", flat=True))
    for account_id in ids:
        fills_poll_task.delay(account_id)
    return len(ids)
