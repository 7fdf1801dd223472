"""Read queries of the MM engine. Every one takes the caller's client and scopes to it."""

from __future__ import annotations

from django.db.models import QuerySet

from trading.models import Client, Order


def orders_for_client(*, client: Client) -> QuerySet[Order]:
    """The client's orders, newest first, with what the order renderer reads joined in."""
    return Order.objects.for_client(client).select_related("fixture", "account").order_by("-created_at", "-id")
