"""Output shapes of the MM client API, in the seed's camelCase.

Each renderer is a plain function over model rows (no DRF ``Serializer`` per row): a 2000-row page
is on the hot path, and these are several times faster. The matching DRF serializers below exist
only to describe the shapes in the OpenAPI schema; a test keeps the two in step.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers


def num(value: Decimal | None) -> Decimal | None:
    """Decimals render as JSON numbers (DRF's encoder); None stays null."""
    return value


def iso(value) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


# --- orders -------------------------------------------------------------------------------------------------


def order_row(o) -> dict[str, Any]:
    return {
        "orderId": o.id,
        "fixtureId": o.fixture.fixture_id,
        "outcomeId": o.outcome_id,
        "playerId": o.player_id,
        "exchange": o.exchange,
        "account": o.account.username,
        "exchangeOrderId": o.exchange_order_id,
        "exchangeOutcomeId": o.exchange_outcome_id,
        "orderStatus": o.order_status,
        "matchedStatus": o.matched_status,
        "orderCents": o.order_cents,
        "orderStake": o.order_stake,
        "matchedStake": o.matched_stake,
        "back": o.back,
        "side": "buy" if o.back else "sell",
        "settlementStatus": o.settlement_status,
        "settledAt": iso(o.settled_at),
        "bookmakerOutcomePrice": o.bookmaker_outcome_price,
        "bookmakerOutcomeLimit": o.bookmaker_outcome_limit,
        "bookmakerOutcomeActive": o.bookmaker_outcome_active,
        "createdAt": iso(o.created_at),
        "matchedAt": iso(o.matched_at),
        "updatedAt": iso(o.updated_at),
    }


def render_orders(rows) -> list[dict[str, Any]]:
    return [order_row(o) for o in rows]


class OrderSchema(serializers.Serializer):
    orderId = serializers.IntegerField()
    fixtureId = serializers.CharField()
    outcomeId = serializers.IntegerField()
    playerId = serializers.IntegerField(help_text="Player id for player-prop markets, 0 otherwise")
    exchange = serializers.CharField()
    account = serializers.CharField(help_text="Exchange account username used for this order")
    exchangeOrderId = serializers.CharField(allow_null=True)
    exchangeOutcomeId = serializers.CharField()
    orderStatus = serializers.CharField(help_text="PENDING_PLACEMENT, PLACED, FILLED, FAILED, CANCELLED, EXPIRED")
    matchedStatus = serializers.CharField(help_text="NOT_MATCHED, PARTIALLY_MATCHED or FULLY_MATCHED")
    orderCents = serializers.DecimalField(max_digits=6, decimal_places=4, help_text="Price, 0.01-0.99")
    orderStake = serializers.DecimalField(max_digits=18, decimal_places=4, help_text="Size the engine intended")
    matchedStake = serializers.DecimalField(max_digits=18, decimal_places=4, help_text="Size filled on the venue")
    back = serializers.BooleanField(help_text="true = buy, false = sell")
    side = serializers.ChoiceField(choices=["buy", "sell"])
    settlementStatus = serializers.CharField(help_text="UNDECIDED, WON, LOST, VOID, HALF_WON, HALF_LOST")
    settledAt = serializers.DateTimeField(allow_null=True)
    bookmakerOutcomePrice = serializers.DecimalField(max_digits=10, decimal_places=4, allow_null=True)
    bookmakerOutcomeLimit = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True)
    bookmakerOutcomeActive = serializers.BooleanField()
    createdAt = serializers.DateTimeField()
    matchedAt = serializers.DateTimeField(allow_null=True)
    updatedAt = serializers.DateTimeField()


def envelope_schema(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """An OpenAPI-only serializer for ``{data: [item], total, page, pageSize, totalPages}``."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "data": item(many=True),
            "total": serializers.IntegerField(),
            "page": serializers.IntegerField(),
            "pageSize": serializers.IntegerField(),
            "totalPages": serializers.IntegerField(),
        },
    )


OrderPageSchema = envelope_schema(OrderSchema, "OrderPage")


class ErrorSchema(serializers.Serializer):
    error = serializers.CharField(help_text="Machine-readable code, e.g. invalid_parameter, not_found, rate_limited")
    message = serializers.CharField()
    parameter = serializers.CharField(required=False, help_text="The request parameter at fault, when one is")


class MeSchema(serializers.Serializer):
    client = serializers.CharField()
    clientName = serializers.CharField()
    bookmaker = serializers.CharField(help_text="Bookmaker the client hedges on")
    oddsFormat = serializers.CharField()
    apiKeyPrefix = serializers.CharField()
    createdAt = serializers.DateTimeField()
