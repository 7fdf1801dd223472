"""Traders of the house exchange: create, find, keys. Every write to ``Trader``/``TraderApiKey`` is here."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from exchanges.models import Trader, TraderApiKey


@transaction.atomic
def trader_get_or_create(*, username: str, email: str = "", password: str | None = None) -> tuple[Trader, bool]:
    """The trader whose user is ``username``, created (user and profile) when absent.

    ``password`` is set only when the user is created; without one the user cannot log in by password
    (API keys, SSO). Returns ``(trader, created)``.
    """
    username = username.strip()
    if not username:
        raise ValueError("username is required")
    User = get_user_model()
    user, user_created = User.objects.get_or_create(username=username, defaults={"email": email})
    if user_created:
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(update_fields=["password"])
    trader, created = Trader.objects.get_or_create(user=user)
    return trader, created


def trader_key_create(*, trader: Trader, name: str = "") -> tuple[TraderApiKey, str]:
    """A new key for ``trader``; returns the row and the raw key, which is never stored."""
    raw, prefix, key_hash = TraderApiKey.generate()
    key = TraderApiKey.objects.create(trader=trader, name=name, prefix=prefix, key_hash=key_hash)
    return key, raw


def trader_key_revoke(*, api_key: TraderApiKey) -> None:
    """Revoke a key. This process forgets its cached keys at once, every other process within about a
    second (``exchanges.api.authentication.credentials_changed``)."""
    TraderApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    from exchanges.api.authentication import credentials_changed

    credentials_changed()


def trader_fund(*, trader: Trader, asset: str, amount, mode: str = "live", idempotency_key: str) -> None:
    """Deposit ``amount`` of ``asset`` into the trader's ``mode`` balance from the outside world.

    ``idempotency_key`` makes a retry (or a second run of a script) post once.
    """
    from exchanges.ledger import services as ledger
    from exchanges.ledger.choices import OwnerType

    account = ledger.account_get_or_create(owner_type=OwnerType.TRADER, owner_id=str(trader.pk), asset=asset, mode=mode)
    ledger.deposit(account=account, amount=amount, idempotency_key=idempotency_key)
