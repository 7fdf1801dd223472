"""Brokers, their staff, keys, clients, transfers and withdrawals.

Rows change only through ``brokers.services``. Tenant scoping lives in the querysets here
(``Broker.objects.subtree_of``, ``BrokerClient.objects.for_broker``, ``Withdrawal.objects.visible_to``),
used by the API, the console and the tasks alike.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from brokers.choices import ALL_SCOPES, TransferKind, WithdrawalStatus
from exchanges.ledger.choices import AMOUNT_DIGITS, AMOUNT_PLACES
from mmsite.keys import HashedApiKey, HashedKeyQuerySet

__all__ = [
    "Broker",
    "BrokerApiKey",
    "BrokerClient",
    "BrokerQuerySet",
    "BrokerStaff",
    "Transfer",
    "Withdrawal",
    "WithdrawalEvent",
]


def _amount(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, **kwargs)


class BrokerQuerySet(models.QuerySet):
    def subtree_of(self, broker: Broker) -> BrokerQuerySet:
        """``broker`` and every broker below it (its materialised ``path`` is a prefix of theirs)."""
        return self.filter(path__startswith=broker.path)

    def children_of(self, broker: Broker) -> BrokerQuerySet:
        return self.filter(parent=broker)


class Broker(models.Model):
    """A white-label broker (``parent`` empty: directly under the platform) or a sub-broker.

    ``path`` is ``/<root id>/.../<own id>/``: a broker's subtree is every broker whose path starts
    with its own (one indexed ``LIKE 'prefix%'``). ``brand_root`` is the top-level broker of the
    brand (itself for a top-level broker). ``account`` is the broker's DCT balance in the ledger:
    the broker's own account, or, for a trader upgraded to broker, that trader's account (the
    upgraded account keeps its balance and history).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=128, unique=True)
    short = models.CharField(
        max_length=16, unique=True, help_text="short code in client usernames: sso_{short}_{user_id}"
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    brand_root = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="brand_members"
    )
    path = models.CharField(max_length=1024, editable=False)
    tenant_code = models.CharField(
        max_length=64, unique=True, null=True, blank=True, help_text="the SSO tenant code (JWT tenant_code)"
    )
    sso_secret_encrypted = models.TextField(blank=True, default="", help_text="HS256 secret, encrypted at rest")
    wallet_address = models.CharField(
        max_length=64, blank=True, default="", help_text="bound wallet: the 'from' of OTC payouts on chain"
    )
    logout_redirect_url = models.URLField(max_length=500, blank=True, default="")
    account = models.ForeignKey(
        "exchanges.LedgerAccount", on_delete=models.PROTECT, related_name="+", help_text="the broker's DCT balance"
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="broker_account",
        help_text="the login of a broker upgraded from a trader",
    )
    upgraded_from = models.OneToOneField(
        "BrokerClient", null=True, blank=True, on_delete=models.PROTECT, related_name="upgraded_to"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BrokerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["path"], name="broker_path_prefix", opclasses=["varchar_pattern_ops"])]

    def __str__(self) -> str:
        return self.name

    @property
    def depth(self) -> int:
        return self.path.count("/") - 2

    def is_in_subtree_of(self, other: Broker) -> bool:
        return self.path.startswith(other.path)


class BrokerStaff(models.Model):
    """A Django user who works for a broker: in the console they see that broker's subtree only."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="broker_staff")
    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="staff")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "broker staff member"
        verbose_name_plural = "broker staff"

    def __str__(self) -> str:
        return f"{self.user} @ {self.broker}"


BrokerApiKeyQuerySet = HashedKeyQuerySet


class BrokerApiKey(HashedApiKey):
    """A broker API key ``bk_<prefix>_<secret>`` (:class:`mmsite.keys.HashedApiKey`) with scopes."""

    SCHEME = "bk"

    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="api_keys")
    scopes = models.JSONField(default=list, help_text="list of scopes, e.g. ['clients:list', 'balance:read']")

    class Meta:
        verbose_name = "broker API key"

    def __str__(self) -> str:
        return f"{self.SCHEME}_{self.prefix}… ({self.broker})"

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])

    @staticmethod
    def valid_scopes(scopes) -> list[str]:
        unknown = sorted(set(scopes) - set(ALL_SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}")
        return sorted(set(scopes))


class BrokerClientQuerySet(models.QuerySet):
    def for_broker(self, broker: Broker) -> BrokerClientQuerySet:
        """The broker's own (direct) clients: the scope of every ``/clients/{id}`` endpoint."""
        return self.filter(broker=broker)

    def in_subtree_of(self, broker: Broker) -> BrokerClientQuerySet:
        """Clients of ``broker`` and of every broker below it (the console's scope)."""
        return self.filter(broker__path__startswith=broker.path)


class BrokerClient(models.Model):
    """A trader of the house exchange served by a broker: the seed's ``BrokerClientConfig``.

    ``user_id`` is the broker's own id for its user (unique per broker); the platform username is
    ``sso_{broker.short}_{user_id}``, so the API and SSO always reach the same account.
    """

    broker = models.ForeignKey(Broker, on_delete=models.PROTECT, related_name="clients")
    trader = models.OneToOneField("exchanges.Trader", on_delete=models.PROTECT, related_name="broker_client")
    account = models.ForeignKey(
        "exchanges.LedgerAccount", on_delete=models.PROTECT, related_name="+", help_text="the client's DCT balance"
    )
    user_id = models.CharField(max_length=128)
    email = models.EmailField(blank=True, default="")
    wallet_address = models.CharField(max_length=64, blank=True, default="")
    logout_redirect_url = models.URLField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = BrokerClientQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["broker", "user_id"], name="broker_client_user_id")]

    def __str__(self) -> str:
        return f"{self.user_id} @ {self.broker_id}"

    @property
    def username(self) -> str:
        return self.trader.user.get_username()


class TransferQuerySet(models.QuerySet):
    def for_broker(self, broker: Broker) -> TransferQuerySet:
        return self.filter(broker=broker)

    def in_subtree_of(self, broker: Broker) -> TransferQuerySet:
        return self.filter(broker__path__startswith=broker.path)


class Transfer(models.Model):
    """One money movement of the brokerage, written in the same transaction as its ledger posting.

    The row is written first and its id keys the ledger transaction (``broker-transfer:<id>``);
    ``idempotency_key`` (unique per broker; the caller's ``Idempotency-Key`` or a generated one)
    makes a retried request return the first transfer instead of moving money twice.
    """

    broker = models.ForeignKey(Broker, on_delete=models.PROTECT, related_name="transfers")
    client = models.ForeignKey(BrokerClient, null=True, blank=True, on_delete=models.PROTECT, related_name="transfers")
    withdrawal = models.ForeignKey(
        "Withdrawal", null=True, blank=True, on_delete=models.PROTECT, related_name="transfers"
    )
    kind = models.CharField(max_length=24, choices=TransferKind.choices)
    asset = models.CharField(max_length=16)
    amount = _amount()
    fee = _amount(default=Decimal("0"))
    idempotency_key = models.CharField(max_length=200)
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    ledger_transaction = models.OneToOneField(
        "exchanges.LedgerTransaction", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.CharField(max_length=128, blank=True, default="")
    memo = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TransferQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["broker", "idempotency_key"], name="transfer_idempotency"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_pos"),
            models.CheckConstraint(condition=Q(fee__gte=0) & Q(fee__lte=F("amount")), name="transfer_fee_range"),
        ]
        indexes = [models.Index(fields=["broker", "-id"], name="transfer_broker_recent")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.asset} #{self.pk}"


class WithdrawalQuerySet(models.QuerySet):
    def visible_to(self, broker: Broker) -> WithdrawalQuerySet:
        """Withdrawals of clients of ``broker`` and of its sub-brokers: those it may read and lock (OTC)."""
        return self.filter(broker__path__startswith=broker.path)

    def in_subtree_of(self, broker: Broker) -> WithdrawalQuerySet:
        return self.visible_to(broker)


class Withdrawal(models.Model):
    """A client's withdrawal request and its OTC state machine (docs/brokerage.md).

    The client's funds (``amount``) are held in the ledger from the request until the end:
    captured to the OTC broker (``broker_completed``) or to the outside world (``completed``), or
    released (``cancelled``). ``net_amount = amount - fee`` is what the user receives in USDC.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    broker = models.ForeignKey(
        Broker, on_delete=models.PROTECT, related_name="withdrawals", help_text="the client's service broker"
    )
    client = models.ForeignKey(BrokerClient, on_delete=models.PROTECT, related_name="withdrawals")
    asset = models.CharField(max_length=16)
    amount = _amount()
    fee = _amount(default=Decimal("0"))
    net_amount = _amount()
    wallet_address = models.CharField(max_length=64, help_text="the user's wallet (the 'to' on chain)")
    status = models.CharField(
        max_length=24, choices=WithdrawalStatus.choices, default=WithdrawalStatus.PENDING, db_index=True
    )
    hold = models.OneToOneField("exchanges.Hold", on_delete=models.PROTECT, related_name="+")
    cooling_ends_at = models.DateTimeField()
    locked_by = models.ForeignKey(
        Broker, null=True, blank=True, on_delete=models.PROTECT, related_name="locked_withdrawals"
    )
    locked_at = models.DateTimeField(null=True, blank=True)
    timeout_hours = models.PositiveIntegerField(default=24)
    tx_hash = models.CharField(max_length=80, null=True, blank=True, unique=True)
    idempotency_key = models.CharField(max_length=200)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = WithdrawalQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["client", "idempotency_key"], name="withdrawal_idempotency"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="withdrawal_amount_pos"),
            models.CheckConstraint(
                condition=Q(fee__gte=0) & Q(net_amount__gt=0) & Q(amount=F("fee") + F("net_amount")),
                name="withdrawal_amount_parts",
            ),
            # A lock is a broker and a time together; only broker_locked carries one.
            models.CheckConstraint(
                condition=(
                    Q(status=WithdrawalStatus.BROKER_LOCKED, locked_by__isnull=False, locked_at__isnull=False)
                    | (~Q(status=WithdrawalStatus.BROKER_LOCKED) & Q(locked_by__isnull=True, locked_at__isnull=True))
                    | Q(status=WithdrawalStatus.BROKER_COMPLETED, locked_by__isnull=False)
                ),
                name="withdrawal_lock_consistent",
            ),
            models.CheckConstraint(
                condition=~Q(status=WithdrawalStatus.BROKER_COMPLETED) | Q(tx_hash__isnull=False),
                name="withdrawal_broker_completed_has_tx",
            ),
        ]
        indexes = [models.Index(fields=["status", "cooling_ends_at"], name="withdrawal_due")]

    def __str__(self) -> str:
        return f"withdrawal {self.pk} {self.amount} {self.asset} {self.status}"


class WithdrawalEvent(models.Model):
    """The history of a withdrawal: one row per state change, in the transaction of the change."""

    withdrawal = models.ForeignKey(Withdrawal, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=24, blank=True, default="")
    to_status = models.CharField(max_length=24)
    broker = models.ForeignKey(Broker, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor = models.CharField(max_length=128, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"
