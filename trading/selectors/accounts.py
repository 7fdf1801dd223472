"""Read queries over a client's exchange accounts."""

from __future__ import annotations

from django.db.models import QuerySet

from trading.models import Client, ExchangeAccount


def accounts_for_client(*, client: Client) -> QuerySet[ExchangeAccount]:
    """The client's exchange accounts, oldest first.

    The encrypted credentials column is deferred: nothing that reads through here needs it, so the
    ciphertext never even leaves the database on the API's path.
    """
    return ExchangeAccount.objects.for_client(client).defer("credentials_encrypted").order_by("created_at", "id")
