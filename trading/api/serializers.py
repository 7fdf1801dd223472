"""Output shapes of the MM client API, in the seed's camelCase.

Each renderer is a plain function over model rows (no DRF ``Serializer`` per row): a 2000-row page
is on the hot path, and these are several times faster. The matching DRF serializers below exist
only to describe the shapes in the OpenAPI schema; a test keeps the two in step.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from hedging.choices import BetSettlementStatus, BetStatus
from trading.choices import FixtureStatus, MatchedStatus, OrderStatus


def iso(value) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


# --- orders -------------------------------------------------------------------------------------------------


#: The order object's fields and the ORM paths they come from: one table drives both the renderer
#: of model instances (detail, events) and the ``.values()`` fast path of list pages.
ORDER_COLUMNS: dict[str, str] = {
    "orderId": "id",
    "fixtureId": "fixture__fixture_id",
    "outcomeId": "outcome_id",
    "playerId": "player_id",
    "exchange": "exchange",
    "account": "account__username",
    "exchangeOrderId": "exchange_order_id",
    "exchangeOutcomeId": "exchange_outcome_id",
    "orderStatus": "order_status",
    "matchedStatus": "matched_status",
    "orderCents": "order_cents",
    "orderStake": "order_stake",
    "matchedStake": "matched_stake",
    "back": "back",
    "settlementStatus": "settlement_status",
    "settledAt": "settled_at",
    "bookmakerOutcomePrice": "bookmaker_outcome_price",
    "bookmakerOutcomeLimit": "bookmaker_outcome_limit",
    "bookmakerOutcomeActive": "bookmaker_outcome_active",
    "createdAt": "created_at",
    "matchedAt": "matched_at",
    "updatedAt": "updated_at",
}
_ORDER_TIMES = ("settledAt", "createdAt", "matchedAt", "updatedAt")


def order_values_row(v: dict[str, Any]) -> dict[str, Any]:
    """Render one ``Order.objects.values(*ORDER_COLUMNS.values())`` row."""
    row = {key: v[path] for key, path in ORDER_COLUMNS.items()}
    row["side"] = "buy" if row["back"] else "sell"
    for key in _ORDER_TIMES:
        row[key] = iso(row[key])
    return row


def _path_get(obj: Any, path: str) -> Any:
    for part in path.split("__"):
        obj = getattr(obj, part)
    return obj


def order_row(o) -> dict[str, Any]:
    """Render one ``Order`` instance (with ``fixture`` and ``account`` loaded)."""
    return order_values_row({path: _path_get(o, path) for path in ORDER_COLUMNS.values()})


def render_orders(rows) -> list[dict[str, Any]]:
    return [order_row(o) for o in rows]


def render_order_values(rows) -> list[dict[str, Any]]:
    return [order_values_row(v) for v in rows]


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
    retryAfter = serializers.IntegerField(required=False, help_text="On 429: seconds until the limit resets")


class MeSchema(serializers.Serializer):
    client = serializers.CharField()
    clientName = serializers.CharField()
    bookmaker = serializers.CharField(help_text="Bookmaker the client hedges on")
    oddsFormat = serializers.CharField()
    apiKeyPrefix = serializers.CharField()
    createdAt = serializers.DateTimeField()


def counts_schema(name: str, keys: list[str], what: str) -> type[serializers.Serializer]:
    """An OpenAPI-only serializer for ``{<status>: count, ...}`` with every status as a key."""
    return type(
        name,
        (serializers.Serializer,),
        {key: serializers.IntegerField(help_text=f"Number of {what} {key}") for key in keys},
    )


class OpenOrdersSchema(serializers.Serializer):
    data = OrderSchema(many=True)
    count = serializers.IntegerField()


def order_summary_body(s) -> dict[str, Any]:
    """``s`` is a ``trading.selectors.orders.OrderSummary``."""
    return {
        "totalOrders": s.total_orders,
        "byOrderStatus": s.by_order_status,
        "byMatchedStatus": s.by_matched_status,
        "totalStake": s.total_stake,
        "matchedStake": s.matched_stake,
        "openStake": s.open_stake,
    }


class OrderSummarySchema(serializers.Serializer):
    totalOrders = serializers.IntegerField(help_text="Orders matching the filters")
    byOrderStatus = counts_schema("OrderStatusCounts", OrderStatus.values, "orders with orderStatus")()
    byMatchedStatus = counts_schema("MatchedStatusCounts", MatchedStatus.values, "orders with matchedStatus")()
    totalStake = serializers.DecimalField(max_digits=24, decimal_places=4, help_text="Sum of orderStake")
    matchedStake = serializers.DecimalField(max_digits=24, decimal_places=4, help_text="Sum of matchedStake")
    openStake = serializers.DecimalField(
        max_digits=24,
        decimal_places=4,
        help_text="Unmatched stake of open orders (PENDING_PLACEMENT, PLACED): sum of orderStake - matchedStake",
    )


# Status fields are CharFields with the values in the help text, as OrderSchema does: several API
# families have a field called ``status`` with different value sets, and enum components named
# after the field would collide in the one OpenAPI document.

# --- bets ---------------------------------------------------------------------------------------------------


def bet_row(bet) -> dict[str, Any]:
    return {
        "betId": bet.id,
        "orderId": bet.order_id,
        "client": bet.client.name,
        "bookmaker": bet.bookmaker.name,
        "bookmakerBetId": bet.bookmaker_bet_id,
        "placedPrice": bet.placed_price,
        "placedStake": bet.placed_stake,
        "betStatus": bet.bet_status,
        "settlementStatus": bet.settlement_status,
        "placedAt": iso(bet.placed_at),
    }


def render_bets(rows) -> list[dict[str, Any]]:
    return [bet_row(b) for b in rows]


class BetSchema(serializers.Serializer):
    betId = serializers.IntegerField()
    orderId = serializers.IntegerField(help_text="The order whose fill this bet hedges")
    client = serializers.CharField(help_text="Client name, e.g. demo:vertex")
    bookmaker = serializers.CharField(help_text="Bookmaker code, e.g. vertex")
    bookmakerBetId = serializers.CharField(help_text="The bookmaker's bet id; empty until the bookmaker answers")
    placedPrice = serializers.DecimalField(
        max_digits=10, decimal_places=4, help_text="Decimal odds: requested while pending, accepted once placed"
    )
    placedStake = serializers.DecimalField(
        max_digits=18, decimal_places=4, help_text="Stake: requested while pending, accepted once placed"
    )
    betStatus = serializers.CharField(help_text=", ".join(BetStatus.values))
    settlementStatus = serializers.CharField(help_text=", ".join(BetSettlementStatus.values) + " (lower case)")
    placedAt = serializers.DateTimeField(allow_null=True, help_text="When the bookmaker accepted it; null until then")


BetPageSchema = envelope_schema(BetSchema, "BetPage")


def bet_summary_body(s) -> dict[str, Any]:
    """``s`` is a ``trading.selectors.bets.BetSummary``."""
    return {
        "totalBets": s.total_bets,
        "byBetStatus": s.by_bet_status,
        "bySettlementStatus": s.by_settlement_status,
        "totalStake": s.total_stake,
        "avgPrice": s.avg_price,
    }


class BetSummarySchema(serializers.Serializer):
    totalBets = serializers.IntegerField(help_text="Bets matching the filters")
    byBetStatus = counts_schema("BetStatusCounts", BetStatus.values, "bets with betStatus")()
    bySettlementStatus = counts_schema(
        "BetSettlementStatusCounts", BetSettlementStatus.values, "bets with settlementStatus"
    )()
    totalStake = serializers.DecimalField(max_digits=24, decimal_places=4, help_text="Sum of placedStake")
    avgPrice = serializers.DecimalField(
        max_digits=10,
        decimal_places=4,
        allow_null=True,
        help_text="Stake-weighted average placedPrice: sum(price x stake) / sum(stake); null when no bets",
    )


# --- fixtures -----------------------------------------------------------------------------------------------


def fixture_row(fixture) -> dict[str, Any]:
    tournament = fixture.tournament if fixture.tournament_id is not None else None
    return {
        "fixtureId": fixture.fixture_id,
        "tournamentId": tournament.tournament_id if tournament else None,
        "tournamentName": tournament.name if tournament else None,
        "sportId": fixture.sport_id,
        "sportName": fixture.sport_name or (tournament.sport_name if tournament else ""),
        "participant1": fixture.participant1_name,
        "participant2": fixture.participant2_name,
        "startTime": iso(fixture.start_time),
        "status": fixture.status,
        "scores": {
            "participant1": fixture.participant1_score,
            "participant2": fixture.participant2_score,
            "periods": fixture.period_scores or {},
        },
        "updatedAt": iso(fixture.updated_at),
    }


def render_fixtures(rows) -> list[dict[str, Any]]:
    return [fixture_row(f) for f in rows]


class ScoresSchema(serializers.Serializer):
    participant1 = serializers.IntegerField(allow_null=True, help_text="Score of participant1; null before the start")
    participant2 = serializers.IntegerField(allow_null=True, help_text="Score of participant2; null before the start")
    periods = serializers.DictField(help_text="Per-period scores as the odds feed sends them, e.g. by period name")


class FixtureSchema(serializers.Serializer):
    fixtureId = serializers.CharField(help_text="Feed id, e.g. id1000000861624412")
    tournamentId = serializers.IntegerField(allow_null=True)
    tournamentName = serializers.CharField(allow_null=True)
    sportId = serializers.IntegerField()
    sportName = serializers.CharField()
    participant1 = serializers.CharField(help_text="Home / first participant")
    participant2 = serializers.CharField(help_text="Away / second participant")
    startTime = serializers.DateTimeField()
    status = serializers.CharField(help_text=", ".join(FixtureStatus.values))
    scores = ScoresSchema()
    updatedAt = serializers.DateTimeField()


FixturePageSchema = envelope_schema(FixtureSchema, "FixturePage")


# --- accounts -----------------------------------------------------------------------------------------------


def account_row(account) -> dict[str, Any]:
    """Never any credential field: the encrypted credentials are not rendered, not even as a flag."""
    return {
        "username": account.username,
        "exchange": account.exchange,
        "active": account.active,
        "maxOutcomeStake": account.max_outcome_stake,
        "balance": account.balance,
        "createdAt": iso(account.created_at),
    }


class AccountSchema(serializers.Serializer):
    username = serializers.CharField(help_text="Account username on the exchange (wallet address, login, ...)")
    exchange = serializers.CharField()
    active = serializers.BooleanField(help_text="false: the engine places no orders through this account")
    maxOutcomeStake = serializers.DecimalField(
        max_digits=18, decimal_places=4, help_text="Largest stake the engine holds on one outcome"
    )
    balance = serializers.DecimalField(max_digits=18, decimal_places=4, help_text="Last known balance on the venue")
    createdAt = serializers.DateTimeField()


class AccountListSchema(serializers.Serializer):
    oddsFormat = serializers.CharField(help_text="The client's odds format: decimal, american or fractional")
    accounts = AccountSchema(many=True)
    count = serializers.IntegerField()
