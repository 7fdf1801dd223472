"""Withdrawal tasks: the cooling period and the platform payout (thin: the services lock and re-check)."""

from __future__ import annotations

from celery import shared_task

from brokers.services import withdrawals as services


@shared_task(name="brokers.withdrawals_advance", acks_late=True, ignore_result=True, time_limit=110, soft_time_limit=90)
def withdrawals_advance_task() -> dict:
    """Beat: every pending withdrawal past its cooling period goes to ``processing``, and every
    ``processing`` one is paid by the platform (``completed``). Idempotent: each step re-checks the
    state under the withdrawal's row lock, so two runs at once or a redelivered message change nothing twice."""
    return services.withdrawals_advance()


@shared_task(name="brokers.withdrawal_platform_pay", acks_late=True, ignore_result=True)
def withdrawal_platform_pay_task(withdrawal_id: str) -> str:
    return services.withdrawal_platform_pay(withdrawal_id=withdrawal_id).status
