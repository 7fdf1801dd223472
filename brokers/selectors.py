"""Read queries of the brokerage, each scoped to the calling broker and done in SQL."""

from __future__ import annotations

import uuid

from django.db.models import F, QuerySet

from brokers.choices import WithdrawalStatus
from brokers.errors import NotFound
from brokers.models import Broker, BrokerClient, Transfer, Withdrawal

CLIENT_LIST_FIELDS = dict(
    username=F("trader__user__username"),
    asset=F("account__asset"),
    balance=F("account__balance"),
    held=F("account__held"),
)


def clients_page(*, broker: Broker, page: int, size: int) -> tuple[int, list[dict]]:
    """One page of the broker's direct clients with their DCT balances, ordered by ``user_id``.

    Three small queries whatever the page: the count and the page's ids walk the unique index
    ``(broker, user_id)``; then the page's rows are joined to their users and ledger accounts by
    primary key (balances in the same SQL, never per row). Returns ``(total, rows)``.
    """
    base = BrokerClient.objects.for_broker(broker)
    total = base.count()
    offset = (page - 1) * size
    if offset >= total:
        return total, []
    ids = list(base.order_by("user_id").values_list("pk", flat=True)[offset : offset + size])
    rows = (
        BrokerClient.objects.filter(pk__in=ids)
        .order_by("user_id")
        .values("id", "user_id", "email", "wallet_address", "created_at", **CLIENT_LIST_FIELDS)
    )
    return total, list(rows)


def client_for_broker(*, broker: Broker, user_id: str) -> BrokerClient:
    """The broker's client ``user_id``; :class:`NotFound` for anyone else's (the tenant boundary)."""
    client = (
        BrokerClient.objects.for_broker(broker)
        .select_related("account", "trader__user", "broker")
        .filter(user_id=user_id)
        .first()
    )
    if client is None:
        raise NotFound(f"Client not found: user_id={user_id}")
    return client


def parse_withdrawal_id(value) -> uuid.UUID:
    """A withdrawal id from a URL: anything that is not a UUID is simply not found."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound("Withdrawal not found") from exc


def withdrawal_for_broker(*, broker: Broker, withdrawal_id) -> Withdrawal:
    pk = parse_withdrawal_id(withdrawal_id)
    w = Withdrawal.objects.visible_to(broker).select_related("client").filter(pk=pk).first()
    if w is None:
        raise NotFound("Withdrawal not found")
    return w


def pending_withdrawals(*, broker: Broker) -> QuerySet:
    """Withdrawals the broker may lock now: pending, cooling period not over, in its subtree."""
    from django.utils import timezone

    return (
        Withdrawal.objects.visible_to(broker)
        .filter(status=WithdrawalStatus.PENDING, cooling_ends_at__gt=timezone.now())
        .select_related("client")
        .order_by("cooling_ends_at")
    )


def client_withdrawals(*, client: BrokerClient) -> QuerySet:
    return Withdrawal.objects.filter(client=client).select_related("client").order_by("-created_at")


def transfers_for_broker(*, broker: Broker) -> QuerySet:
    return Transfer.objects.for_broker(broker).select_related("client").order_by("-id")


def sub_brokers(*, broker: Broker) -> QuerySet:
    """Every broker below ``broker`` (children, their children, ...), by path."""
    return Broker.objects.subtree_of(broker).exclude(pk=broker.pk).order_by("path")
