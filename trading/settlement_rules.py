"""Settlement rules: the result of a bet on one outcome, given how the fixture ended.

Pure (no Django). :func:`back_result` is the result of **backing** (buying) an outcome; an order
that sold (``back = false``) the outcome has the mirror result from its own point of view
(:func:`order_result`), and the hedge bet of an order has the mirror of the order's result
(:func:`bet_result`; see docs/settlement.md for why). The table of rules is in
docs/settlement.md; ``tests/trading/test_settlement_rules.py`` has a test per row.

Results are the seed's settlement statuses: ``WON``, ``LOST``, ``VOID`` (a push: the stake back),
``HALF_WON`` (half the stake wins, half is returned), ``HALF_LOST`` (half loses, half is returned).
Lines on a quarter (x.25, x.75) split the stake into two halves on the neighbouring lines
(x.25 -> x.0 and x.5; x.75 -> x.5 and x+1.0), each half settled on its own line.

Anything the rules cannot decide raises :class:`Unsettleable` with a reason: the caller leaves
the bet undecided and reports it. Nothing is guessed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from trading.markets import MarketType, Meaning, Outcome


class Result(enum.StrEnum):
    """Values equal to ``trading.choices.SettlementStatus`` (orders; bets use them lower-cased)."""

    WON = "WON"
    LOST = "LOST"
    VOID = "VOID"
    HALF_WON = "HALF_WON"
    HALF_LOST = "HALF_LOST"


_MIRROR = {
    Result.WON: Result.LOST,
    Result.LOST: Result.WON,
    Result.VOID: Result.VOID,
    Result.HALF_WON: Result.HALF_LOST,
    Result.HALF_LOST: Result.HALF_WON,
}

#: Fixture statuses (``trading.choices.FixtureStatus`` values) that settle by the final score.
SETTLE_BY_SCORE = frozenset({"finished"})
#: Fixture statuses that void every bet on the fixture.
VOID_STATUSES = frozenset({"cancelled", "abandoned"})
#: Statuses that settle anything at all; ``postponed`` and ``interrupted`` may still be played.
FINAL_STATUSES = SETTLE_BY_SCORE | VOID_STATUSES

QUARTER = Decimal("0.25")
_HALF = Decimal("0.5")


class Unsettleable(Exception):
    """The rules cannot decide this bet (yet); ``reason`` is a short code for reports."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class FinalResult:
    """How a fixture ended. ``home``/``away`` are participant 1's and 2's final scores (as the feed's
    ``result`` period: full time for soccer, including overtime for basketball). ``scorers`` is
    the set of player ids who scored, or None when that is not known."""

    status: str
    home: int | None = None
    away: int | None = None
    scorers: frozenset[int] | None = None


def mirror(result: Result) -> Result:
    """The same bet from the other side: WON <-> LOST, HALF_WON <-> HALF_LOST, VOID stays."""
    return _MIRROR[Result(result)]


def combine_halves(first: Result, second: Result) -> Result:
    """The result of a stake split in two halves with these results (each WON, LOST or VOID)."""
    pair = {first, second}
    if pair == {Result.WON}:
        return Result.WON
    if pair == {Result.LOST}:
        return Result.LOST
    if pair == {Result.VOID}:
        return Result.VOID
    if pair == {Result.WON, Result.VOID}:
        return Result.HALF_WON
    if pair == {Result.LOST, Result.VOID}:
        return Result.HALF_LOST
    # Neighbouring lines are half a point apart, so with whole-number scores one half can never
    # win while the other loses; a caller that gets here has fractional scores.
    raise Unsettleable("halves_disagree", f"{first} and {second}")


def _single_line(margin: Decimal) -> Result:
    """``margin`` = how far the bet is above its line (score with handicap minus the other's)."""
    if margin > 0:
        return Result.WON
    if margin < 0:
        return Result.LOST
    return Result.VOID  # a push: the stake is returned


def line_result(value: Decimal, line: Decimal) -> Result:
    """Result of a bet that wins when ``value + line > 0`` (Asian-handicap form: an over bet is
    ``total - L``, i.e. ``value = total``, ``line = -L``). Quarter lines split in two halves."""
    if (line / QUARTER) % 1 != 0:
        raise Unsettleable("line_not_quarter", f"line {line} is not a multiple of 0.25")
    if (line / _HALF) % 1 != 0:  # a quarter line: x.25 or x.75
        return combine_halves(
            _single_line(value + line - QUARTER),
            _single_line(value + line + QUARTER),
        )
    return _single_line(value + line)


def _won(condition: bool) -> Result:
    return Result.WON if condition else Result.LOST


def back_result(outcome: Outcome, final: FinalResult, *, player_id: int = 0) -> Result:
    """The result of backing ``outcome`` (for ``player_id`` on player props) when the fixture
    ended as ``final``. Raises :class:`Unsettleable` when it cannot be decided."""
    if final.status in VOID_STATUSES:
        return Result.VOID
    if final.status not in SETTLE_BY_SCORE:
        raise Unsettleable("fixture_not_final", f"fixture status {final.status!r}")
    kind = outcome.market_type
    if kind == MarketType.GOALSCORER:
        if not player_id:
            raise Unsettleable("no_player", "a player prop needs the order's player id")
        if final.scorers is None:
            raise Unsettleable("no_scorer_data", "the fixture's goalscorers are not known")
        scored = player_id in final.scorers
        return _won(scored if outcome.meaning == Meaning.PLAYER else not scored)
    if final.home is None or final.away is None or final.home < 0 or final.away < 0:
        raise Unsettleable("no_final_score", "a finished fixture without both final scores")
    home, away = Decimal(final.home), Decimal(final.away)
    meaning = outcome.meaning
    if kind == MarketType.ONE_X_TWO:
        if meaning == Meaning.HOME:
            return _won(home > away)
        if meaning == Meaning.AWAY:
            return _won(away > home)
        return _won(home == away)
    if kind == MarketType.MONEYLINE:
        if home == away:
            return Result.VOID  # a two-way result with no draw outcome: a tie is a push
        return _won(home > away if meaning == Meaning.HOME else away > home)
    if kind == MarketType.BTTS:
        both = home > 0 and away > 0
        return _won(both if meaning == Meaning.YES else not both)
    if kind == MarketType.TOTALS:
        assert outcome.line is not None
        total = home + away
        if meaning == Meaning.OVER:
            return line_result(total, -outcome.line)
        return line_result(-total, outcome.line)
    if kind == MarketType.SPREADS:
        assert outcome.line is not None
        margin = home - away if meaning == Meaning.HOME else away - home
        return line_result(margin, outcome.line)
    if kind == MarketType.CORRECT_SCORE:
        assert outcome.score is not None
        return _won((final.home, final.away) == outcome.score)
    raise Unsettleable("unknown_market_type", str(kind))


def order_result(outcome: Outcome, final: FinalResult, *, back: bool, player_id: int = 0) -> Result:
    """The result of an order from the order's own point of view (seed 000's ``back``: true =
    bought the outcome, false = sold it). Selling is the mirror of buying."""
    result = back_result(outcome, final, player_id=player_id)
    return result if back else mirror(result)


def bet_result(order_settlement: Result) -> Result:
    """The result of an order's hedge bet. A sold order is hedged by backing its outcome X, and a
    bought order by backing not-X (docs/hedging.md), so the bet always wins when the order loses:
    its result is the mirror of the order's (half results included)."""
    return mirror(order_settlement)
