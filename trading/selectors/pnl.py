"""Market-making PnL (seed 000, step 5): aggregates over fills, their orders and hedge bets.

The model, in short (full definitions and a worked example in docs/api/mm-positions-pnl.md):

* A fill (price ``p``, stake ``s`` contracts paying 1 each) takes its order's side (``back``) and
  settlement. Bought: WON ``s(1-p)``, LOST ``-sp``, HALF_WON/HALF_LOST half of those, VOID 0.
  Sold: WON ``sp``, LOST ``-s(1-p)``, halves likewise, VOID 0. UNDECIDED is not settled.
* Its hedge bet (stake ``B``, decimal odds ``o``) counts only when ``placed``: won ``B(o-1)``,
  lost ``-B``, half_won/half_lost half of those, void 0, undecided not settled.
* A pair is a fill plus its placed bet; a fill without a placed bet is naked.

Every figure is a SUM/COUNT with a FILTER over one ``fill JOIN order LEFT JOIN bet`` row set
(``pnl_summary``, the live computation). Over a long range that join is the whole cost, so on
PostgreSQL ``pnl_report`` (what ``GET /pnl`` calls) reads a rollup instead: per (client, UTC day
the order was created) the same sums, unrounded, in ``PnlDay`` (written by
``trading.services.pnl.pnl_days_refresh``), plus the live sums of the days that a
``PnlDirtyDay`` marker says are stale (database triggers set the markers), then the same ratios
and rounding: the figures are identical to the live ones. On SQLite it is always live.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from functools import reduce
from typing import Any

from django.db import connection, transaction
from django.db.models import Aggregate, Case, Count, DecimalField, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, Least, TruncDate

from hedging.choices import BetSettlementStatus, BetStatus
from trading.choices import SettlementStatus
from trading.models import Client, Fill, PnlDay, PnlDirtyDay

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
PAIR = BET_PLACED & ORDER_SETTLED & BET_SETTLED
NAKED_SETTLED = NAKED & ORDER_SETTLED
DRIFT = BET_PLACED & Q(order__bookmaker_outcome_price__isnull=False)

#: a rollup component: an exact sum (PnlDay's columns are NUMERIC(38, 10))
COMPONENT_FIELD = DecimalField(max_digits=38, decimal_places=10)
#: response figure -> the PnlDay column it sums
MONEY = {
    "totalTurnover": "total_turnover",
    "validTurnover": "valid_turnover",
    "netRealizedSpread": "net_realized_spread",
    "nakedPnl": "naked_pnl",
    "unhedgedStake": "unhedged_stake",
}
COUNTS = {"settledPairCount": "settled_pair_count", "nakedSettledCount": "naked_settled_count"}
#: the PnlDay columns: the money sums, the two ratios' other terms, the counts
COMPONENTS = (*MONEY.values(), "total_fill_stake", "drift_weighted_sum", "drift_weight", *COUNTS.values())
ONE_DAY = dt.timedelta(days=1)


def pnl_fills(*, client: Client | int) -> QuerySet[Fill]:
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


def _components(output_field: DecimalField) -> dict[str, Aggregate]:
    """The additive figures, unrounded, keyed by PnlDay column: each a SUM or COUNT with a FILTER
    over the ``fill JOIN order LEFT JOIN bet`` rows. The live query and the rollup both use these."""
    bet_stake, bet_odds = F("hedge_bet__placed_stake"), F("hedge_bet__placed_price")

    def total(expr, condition: Q | None = None) -> Sum:
        return Sum(expr, filter=condition, default=ZERO, output_field=output_field)

    return {
        "total_turnover": total(bet_stake, BET_PLACED),
        "valid_turnover": total(Least(bet_stake, bet_stake * bet_odds - bet_stake, output_field=SUM_FIELD), BET_PLACED),
        "net_realized_spread": total(_fill_pnl() + _bet_pnl(), PAIR),
        "naked_pnl": total(_fill_pnl(), NAKED_SETTLED),
        "unhedged_stake": total("stake", NAKED),
        "total_fill_stake": total("stake"),
        "drift_weighted_sum": total(bet_stake * (F("order__bookmaker_outcome_price") - bet_odds), DRIFT),
        "drift_weight": total(bet_stake, DRIFT),
        "settled_pair_count": Count("id", filter=PAIR),
        "naked_settled_count": Count("id", filter=NAKED_SETTLED),
    }


def pnl_raw(*, fills: QuerySet[Fill]) -> dict[str, Any]:
    """The nine figures of ``fills`` (from ``pnl_fills``, possibly narrowed), before rounding: the
    live computation. One query; the ratios are divided in SQL."""
    bet_stake, bet_odds = F("hedge_bet__placed_stake"), F("hedge_bet__placed_price")
    sums = _components(SUM_FIELD)
    return fills.order_by().aggregate(
        **{figure: sums[column] for figure, column in MONEY.items()},
        unhedgedStakePct=Coalesce(
            Ratio(Sum(F("stake") * Value(Decimal(100)), filter=NAKED, output_field=SUM_FIELD), Sum("stake")),
            Value(ZERO),
            output_field=SUM_FIELD,
        ),
        avgHedgePriceDrift=Coalesce(
            Ratio(
                Sum(bet_stake * (F("order__bookmaker_outcome_price") - bet_odds), filter=DRIFT, output_field=SUM_FIELD),
                Sum(bet_stake, filter=DRIFT),
            ),
            Value(ZERO),
            output_field=SUM_FIELD,
        ),
        **{figure: sums[column] for figure, column in COUNTS.items()},
    )


def pnl_rounded(raw: dict[str, Any]) -> dict[str, Any]:
    """The response's nine figures from raw ones: money half up to 2 places, percentage to 2, drift to 4."""
    return {
        **{k: quantize(raw[k], MONEY_Q) for k in MONEY},
        "unhedgedStakePct": quantize(raw["unhedgedStakePct"], PCT_Q),
        "avgHedgePriceDrift": quantize(raw["avgHedgePriceDrift"], DRIFT_Q),
        **{k: raw[k] for k in COUNTS},
    }


def pnl_summary(*, fills: QuerySet[Fill]) -> dict[str, Any]:
    """The nine PnL figures of ``fills``, computed live and rounded. One query."""
    return pnl_rounded(pnl_raw(fills=fills))


# --- days and the rollup --------------------------------------------------------------------------------


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def day_runs(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Distinct days as inclusive runs of consecutive days: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1] + ONE_DAY == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def orders_created_on(days: Iterable[dt.date]) -> Q:
    """Fills whose order was created (UTC) on one of ``days`` (at least one): a ``created_at``
    range per run of consecutive days, so that the (client, created_at) index of orders serves it."""
    ranges = [
        Q(order__created_at__gte=day_start(first), order__created_at__lt=day_start(last + ONE_DAY))
        for first, last in day_runs(days)
    ]
    if not ranges:
        raise ValueError("no days")
    return reduce(operator.or_, ranges)


def in_date_range(fills: QuerySet[Fill], from_date: dt.date | None, to_date: dt.date | None) -> QuerySet[Fill]:
    """Fills whose order was created from 00:00 UTC of ``from_date`` to 24:00 UTC of ``to_date``."""
    if from_date:
        fills = fills.filter(order__created_at__gte=day_start(from_date))
    if to_date:
        fills = fills.filter(order__created_at__lt=day_start(to_date + ONE_DAY))
    return fills


def pnl_day_components(*, fills: QuerySet[Fill]) -> QuerySet:
    """The PnlDay columns of ``fills`` per UTC day their order was created: rows of ``day`` and
    ``COMPONENTS``, days without fills absent. One query."""
    return (
        fills.order_by()
        .annotate(day=TruncDate("order__created_at", tzinfo=dt.UTC))
        .values("day")
        .annotate(**_components(COMPONENT_FIELD))
    )


def rollup_in_use() -> bool:
    """Whether ``GET /pnl`` reads the rollup: on PostgreSQL, where the triggers keep the markers."""
    return connection.vendor == "postgresql"


def pnl_report(*, client: Client, from_date: dt.date | None = None, to_date: dt.date | None = None) -> dict[str, Any]:
    """``GET /pnl``: the nine figures of the client's fills whose order was created between
    ``from_date`` and ``to_date`` (UTC days, inclusive; None = unbounded), rounded.

    Always equal to ``pnl_summary`` over the same fills. On PostgreSQL from the rollup plus a live
    computation of the marked days, both read in one snapshot; elsewhere live."""
    if not rollup_in_use():
        return pnl_summary(fills=in_date_range(pnl_fills(client=client), from_date, to_date))
    return pnl_rounded(pnl_rollup_raw(client=client, from_date=from_date, to_date=to_date))


@contextmanager
def _one_snapshot() -> Iterator[None]:
    """Run the enclosed queries in one REPEATABLE READ snapshot, so that the list of marked days and
    the rollup rows agree (a write that commits in between cannot be half counted). Inside a
    caller's transaction, the caller's isolation applies."""
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def pnl_rollup_raw(*, client: Client, from_date: dt.date | None = None, to_date: dt.date | None = None) -> dict:
    """The figures of ``pnl_raw`` over the same fills, from the rollup (PostgreSQL only): the rows of
    clean days plus the live components of marked days, summed, then the ratios divided exactly as
    the live query divides them (same NUMERIC operands and scales). Two queries."""
    with _one_snapshot():
        marked = PnlDirtyDay.objects.filter(client=client).order_by("day")
        if from_date:
            marked = marked.filter(day__gte=from_date)
        if to_date:
            marked = marked.filter(day__lte=to_date)
        sql, params = _rollup_sql(client, from_date, to_date, list(marked.values_list("day", flat=True)))
        with connection.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
    return dict(zip((*MONEY, "unhedgedStakePct", "avgHedgePriceDrift", *COUNTS), row, strict=True))


def _rollup_sql(
    client: Client, from_date: dt.date | None, to_date: dt.date | None, marked: list[dt.date]
) -> tuple[str, list]:
    columns = ", ".join(COMPONENTS)
    where, params = ["client_id = %s"], [client.pk]
    if from_date:
        where.append("day >= %s")
        params.append(from_date)
    if to_date:
        where.append("day <= %s")
        params.append(to_date)
    if marked:
        where.append("NOT (day = ANY(%s))")
        params.append(marked)
    parts = [f"SELECT {columns} FROM {PnlDay._meta.db_table} WHERE {' AND '.join(where)}"]
    if marked:
        live = pnl_day_components(fills=pnl_fills(client=client).filter(orders_created_on(marked)))
        live_sql, live_params = live.query.sql_with_params()
        parts.append(f"SELECT {columns} FROM ({live_sql}) AS live")
        params.extend(live_params)
    money = ", ".join(f"COALESCE(SUM({c}), 0)" for c in MONEY.values())
    counts = ", ".join(f"COALESCE(SUM({c}), 0)::bigint" for c in COUNTS.values())  # SUM(bigint) is NUMERIC
    # The live query divides SUM(stake * 100) (scale 4; NULL when no fill is naked, as stakes are
    # positive) by SUM(stake) (scale 4), and SUM(B * (price - o)) (scale 8) by SUM(B) (scale 4).
    # Casting the sums back to those scales (exact: that is all the digits they have) makes
    # PostgreSQL pick the same result scale, hence the same digits.
    ratios = (
        "COALESCE(NULLIF(SUM(unhedged_stake), 0)::numeric(38, 4) * 100"
        " / NULLIF(SUM(total_fill_stake)::numeric(38, 4), 0), 0), "
        "COALESCE(SUM(drift_weighted_sum)::numeric(38, 8) / NULLIF(SUM(drift_weight)::numeric(38, 4), 0), 0)"
    )
    return f"SELECT {money}, {ratios}, {counts} FROM ({' UNION ALL '.join(parts)}) AS parts", params
