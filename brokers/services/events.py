"""Webhook events of the brokerage, written to the webhook outbox inside the caller's transaction.

``brokers.services.webhooks.webhook_emit(*, broker, event_type, data)`` is the outbox (its module
owns delivery and signing). Every call here happens inside the transaction of the event, so the
event exists if and only if the change committed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from brokers.models import Broker, BrokerClient, Transfer, Withdrawal


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


def emit(*, broker: Broker, event_type: str, data: dict[str, Any]) -> None:
    """Write one event for ``broker`` to the outbox (call inside the event's transaction)."""
    from brokers.services.webhooks import webhook_emit  # imported late: it imports the tasks

    webhook_emit(broker=broker, event_type=event_type, data={k: _plain(v) for k, v in data.items()})


def client_payload(client: BrokerClient) -> dict[str, Any]:
    return {
        "user_id": client.user_id,
        "username": client.trader.user.get_username(),
        "email": client.email,
        "broker_id": str(client.broker_id),
        "created_at": client.created_at.isoformat(),
    }


def transfer_payload(t: Transfer) -> dict[str, Any]:
    return {
        "transfer_id": t.pk,
        "type": t.kind,
        "user_id": t.client.user_id if t.client_id else None,
        "asset": t.asset,
        "amount": t.amount,
        "fee": t.fee,
        "withdrawal_id": str(t.withdrawal_id) if t.withdrawal_id else None,
        "created_at": t.created_at.isoformat(),
    }


def withdrawal_payload(w: Withdrawal) -> dict[str, Any]:
    return {
        "withdrawal_id": str(w.pk),
        "user_id": w.client.user_id,
        "status": w.status,
        "asset": w.asset,
        "amount": w.amount,
        "fee": w.fee,
        "net_amount": w.net_amount,
        "wallet_address": w.wallet_address,
        "locked_by_broker_id": str(w.locked_by_id) if w.locked_by_id else None,
        "tx_hash": w.tx_hash,
    }


def emit_transfer(t: Transfer) -> None:
    emit(broker=t.broker, event_type="transfer.created", data=transfer_payload(t))


def emit_withdrawal(w: Withdrawal, *, also: Broker | None = None) -> None:
    """``withdrawal.<status>`` to the client's broker, and to ``also`` (the OTC broker) when it differs."""
    data = withdrawal_payload(w)
    emit(broker=w.broker, event_type=f"withdrawal.{w.status}", data=data)
    if also is not None and also.pk != w.broker_id:
        emit(broker=also, event_type=f"withdrawal.{w.status}", data=data)
