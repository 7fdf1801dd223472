"""Broker clients (traders served by a broker) and the money brokers move to them."""

from __future__ import annotations

import hashlib
import re
import uuid
from decimal import Decimal

from django.db import IntegrityError, transaction

from brokers import conf
from brokers.choices import OWNER_TRADER, TransferKind
from brokers.errors import BadRequest, Conflict
from brokers.models import Broker, BrokerClient, Transfer
from brokers.services import events
from brokers.services.brokers import validate_wallet
from exchanges.ledger import services as ledger
from exchanges.ledger.exceptions import InsufficientFunds
from exchanges.services.traders import trader_get_or_create

USER_ID_RE = re.compile(r"^[A-Za-z0-9@.+_-]{1,100}$")


def client_username(*, broker: Broker, user_id: str) -> str:
    """``sso_{brokerShort}_{userId}``: the one platform username of a broker's user (API and SSO alike)."""
    return f"sso_{broker.short}_{user_id}"


def normalize_user_id(value) -> str:
    """The broker's user id as a string (the seed allows a string or an integer)."""
    if isinstance(value, bool) or value is None:
        raise BadRequest("user_id is required (a string or an integer)")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not USER_ID_RE.match(value.strip()):
        raise BadRequest("user_id must be 1-100 characters of letters, digits and @.+-_")
    return value.strip()


def _client_account_id(trader) -> int:
    return ledger.account_get_or_create(owner_type=OWNER_TRADER, owner_id=str(trader.pk), asset=conf.asset()).pk


@transaction.atomic
def client_create(
    *, broker: Broker, user_id, email: str = "", password: str | None = None, wallet_address: str = ""
) -> BrokerClient:
    """A new trader account for ``broker``'s user ``user_id``; :class:`Conflict` if it exists."""
    user_id = normalize_user_id(user_id)
    wallet_address = validate_wallet(wallet_address)
    username = client_username(broker=broker, user_id=user_id)
    if BrokerClient.objects.filter(broker=broker, user_id=user_id).exists():
        raise Conflict(f"Client already exists: user_id={user_id}", username=username)
    trader, _ = trader_get_or_create(username=username, email=email or "", password=password or None)
    try:
        with transaction.atomic():
            client = BrokerClient.objects.create(
                broker=broker,
                trader=trader,
                account_id=_client_account_id(trader),
                user_id=user_id,
                email=email or "",
                wallet_address=wallet_address,
            )
    except IntegrityError as exc:  # a concurrent create of the same user_id
        raise Conflict(f"Client already exists: user_id={user_id}", username=username) from exc
    client.broker = broker
    events.emit(broker=broker, event_type="client.created", data=events.client_payload(client))
    return client


def client_get_or_create(
    *, broker: Broker, user_id, email: str = "", wallet_address: str = "", logout_redirect_url: str = ""
) -> tuple[BrokerClient, bool]:
    """The client of ``broker`` for ``user_id`` (SSO: the same user_id is always the same account)."""
    user_id = normalize_user_id(user_id)
    existing = BrokerClient.objects.select_related("trader__user").filter(broker=broker, user_id=user_id).first()
    created = False
    if existing is None:
        try:
            existing = client_create(broker=broker, user_id=user_id, email=email, wallet_address=wallet_address)
            created = True
        except Conflict:  # created meanwhile by a concurrent login
            existing = BrokerClient.objects.select_related("trader__user").get(broker=broker, user_id=user_id)
    updates = {}
    if wallet_address and wallet_address != existing.wallet_address:
        updates["wallet_address"] = validate_wallet(wallet_address)
    if logout_redirect_url != existing.logout_redirect_url:
        updates["logout_redirect_url"] = logout_redirect_url
    if updates:
        BrokerClient.objects.filter(pk=existing.pk).update(**updates)
        for k, v in updates.items():
            setattr(existing, k, v)
    return existing, created


def _fingerprint(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def client_deposit(
    *,
    broker: Broker,
    client: BrokerClient,
    amount: Decimal,
    idempotency_key: str | None = None,
    actor: str = "",
    memo: str = "",
) -> tuple[Transfer, bool]:
    """Move ``amount`` DCT from ``broker``'s balance to ``client``'s. Returns ``(transfer, created)``.

    The transfer row is written first, in the same transaction as the ledger transaction its id keys
    (``broker-transfer:<id>``). A retry with the same ``idempotency_key`` returns the first transfer
    (``created`` False) and moves nothing, also when the two run concurrently (the unique index makes
    the second wait for the first, fail, and answer with the first); the same key with another client
    or amount is a :class:`Conflict`. Refused with :class:`BadRequest` when the broker's available
    balance is short; nothing is written then. Locks: the two ledger accounts (ascending id, inside
    ``ledger.transfer``).
    """
    if client.broker_id != broker.pk:
        raise BadRequest("the client is not served by this broker")
    key = idempotency_key or f"auto:{uuid.uuid4()}"
    if len(key) > 200:
        raise BadRequest("idempotency key: at most 200 characters")
    fingerprint = _fingerprint(TransferKind.DEPOSIT, client.pk, amount)

    def replay() -> tuple[Transfer, bool] | None:
        existing = Transfer.objects.filter(broker=broker, idempotency_key=key).first()
        if existing is None:
            return None
        if existing.request_fingerprint != fingerprint:
            raise Conflict("Idempotency-Key already used for a different request")
        return existing, False

    first = replay()
    if first is not None:
        return first
    try:
        t = _deposit(
            broker=broker, client=client, amount=amount, key=key, fingerprint=fingerprint, actor=actor, memo=memo
        )
    except IntegrityError:
        first = replay()  # the same key committed concurrently: answer with it
        if first is None:
            raise
        return first
    return t, True


@transaction.atomic
def _deposit(
    *, broker: Broker, client: BrokerClient, amount: Decimal, key: str, fingerprint: str, actor: str, memo: str
) -> Transfer:
    t = Transfer.objects.create(
        broker=broker,
        client=client,
        kind=TransferKind.DEPOSIT,
        asset=conf.asset(),
        amount=amount,
        idempotency_key=key,
        request_fingerprint=fingerprint,
        actor=actor,
        memo=memo,
    )
    try:
        txn = ledger.transfer(
            idempotency_key=f"broker-transfer:{t.pk}",
            kind="broker_deposit",
            legs=[(broker.account_id, -amount), (client.account_id, amount)],
            memo=memo or f"deposit to {client.user_id}",
            metadata={"broker_id": str(broker.pk), "user_id": client.user_id, "transfer_id": t.pk},
        )
    except InsufficientFunds as exc:
        raise BadRequest(
            f"Insufficient broker balance: available {exc.available}, requested {amount}",
            available=str(exc.available),
        ) from exc
    Transfer.objects.filter(pk=t.pk).update(ledger_transaction=txn)
    t.ledger_transaction = txn
    t.client = client
    events.emit(broker=broker, event_type="deposit.completed", data=events.transfer_payload(t))
    events.emit_transfer(t)
    return t
