"""Webhook delivery from the outbox (queue ``webhooks``).

``brokers.webhook_deliver`` is sent when the event's transaction commits and makes one attempt; a
failed attempt sets the delivery's ``next_attempt_at`` and ``brokers.webhooks_sweep`` (beat) sends the
retries when they fall due, as well as any delivery whose task message was lost. Both are safe to run
twice or at once: the service claims a delivery under a row lock before it POSTs.
"""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from brokers.services.webhooks import (
    webhook_deliver,
    webhook_deliveries_due,
    webhook_fills_emit,
    webhook_fills_recent_ids,
)


@shared_task(name="brokers.webhook_deliver", acks_late=True, ignore_result=True)
def webhook_deliver_task(delivery_id: int) -> str | None:
    delivery = webhook_deliver(delivery_id=delivery_id)
    return None if delivery is None else delivery.status


@shared_task(name="brokers.webhooks_sweep", acks_late=True, ignore_result=True)
def webhooks_sweep_task(limit: int = 500) -> int:
    """Queue an attempt for every delivery that is due and unclaimed."""
    ids = webhook_deliveries_due(limit=limit)
    for delivery_id in ids:
        webhook_deliver_task.delay(delivery_id)
    return len(ids)


@shared_task(name="brokers.fill_webhooks_sweep", acks_late=True, ignore_result=True)
def fill_webhooks_sweep_task(window_seconds: int = 600, settle_seconds: int = 10) -> int:
    """Write the fill events of recent live trades that have none (their receiver never ran: the process
    died after the trade committed). Each (trade, side) has one event id, so existing ones are kept."""
    now = timezone.now()
    ids = webhook_fills_recent_ids(
        since=now - dt.timedelta(seconds=window_seconds), until=now - dt.timedelta(seconds=settle_seconds)
    )
    if not ids:
        return 0
    with transaction.atomic():
        return len(webhook_fills_emit(trade_ids=ids))
