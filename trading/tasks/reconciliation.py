"""Celery tasks: reconciliation of our orders and fills with the venues (see
trading/services/reconciliation.py). Thin, idempotent, acknowledged late."""

from __future__ import annotations

from celery import shared_task

from trading.models import ExchangeAccount
from trading.services.reconciliation import account_reconcile, accounts_to_reconcile


@shared_task(name="trading.reconcile_account", acks_late=True, ignore_result=True)
def reconcile_account_task(account_id: int) -> bool:
    """Reconcile one active exchange account; True when the venue answered everything."""
    account = ExchangeAccount.objects.filter(pk=account_id, active=True).first()
    if account is None:
        return True
    return account_reconcile(account=account).complete


@shared_task(name="trading.reconcile_all", acks_late=True, ignore_result=True)
def reconcile_all_task() -> int:
    """Fan out one ``trading.reconcile_account`` per active account (beat, every minute)."""
    ids = accounts_to_reconcile()
    for account_id in ids:
        reconcile_account_task.delay(account_id)
    return len(ids)
