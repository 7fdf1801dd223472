"""Positions: the client's orders grouped by (fixture, outcome, player, exchange), in SQL.

The position statuses (``open``, ``matched``, ``filled``, ``cancelled``, ``active``) are defined
here once; the API filter (``trading.api.position_filters``) parses them. The aggregating
selectors take a queryset that must come from ``position_orders`` (scoped to one client).
Definitions and a worked example: docs/api/mm-positions-pnl.md.
"""

from __future__ import annotations

import operator
from decimal import ROUND_HALF_UP, Decimal
from functools import reduce
from typing import Any

from django.db.models import CharField, Count, DecimalField, F, Func, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Concat

from trading.choices import OPEN_ORDER_STATUSES, OrderStatus, SettlementStatus
from trading.models import Client, Order

OPEN_Q = Q(order_status__in=OPEN_ORDER_STATUSES)
MATCHED_Q = Q(matched_stake__gt=0)

#: position status (the ``status`` parameter) -> the orders it selects; several are a union
POSITION_STATUS_Q: dict[str, Q] = {
    "open": OPEN_Q,
    "matched": MATCHED_Q,
    "filled": Q(order_status=OrderStatus.FILLED),
    "cancelled": Q(order_status=OrderStatus.CANCELLED),
    "active": OPEN_Q | (MATCHED_Q & Q(settlement_status=SettlementStatus.UNDECIDED)),
}
DEFAULT_POSITION_STATUS = "active"


def position_status_q(statuses: list[str]) -> Q:
    """The union of the given position statuses (the default, ``active``, when none)."""
    return reduce(operator.or_, (POSITION_STATUS_Q[s] for s in statuses or [DEFAULT_POSITION_STATUS]))


STAKE_Q = Decimal("0.0001")
PRICE_Q = Decimal("0.0001")
ZERO = Decimal("0")

#: wide enough for sums of products of NUMERIC(18,4) by NUMERIC(10,4) over millions of rows
SUM_FIELD = DecimalField(max_digits=38, decimal_places=8)


class Ratio(Func):
    """``a / b`` computed by the database, NULL when ``b`` is 0.

    SQLite divides two integer-valued numbers as integers (``1 / 3 = 0``), and a NUMERIC column
    holding ``100.0000`` is stored there as the integer 100, so on SQLite the numerator is cast
    to REAL first; PostgreSQL divides NUMERIC exactly.
    """

    arity = 2
    output_field = SUM_FIELD

    def as_sql(self, compiler, connection, **extra_context):
        (num, num_params), (den, den_params) = (compiler.compile(e) for e in self.source_expressions)
        cast = "CAST(%s AS REAL)" if connection.vendor == "sqlite" else "(%s)"
        return f"({cast % num} / NULLIF({den}, 0))", (*num_params, *den_params)

    as_sqlite = as_sql  # bypass SQLiteNumericMixin's CAST(... AS NUMERIC), which would make it integral again


def quantize(value: Decimal | None, exp: Decimal) -> Decimal:
    """Round half up to ``exp`` (None, from an empty set, is 0)."""
    return (value if value is not None else ZERO).quantize(exp, rounding=ROUND_HALF_UP)


def position_orders(*, client: Client) -> QuerySet[Order]:
    """The client's orders, unordered: the base every position filter narrows."""
    return Order.objects.for_client(client).order_by()


def _stake_aggregates() -> dict[str, Any]:
    """The aggregates a position and a summary share, over a set of orders.

    ``avgPrice`` is weighted by matched stake, or by order stake when nothing in the set matched.
    """
    matched_weighted = Ratio(Sum(F("matched_stake") * F("order_cents"), output_field=SUM_FIELD), Sum("matched_stake"))
    stake_weighted = Ratio(Sum(F("order_stake") * F("order_cents"), output_field=SUM_FIELD), Sum("order_stake"))
    return {
        "orderCount": Count("*"),  # not Count("id"): the id is not in the covering index
        "totalStake": Sum("order_stake", default=ZERO),
        "matchedStake": Sum("matched_stake", default=ZERO),
        "openStake": Sum(F("order_stake") - F("matched_stake"), filter=OPEN_Q, default=ZERO, output_field=SUM_FIELD),
        "avgPrice": Coalesce(matched_weighted, stake_weighted, Value(ZERO), output_field=SUM_FIELD),
    }


def _render(row: dict[str, Any]) -> dict[str, Any]:
    """Round in place: stakes and prices to the 4 places the order columns have."""
    for key in ("totalStake", "matchedStake", "openStake"):
        row[key] = quantize(row[key], STAKE_Q)
    row["avgPrice"] = quantize(row["avgPrice"], PRICE_Q)
    return row


def positions(*, orders: QuerySet[Order]) -> list[dict[str, Any]]:
    """One row per (fixture, outcome, player, exchange) of ``orders``: one GROUP BY query,
    ordered by fixture id, outcome, player, exchange. Every column it reads from the order is in
    the ``order_active_position`` index, so the default set is an index-only scan."""
    keys = ("fixture__fixture_id", "outcome_id", "player_id", "exchange")
    rows = orders.order_by().values(*keys).annotate(**_stake_aggregates()).order_by(*keys)
    return [
        _render(
            {
                "fixtureId": r.pop("fixture__fixture_id"),
                "outcomeId": r.pop("outcome_id"),
                "playerId": r.pop("player_id"),
                "exchange": r.pop("exchange"),
                **r,
            }
        )
        for r in rows
    ]


def _position_key() -> Concat:
    """A position's key within one exchange as text, so that positions can be counted with
    COUNT(DISTINCT ...) on any backend."""
    parts = [F("fixture_id"), Value(":"), F("outcome_id"), Value(":"), F("player_id")]
    return Concat(*parts, output_field=CharField())


def positions_summary(*, orders: QuerySet[Order]) -> dict[str, Any]:
    """``orders`` rolled up into one object, plus one row per exchange: two aggregate queries.

    Positions are counted distinct per exchange only: the exchange is part of a position's key,
    so the total is the sum of the per-exchange counts (and a second COUNT(DISTINCT) over every
    order, the most expensive aggregate here, is saved)."""
    orders = orders.order_by()
    by_exchange = [
        _render(dict(r))
        for r in orders.values("exchange")
        .annotate(
            positionCount=Count(_position_key(), distinct=True),
            fixtureCount=Count("fixture_id", distinct=True),
            **_stake_aggregates(),
        )
        .order_by("exchange")
    ]
    total = orders.aggregate(fixtureCount=Count("fixture_id", distinct=True), **_stake_aggregates())
    return {
        "positionCount": sum(r["positionCount"] for r in by_exchange),
        **_render(total),
        "byExchange": by_exchange,
    }
