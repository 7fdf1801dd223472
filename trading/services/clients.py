"""Clients and their API keys."""

from __future__ import annotations

import re

from django.db import transaction
from django.utils import timezone

from hedging.models import Bookmaker
from trading.models import ApiKey, Client, ClientTradingState

# Each part is a slug (the bookmaker part becomes Bookmaker.name, a SlugField).
_NAME_PART = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def client_name_validate(name: str) -> str:
    """``vertex`` or ``demo:vertex``: one or two lower-case slugs joined by one colon; raises ValueError."""
    name = name.strip()
    parts = name.split(":")
    if not name or len(parts) > 2 or not all(_NAME_PART.match(p) for p in parts):
        raise ValueError(
            f"bad client name {name!r}: use 'bookmaker' (e.g. vertex) or 'client:bookmaker' (e.g. demo:vertex), "
            "each part lower-case letters, digits, '-' or '_', starting with a letter or digit, at most 63 characters"
        )
    return name


@transaction.atomic
def client_get_or_create(*, name: str, display_name: str = "") -> tuple[Client, bool]:
    """Create the client ``name`` (``vertex`` or ``demo:vertex``) if absent, with its hedge
    bookmaker and trading state. Idempotent; safe under concurrent calls (unique name)."""
    name = client_name_validate(name)
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
