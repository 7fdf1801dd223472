"""Read queries over MM orders. Every one takes the caller's client and scopes to it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum

from trading.choices import OPEN_ORDER_STATUSES, MatchedStatus, OrderStatus
from trading.models import Client, Order

ZERO = Decimal("0")
_STAKE = DecimalField(max_digits=18, decimal_places=4)


#: Newest first; ``id`` breaks ties so that pages never overlap or skip.
ORDER_LIST_ORDERING = ("-created_at", "-id")


def orders_for_client(*, client: Client) -> QuerySet[Order]:
    """The client's orders, newest first, with what the order renderer reads joined in."""
    return Order.objects.for_client(client).select_related("fixture", "account").order_by(*ORDER_LIST_ORDERING)


def order_values_page(*, client: Client, pks: QuerySet, columns: Iterable[str]) -> list[dict]:
    """``columns`` (ORM paths) of the client's orders whose pks ``pks`` (a sliced subquery) selects,
    newest first, as dicts: building 2000 model instances with their joins costs several times the
    query itself on the list endpoint's hot path."""
    return list(Order.objects.for_client(client).filter(pk__in=pks).order_by(*ORDER_LIST_ORDERING).values(*columns))


def open_orders_for_client(*, client: Client) -> QuerySet[Order]:
    """The client's orders that rest on, or are on their way to, a venue (PENDING_PLACEMENT, PLACED)."""
    return orders_for_client(client=client).open()


@dataclass(frozen=True)
class OrderSummary:
    total_orders: int
    by_order_status: dict[str, int]
    by_matched_status: dict[str, int]
    total_stake: Decimal
    matched_stake: Decimal
    open_stake: Decimal


def order_summary(*, client: Client, orders: QuerySet[Order] | None = None) -> OrderSummary:
    """Counts and stakes over ``orders`` (default: all the client's orders), in one SQL query.

    ``orders`` is typically ``orders_for_client`` narrowed by the request's filters; it is scoped to
    ``client`` again here, so a caller cannot summarise another client's orders by mistake.
    Every status is a key of the result, 0 when no order has it. ``open_stake`` is the unmatched
    remainder of orders still open (``order_stake - matched_stake`` of PENDING_PLACEMENT/PLACED);
    the unmatched part of a cancelled, failed or expired order is not at risk and not counted.
    """
    qs = (orders if orders is not None else Order.objects.all()).for_client(client).order_by()
    aggregates = {
        "total": Count("id"),
        "sum_total": Sum("order_stake", default=ZERO),
        "sum_matched": Sum("matched_stake", default=ZERO),
        "sum_open": Sum(
            F("order_stake") - F("matched_stake"),
            filter=Q(order_status__in=OPEN_ORDER_STATUSES),
            default=ZERO,
            output_field=_STAKE,
        ),
    }
    for status in OrderStatus.values:
        aggregates[f"os_{status}"] = Count("id", filter=Q(order_status=status))
    for status in MatchedStatus.values:
        aggregates[f"ms_{status}"] = Count("id", filter=Q(matched_status=status))
    row = qs.aggregate(**aggregates)
    return OrderSummary(
        total_orders=row["total"],
        by_order_status={s: row[f"os_{s}"] for s in OrderStatus.values},
        by_matched_status={s: row[f"ms_{s}"] for s in MatchedStatus.values},
        total_stake=row["sum_total"],
        matched_stake=row["sum_matched"],
        open_stake=row["sum_open"],
    )
