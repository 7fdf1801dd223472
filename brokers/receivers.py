"""Signal receivers of the brokerage: trader fills on the house exchange become ``fill`` webhooks.

``exchanges.signals.trades_committed`` is sent after the matching transaction has committed, so the
outbox rows are written here in a transaction of their own (docs/webhooks.md, "fill"): a process
that dies between the two commits loses the webhook of those fills, never a trade. Each event id is
derived from the trade id and the side (``event_key``), so emitting the same fills twice writes each
event once. Receivers must not raise (the sender logs a failure and carries on).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import receiver

from exchanges.signals import trades_committed

logger = logging.getLogger(__name__)


@receiver(trades_committed, dispatch_uid="brokers.fill_webhooks")
def fill_webhooks_on_trades_committed(sender, *, trades, mode, **kwargs) -> None:
    if mode != "live" or not trades:
        return  # paper trading is the trader's sandbox: brokers are told about real fills only
    from brokers.services.webhooks import webhook_fills_emit

    with transaction.atomic():
        webhook_fills_emit(trade_ids=[t.pk for t in trades])
