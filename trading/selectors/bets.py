"""Read queries over hedge bets (``hedging.HedgeBet``). Every one takes the caller's client and scopes to it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum

from hedging.choices import BetSettlementStatus, BetStatus
from hedging.models import HedgeBet
from trading.models import Client

ZERO = Decimal("0")
PRICE_PLACES = Decimal("0.0001")
# price (4 dp) x stake (4 dp): room for the 8 decimal places of the product
_PRICE_X_STAKE = DecimalField(max_digits=30, decimal_places=8)


def bets_for_client(*, client: Client) -> QuerySet[HedgeBet]:
    """The client's hedge bets, newest first, with what the bet renderer reads joined in."""
    return HedgeBet.objects.for_client(client).select_related("client", "bookmaker").order_by("-created_at", "-id")


@dataclass(frozen=True)
class BetSummary:
    total_bets: int
    by_bet_status: dict[str, int]
    by_settlement_status: dict[str, int]
    total_stake: Decimal
    avg_price: Decimal | None


def bet_summary(*, client: Client, bets: QuerySet[HedgeBet] | None = None) -> BetSummary:
    """Counts, total stake and stake-weighted average price over ``bets`` in one SQL query.

    ``bets`` (default: all the client's bets) is scoped to ``client`` again here. ``avg_price`` is
    ``sum(price * stake) / sum(stake)`` over the same bets, to 4 decimal places; None when there
    are none. Pending bets count at their requested price and stake, as the bet rows show them.
    """
    qs = (bets if bets is not None else HedgeBet.objects.all()).for_client(client).order_by()
    aggregates = {
        "total": Count("id"),
        "sum_stake": Sum("placed_stake", default=ZERO),
        "weighted": Sum(F("placed_price") * F("placed_stake"), default=ZERO, output_field=_PRICE_X_STAKE),
    }
    for status in BetStatus.values:
        aggregates[f"bs_{status}"] = Count("id", filter=Q(bet_status=status))
    for status in BetSettlementStatus.values:
        aggregates[f"ss_{status}"] = Count("id", filter=Q(settlement_status=status))
    row = qs.aggregate(**aggregates)
    total_stake: Decimal = row["sum_stake"]
    avg_price = None
    if total_stake > 0:
        avg_price = (Decimal(row["weighted"]) / total_stake).quantize(PRICE_PLACES, rounding=ROUND_HALF_UP)
    return BetSummary(
        total_bets=row["total"],
        by_bet_status={s: row[f"bs_{s}"] for s in BetStatus.values},
        by_settlement_status={s: row[f"ss_{s}"] for s in BetSettlementStatus.values},
        total_stake=total_stake,
        avg_price=avg_price,
    )
