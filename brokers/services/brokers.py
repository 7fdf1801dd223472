"""Brokers, their staff, keys, SSO secrets and funding. Every write to ``Broker``/``BrokerApiKey`` is here."""

from __future__ import annotations

import re
import secrets
import uuid
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone

from brokers import conf
from brokers.choices import OWNER_BROKER, TransferKind
from brokers.errors import BadRequest, Conflict
from brokers.models import Broker, BrokerApiKey, BrokerClient, BrokerStaff, Transfer
from brokers.services import events
from exchanges.ledger import services as ledger
from mmsite.crypto import decrypt_json, encrypt_json

TENANT_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
WALLET_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")


def validate_wallet(address: str, *, field: str = "wallet_address") -> str:
    address = (address or "").strip()
    if address and not WALLET_RE.match(address):
        raise BadRequest(f"{field} must be a 0x-prefixed 40-hex-digit address")
    return address


def validate_url(url: str, *, field: str = "logout_redirect_url") -> str:
    url = (url or "").strip()
    if not url:
        return ""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError as exc:
        raise BadRequest(f"{field} must be an http(s) URL") from exc
    if len(url) > 500:
        raise BadRequest(f"{field}: at most 500 characters")
    return url


def _new_short() -> str:
    for _ in range(20):
        short = secrets.token_hex(3)
        if not Broker.objects.filter(short=short).exists():
            return short
    raise RuntimeError("no free broker short code")  # 16M codes: only a broken RNG gets here


@transaction.atomic
def broker_create(
    *,
    name: str,
    parent: Broker | None = None,
    tenant_code: str | None = None,
    wallet_address: str = "",
    logout_redirect_url: str = "",
    account_id: int | None = None,
    user=None,
    upgraded_from: BrokerClient | None = None,
) -> Broker:
    """A broker under ``parent`` (a white-label broker under the platform when ``parent`` is None).

    Its DCT balance is a new ledger account ``("broker", id)``, or ``account_id`` (an upgraded trader's).
    """
    name = (name or "").strip()
    if not name or len(name) > 128:
        raise BadRequest("name is required (at most 128 characters)")
    if tenant_code is not None:
        tenant_code = tenant_code.strip() or None
        if tenant_code and not TENANT_CODE_RE.match(tenant_code):
            raise BadRequest("tenant_code: letters, digits, '_', '.', '-' (at most 64)")
    wallet_address = validate_wallet(wallet_address)
    logout_redirect_url = validate_url(logout_redirect_url)
    if Broker.objects.filter(name=name).exists():
        raise Conflict(f"Broker already exists: name={name}")
    if tenant_code and Broker.objects.filter(tenant_code=tenant_code).exists():
        raise Conflict(f"tenant_code already in use: {tenant_code}")
    broker_id = uuid.uuid4()
    if account_id is None:
        account = ledger.account_get_or_create(owner_type=OWNER_BROKER, owner_id=str(broker_id), asset=conf.asset())
        account_id = account.pk
    path = f"{parent.path if parent else '/'}{broker_id}/"
    try:
        with transaction.atomic():
            broker = Broker.objects.create(
                id=broker_id,
                name=name,
                short=_new_short(),
                parent=parent,
                brand_root=parent.brand_root if parent else None,
                path=path,
                tenant_code=tenant_code,
                wallet_address=wallet_address,
                logout_redirect_url=logout_redirect_url,
                account_id=account_id,
                user=user,
                upgraded_from=upgraded_from,
            )
    except IntegrityError as exc:  # a concurrent create of the same name or tenant code
        raise Conflict(f"Broker already exists: name={name}") from exc
    if parent is None:
        Broker.objects.filter(pk=broker.pk).update(brand_root=broker)
        broker.brand_root = broker
    return broker


def broker_get_or_create(*, name: str, parent: Broker | None = None, **fields) -> tuple[Broker, bool]:
    existing = Broker.objects.filter(name=name.strip()).first()
    if existing is not None:
        return existing, False
    return broker_create(name=name, parent=parent, **fields), True


def broker_update(
    *,
    broker: Broker,
    tenant_code: str | None = None,
    wallet_address: str | None = None,
    logout_redirect_url: str | None = None,
) -> Broker:
    """Set the given fields (``None`` leaves one unchanged)."""
    fields = []
    if tenant_code is not None:
        tenant_code = tenant_code.strip()
        if not TENANT_CODE_RE.match(tenant_code):
            raise BadRequest("tenant_code: letters, digits, '_', '.', '-' (at most 64)")
        if Broker.objects.filter(tenant_code=tenant_code).exclude(pk=broker.pk).exists():
            raise Conflict(f"tenant_code already in use: {tenant_code}")
        broker.tenant_code = tenant_code
        fields.append("tenant_code")
    if wallet_address is not None:
        broker.wallet_address = validate_wallet(wallet_address)
        fields.append("wallet_address")
    if logout_redirect_url is not None:
        broker.logout_redirect_url = validate_url(logout_redirect_url)
        fields.append("logout_redirect_url")
    if fields:
        broker.save(update_fields=[*fields, "updated_at"])
    return broker


def broker_sso_secret_set(*, broker: Broker, secret: str | None = None) -> str:
    """Store ``secret`` (a new random one when None) encrypted; returns it (shown once)."""
    secret = secret or secrets.token_urlsafe(32)
    if len(secret) < 32:
        raise BadRequest("an SSO secret needs at least 32 characters (HS256 keys shorter than the hash are weak)")
    broker.sso_secret_encrypted = encrypt_json(secret)
    broker.save(update_fields=["sso_secret_encrypted", "updated_at"])
    return secret


def broker_sso_secret(broker: Broker) -> str | None:
    return decrypt_json(broker.sso_secret_encrypted) if broker.sso_secret_encrypted else None


# --- keys --------------------------------------------------------------------------------------------------


def broker_key_create(*, broker: Broker, scopes, name: str = "") -> tuple[BrokerApiKey, str]:
    """A new key for ``broker`` with ``scopes``; returns the row and the raw key, which is never stored."""
    try:
        scopes = BrokerApiKey.valid_scopes(scopes)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    raw, prefix, key_hash = BrokerApiKey.generate()
    key = BrokerApiKey.objects.create(broker=broker, name=name, prefix=prefix, key_hash=key_hash, scopes=scopes)
    return key, raw


def broker_key_revoke(*, api_key: BrokerApiKey) -> None:
    BrokerApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


# --- staff -------------------------------------------------------------------------------------------------


def broker_staff_add(*, broker: Broker, user) -> BrokerStaff:
    """Make ``user`` staff of ``broker``: a console login that sees the broker's subtree only."""
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    staff, _ = BrokerStaff.objects.update_or_create(user=user, defaults={"broker": broker})
    return staff


@transaction.atomic
def sub_broker_create(
    *,
    parent: Broker,
    name: str,
    username: str = "",
    password: str = "",
    email: str = "",
    wallet_address: str = "",
    logout_redirect_url: str = "",
) -> Broker:
    """A sub-broker under ``parent``; with ``username`` and ``password`` also its console login."""
    broker = broker_create(
        name=name, parent=parent, wallet_address=wallet_address, logout_redirect_url=logout_redirect_url
    )
    if username:
        if not password or len(password) < 8:
            raise BadRequest("password: at least 8 characters are required with a username")
        User = get_user_model()
        try:
            UnicodeUsernameValidator()(username)
        except ValidationError as exc:
            raise BadRequest("username: letters, digits and @/./+/-/_ only") from exc
        if User.objects.filter(username=username).exists():
            raise Conflict(f"username already taken: {username}")
        user = User.objects.create_user(username=username, email=email, password=password)
        broker_staff_add(broker=broker, user=user)
    events.emit(
        broker=parent,
        event_type="sub_broker.created",
        data={"broker_id": str(broker.pk), "name": broker.name, "parent_broker_id": str(parent.pk)},
    )
    return broker


@transaction.atomic
def client_upgrade_to_broker(*, client: BrokerClient, password: str = "") -> Broker:
    """Make the trader of ``client`` a broker.

    The parent is the client's original service broker (``client.broker``), whoever calls this; the
    new broker's balance is the trader's own DCT account, so balance and history stay where they
    are, and the trader stays a client of its service broker.
    """
    client = BrokerClient.objects.select_for_update().select_related("broker", "trader__user").get(pk=client.pk)
    if Broker.objects.filter(upgraded_from=client).exists():
        raise Conflict(f"Client already upgraded to broker: user_id={client.user_id}")
    user = client.trader.user
    if password:
        if len(password) < 8:
            raise BadRequest("password: at least 8 characters")
        user.set_password(password)
        user.save(update_fields=["password"])
    broker = broker_create(
        name=user.get_username(),
        parent=client.broker,
        account_id=client.account_id,
        user=user,
        upgraded_from=client,
        wallet_address=client.wallet_address,
    )
    broker_staff_add(broker=broker, user=user)
    events.emit(
        broker=client.broker,
        event_type="client.upgraded",
        data={"user_id": client.user_id, "broker_id": str(broker.pk), "parent_broker_id": str(client.broker_id)},
    )
    return broker


# --- funding -----------------------------------------------------------------------------------------------


@transaction.atomic
def broker_fund(*, broker: Broker, amount: Decimal, idempotency_key: str, actor: str = "", memo: str = "") -> Transfer:
    """The platform credits ``broker`` with ``amount`` DCT from the outside world (console, command)."""
    existing = Transfer.objects.filter(broker=broker, idempotency_key=idempotency_key).first()
    if existing is not None:
        if existing.kind != TransferKind.FUNDING or existing.amount != amount:
            raise Conflict("idempotency key already used for another transfer")
        return existing
    t = Transfer.objects.create(
        broker=broker,
        kind=TransferKind.FUNDING,
        asset=conf.asset(),
        amount=amount,
        idempotency_key=idempotency_key,
        actor=actor,
        memo=memo,
    )
    txn = ledger.deposit(account=broker.account, amount=amount, idempotency_key=f"broker-transfer:{t.pk}", memo=memo)
    Transfer.objects.filter(pk=t.pk).update(ledger_transaction=txn)
    t.ledger_transaction = txn
    events.emit_transfer(t)
    return t
