"""Clients and their API keys."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from hedging.models import Bookmaker
from trading.models import ApiKey, Client, ClientTradingState


@transaction.atomic
def client_get_or_create(*, name: str, display_name: str = "") -> tuple[Client, bool]:
    """Create the client ``name`` (``vertex`` or ``demo:vertex``) if absent, with its hedge
    bookmaker and trading state. Idempotent; safe under concurrent calls (unique name)."""
    name = name.strip()
    if not name or name.count(":") > 1 or any(part == "" for part in name.split(":")):
        raise ValueError("client name must be 'name' or 'client:bookmaker'")
    bookmaker_code = name.split(":", 1)[1] if ":" in name else name
    bookmaker, _ = Bookmaker.objects.get_or_create(name=bookmaker_code, defaults={"display_name": bookmaker_code})
    client, created = Client.objects.get_or_create(
        name=name, defaults={"display_name": display_name or name, "hedge_bookmaker": bookmaker}
    )
    ClientTradingState.objects.get_or_create(client=client)
    return client, created


def api_key_create(*, client: Client, name: str = "") -> tuple[ApiKey, str]:
    """Create a key for ``client``; returns the row and the raw key, which is never stored."""
    raw, prefix, key_hash = ApiKey.generate()
    key = ApiKey.objects.create(client=client, name=name, prefix=prefix, key_hash=key_hash)
    return key, raw


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
