"""Market-making PnL (seed 000, step 5): one aggregate query over fills, their orders and hedge bets.

The model, in short (full definitions and a worked example in docs/api/mm-positions-pnl.md):

* A fill (price ``p``, stake ``s`` contracts paying 1 each) takes its order's side (``back``) and
  settlement. Bought: WON ``s(1-p)``, LOST ``-sp``, HALF_WON/HALF_LOST half of those, VOID 0.
  Sold: WON ``sp``, LOST ``-s(1-p)``, halves likewise, VOID 0. UNDECIDED is not settled.
* Its hedge bet (stake ``B``, decimal odds ``o``) counts only when ``placed``: won ``B(o-1)``,
  lost ``-B``, half_won/half_lost half of those, void 0, undecided not settled.
* A pair is a fill plus its placed bet; a fill without a placed bet is naked.

Every figure is a SUM/COUNT with a FILTER over one ``fill JOIN order LEFT JOIN bet`` row set;
only the final rounding happens in Python.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Case, Count, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, Least

from hedging.choices import BetSettlementStatus, BetStatus
from trading.choices import SettlementStatus
from trading.models import Client, Fill

from .positions import SUM_FIELD, ZERO, Ratio, quantize

MONEY_Q = Decimal("0.01")
DRIFT_Q = Decimal("0.0001")
PCT_Q = Decimal("0.01")
HALF = Value(Decimal("0.5"))

ORDER_SETTLED = ~Q(order__settlement_status=SettlementStatus.UNDECIDED)
BET_PLACED = Q(hedge_bet__bet_status=BetStatus.PLACED)
BET_SETTLED = ~Q(hedge_bet__settlement_status=BetSettlementStatus.UNDECIDED)
#: no bet at all, or one that is pending or declined (the ORM adds the IS NULL case of the outer join)
NAKED = ~BET_PLACED


def pnl_fills(*, client: Client) -> QuerySet[Fill]:
    """The client's fills, unordered: the base the PnL date filter narrows (on the order's date).

    The order is scoped to the client as well (it always belongs to the fill's client): that lets
    PostgreSQL find a date range of orders through the (client, created_at) index."""
    return Fill.objects.for_client(client).filter(order__client=client).order_by()


def _fill_pnl() -> Case:
    """Exchange-leg PnL of one fill, from its order's side and settlement (0 when VOID or UNDECIDED)."""
    s, sp = F("stake"), F("stake") * F("price")
    win_back, lose_back = s - sp, sp  # bought at p: gains 1-p per contract, or loses p
    win_lay, lose_lay = sp, s - sp  # sold at p: keeps p per contract, or pays 1-p
    st = SettlementStatus
    branches = []
    for back, win, lose in ((True, win_back, lose_back), (False, win_lay, lose_lay)):
        branches += [
            When(order__back=back, order__settlement_status=st.WON, then=win),
            When(order__back=back, order__settlement_status=st.LOST, then=-lose),
            When(order__back=back, order__settlement_status=st.HALF_WON, then=win * HALF),
            When(order__back=back, order__settlement_status=st.HALF_LOST, then=-lose * HALF),
        ]
    return Case(*branches, default=Value(ZERO), output_field=SUM_FIELD)


def _bet_pnl() -> Case:
    """Bookmaker-leg PnL of a fill's bet (0 when void, undecided, or there is no bet)."""
    stake, profit = F("hedge_bet__placed_stake"), F("hedge_bet__placed_stake") * F("hedge_bet__placed_price")
    profit = profit - stake  # B(o-1)
    bs = BetSettlementStatus
    return Case(
        When(hedge_bet__settlement_status=bs.WON, then=profit),
        When(hedge_bet__settlement_status=bs.LOST, then=-stake),
        When(hedge_bet__settlement_status=bs.HALF_WON, then=profit * HALF),
        When(hedge_bet__settlement_status=bs.HALF_LOST, then=-stake * HALF),
        default=Value(ZERO),
        output_field=SUM_FIELD,
    )


def pnl_summary(*, fills: QuerySet[Fill]) -> dict[str, Any]:
    """The nine PnL figures of ``fills`` (from ``pnl_fills``, possibly date-filtered), rounded:
    money to 2 places, drift to 4, percentage to 2. One query."""
    bet_stake, bet_odds = F("hedge_bet__placed_stake"), F("hedge_bet__placed_price")
    pair = BET_PLACED & ORDER_SETTLED & BET_SETTLED
    naked_settled = NAKED & ORDER_SETTLED
    drift = BET_PLACED & Q(order__bookmaker_outcome_price__isnull=False)

    def total(expr, condition: Q | None = None) -> Sum:
        return Sum(expr, filter=condition, default=ZERO, output_field=SUM_FIELD)

    row = fills.order_by().aggregate(
        totalTurnover=total(bet_stake, BET_PLACED),
        validTurnover=total(Least(bet_stake, bet_stake * bet_odds - bet_stake, output_field=SUM_FIELD), BET_PLACED),
        netRealizedSpread=total(_fill_pnl() + _bet_pnl(), pair),
        settledPairCount=Count("id", filter=pair),
        nakedPnl=total(_fill_pnl(), naked_settled),
        nakedSettledCount=Count("id", filter=naked_settled),
        unhedgedStake=total("stake", NAKED),
        unhedgedStakePct=Coalesce(
            Ratio(Sum(F("stake") * Value(Decimal(100)), filter=NAKED, output_field=SUM_FIELD), Sum("stake")),
            Value(ZERO),
            output_field=SUM_FIELD,
        ),
        avgHedgePriceDrift=Coalesce(
            Ratio(
                Sum(bet_stake * (F("order__bookmaker_outcome_price") - bet_odds), filter=drift, output_field=SUM_FIELD),
                Sum(bet_stake, filter=drift),
            ),
            Value(ZERO),
            output_field=SUM_FIELD,
        ),
    )
    money = ("totalTurnover", "validTurnover", "netRealizedSpread", "nakedPnl", "unhedgedStake")
    return {
        **{k: quantize(row[k], MONEY_Q) for k in money},
        "unhedgedStakePct": quantize(row["unhedgedStakePct"], PCT_Q),
        "avgHedgePriceDrift": quantize(row["avgHedgePriceDrift"], DRIFT_Q),
        "settledPairCount": row["settledPairCount"],
        "nakedSettledCount": row["nakedSettledCount"],
    }
