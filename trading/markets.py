"""The market catalog: what an OddsPapi-style outcome id means, for settlement.

Pure (no Django). An order names its outcome by ``outcome_id`` (and ``player_id`` for player
props); settlement needs to know which market that outcome belongs to and what it bets on. The
catalog maps an outcome id to an :class:`Outcome`: its market (id, type, name, sport, line) and its
meaning (home/draw/away, yes/no, over/under with the total line, a handicap side with the line
applied to that side, a correct score, a player prop).

Market definitions have the shape the odds feed and the replay header use (``marketId``,
``marketType``, ``handicap``, ``outcomes`` with ``outcomeId``/``outcomeName``, ``sportId``,
``playerProp``); :func:`outcomes_from_definition` parses one. :data:`CATALOG` is built from
:data:`MARKET_DEFINITIONS`, the markets of the bundled sample replay (a market's id is its first
outcome's id; 101/102/103 1X2, 104/105 both teams to score and 1010/1011 over/under 2.5 are
OddsPapi's, the rest follow the same pattern). ``tests/trading/test_markets.py`` checks that the
sample replay's header agrees with this catalog.

Rule for ids not in the catalog: :func:`lookup` returns None and settlement leaves the order and
its bets ``UNDECIDED`` and reports them (never a guess from a name or a neighbouring id). An
outcome whose market belongs to another sport than the fixture's is treated the same way.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


class MarketType(enum.StrEnum):
    ONE_X_TWO = "1x2"  # three-way full-time result
    MONEYLINE = "moneyline"  # two-way result, a tie is a push
    BTTS = "btts"  # both teams to score
    TOTALS = "totals"  # over/under a total, any quarter line
    SPREADS = "spreads"  # Asian handicap / point spread, any quarter line
    CORRECT_SCORE = "correctscore"
    GOALSCORER = "player-goalscorer"  # anytime goalscorer (player prop)


class Meaning(enum.StrEnum):
    HOME = "home"
    DRAW = "draw"
    AWAY = "away"
    YES = "yes"
    NO = "no"
    OVER = "over"
    UNDER = "under"
    SCORE = "score"
    PLAYER = "player"


@dataclass(frozen=True, slots=True)
class Market:
    market_id: int
    market_type: MarketType
    name: str
    sport_id: int | None
    #: The feed's ``handicap``: the total's line, or the handicap applied to participant 1.
    handicap: Decimal
    player_prop: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    outcome_id: int
    name: str
    market: Market
    meaning: Meaning
    #: TOTALS: the total line; SPREADS: the handicap added to THIS outcome's side's score.
    line: Decimal | None = None
    #: CORRECT_SCORE: (participant 1 goals, participant 2 goals).
    score: tuple[int, int] | None = None

    @property
    def market_type(self) -> MarketType:
        return self.market.market_type


class MarketDefinitionError(ValueError):
    """A market definition this catalog cannot interpret (unknown type, outcome name or line)."""


_SCORE_RE = re.compile(r"^\s*(\d+)\s*[:\-]\s*(\d+)\s*$")
_SIDE = {"1": Meaning.HOME, "home": Meaning.HOME, "2": Meaning.AWAY, "away": Meaning.AWAY}


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool):
        raise MarketDefinitionError(f"{what}: not a number: {value!r}")
    try:
        # str() first: a JSON float such as 2.25 becomes Decimal('2.25'), not its binary expansion.
        result = Decimal(str(value)) if value is not None else Decimal(0)
    except (InvalidOperation, ValueError) as exc:
        raise MarketDefinitionError(f"{what}: not a number: {value!r}") from exc
    if not result.is_finite():
        raise MarketDefinitionError(f"{what}: not finite: {value!r}")
    return result


def _meaning(market_type: MarketType, name: str) -> tuple[Meaning, tuple[int, int] | None]:
    key = name.strip().lower()
    if market_type == MarketType.ONE_X_TWO:
        table = {"1": Meaning.HOME, "x": Meaning.DRAW, "draw": Meaning.DRAW, "2": Meaning.AWAY}
        table |= {"home": Meaning.HOME, "away": Meaning.AWAY}
    elif market_type in (MarketType.MONEYLINE, MarketType.SPREADS):
        table = dict(_SIDE)
    elif market_type in (MarketType.BTTS, MarketType.GOALSCORER):
        table = {"yes": Meaning.YES, "no": Meaning.NO}
    elif market_type == MarketType.TOTALS:
        table = {"over": Meaning.OVER, "under": Meaning.UNDER}
    else:  # CORRECT_SCORE
        match = _SCORE_RE.match(name)
        if not match:
            raise MarketDefinitionError(f"correct score outcome {name!r} is not 'h:a'")
        return Meaning.SCORE, (int(match.group(1)), int(match.group(2)))
    if key not in table:
        raise MarketDefinitionError(f"{market_type.value} market has no outcome named {name!r}")
    meaning = table[key]
    if market_type == MarketType.GOALSCORER:
        meaning = Meaning.PLAYER if meaning == Meaning.YES else meaning
    return meaning, None


def outcomes_from_definition(definition: Mapping[str, Any]) -> list[Outcome]:
    """The outcomes of one market definition (feed/replay-header shape). Raises
    :class:`MarketDefinitionError` for what settlement could not interpret."""
    try:
        market_id = int(definition["marketId"])
        raw_type = str(definition["marketType"])
        raw_outcomes = list(definition["outcomes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MarketDefinitionError(f"market definition lacks marketId/marketType/outcomes: {exc}") from exc
    try:
        market_type = MarketType(raw_type)
    except ValueError as exc:
        raise MarketDefinitionError(f"market {market_id}: unknown market type {raw_type!r}") from exc
    handicap = _decimal(definition.get("handicap"), f"market {market_id} handicap")
    sport = definition.get("sportId")
    market = Market(
        market_id=market_id,
        market_type=market_type,
        name=str(definition.get("marketName", "")),
        sport_id=int(sport) if sport is not None else None,
        handicap=handicap,
        player_prop=bool(definition.get("playerProp", market_type == MarketType.GOALSCORER)),
    )
    outcomes = []
    for raw in raw_outcomes:
        outcome_id = int(raw["outcomeId"])
        name = str(raw["outcomeName"])
        meaning, score = _meaning(market_type, name)
        line: Decimal | None = None
        if market_type == MarketType.TOTALS:
            line = handicap
        elif market_type == MarketType.SPREADS:
            # The feed's handicap is participant 1's; participant 2 gets the opposite line.
            line = handicap if meaning == Meaning.HOME else -handicap
        outcomes.append(
            Outcome(outcome_id=outcome_id, name=name, market=market, meaning=meaning, line=line, score=score)
        )
    return outcomes


def build_catalog(definitions: Iterable[Mapping[str, Any]]) -> dict[int, Outcome]:
    """outcome id -> Outcome over ``definitions``; an outcome id defined twice is an error."""
    catalog: dict[int, Outcome] = {}
    for definition in definitions:
        for outcome in outcomes_from_definition(definition):
            if outcome.outcome_id in catalog:
                raise MarketDefinitionError(f"outcome {outcome.outcome_id} is defined twice")
            catalog[outcome.outcome_id] = outcome
    return catalog


SOCCER, BASKETBALL = 10, 11
_CS_SCORES = [(h, a) for h in range(3) for a in range(3)] + [(3, 0)]


def _two_way(market_id: int, name: str, market_type: str, handicap: float | int, names: tuple[str, str], sport: int):
    return {
        "marketId": market_id,
        "marketName": name,
        "marketType": market_type,
        "handicap": handicap,
        "sportId": sport,
        "outcomes": [
            {"outcomeId": market_id, "outcomeName": names[0]},
            {"outcomeId": market_id + 1, "outcomeName": names[1]},
        ],
    }


#: The markets the engine knows how to settle (those of the sample replay).
MARKET_DEFINITIONS: list[dict[str, Any]] = [
    {
        "marketId": 101,
        "marketName": "Full Time Result",
        "marketType": "1x2",
        "handicap": 0,
        "sportId": SOCCER,
        "outcomes": [
            {"outcomeId": 101, "outcomeName": "1"},
            {"outcomeId": 102, "outcomeName": "X"},
            {"outcomeId": 103, "outcomeName": "2"},
        ],
    },
    _two_way(104, "Both Teams To Score", "btts", 0, ("Yes", "No"), SOCCER),
    _two_way(1010, "Over Under Full Time", "totals", 2.5, ("Over", "Under"), SOCCER),
    _two_way(10170, "Over Under Full Time", "totals", 2.25, ("Over", "Under"), SOCCER),
    _two_way(10172, "Over Under Full Time", "totals", 2.75, ("Over", "Under"), SOCCER),
    _two_way(1070, "Asian Handicap", "spreads", -0.25, ("1", "2"), SOCCER),
    _two_way(1072, "Asian Handicap", "spreads", -0.5, ("1", "2"), SOCCER),
    {
        "marketId": 1100,
        "marketName": "Correct Score",
        "marketType": "correctscore",
        "handicap": 0,
        "sportId": SOCCER,
        "outcomes": [{"outcomeId": 1100 + i, "outcomeName": f"{h}:{a}"} for i, (h, a) in enumerate(_CS_SCORES)],
    },
    {
        "marketId": 1150,
        "marketName": "Anytime Goalscorer",
        "marketType": "player-goalscorer",
        "handicap": 0,
        "playerProp": True,
        "sportId": SOCCER,
        "outcomes": [{"outcomeId": 1150, "outcomeName": "Yes"}],
    },
    _two_way(111, "Moneyline", "moneyline", 0, ("1", "2"), BASKETBALL),
    _two_way(121, "Total Points", "totals", 215.5, ("Over", "Under"), BASKETBALL),
    _two_way(131, "Point Spread", "spreads", -4.5, ("1", "2"), BASKETBALL),
]

CATALOG: dict[int, Outcome] = build_catalog(MARKET_DEFINITIONS)


def lookup(outcome_id: int, *, sport_id: int | None = None, catalog: Mapping[int, Outcome] = CATALOG) -> Outcome | None:
    """The outcome ``outcome_id`` means, or None when it is not in the catalog or its market is
    of another sport than ``sport_id`` (when both are known)."""
    outcome = catalog.get(outcome_id)
    if outcome is None:
        return None
    if sport_id is not None and outcome.market.sport_id is not None and outcome.market.sport_id != sport_id:
        return None
    return outcome


def complement(outcome: Outcome, *, catalog: Mapping[int, Outcome] = CATALOG) -> Outcome | None:
    """The other outcome of a two-way market (over <-> under, 1 <-> 2, yes <-> no); None for
    three-way and many-way markets, whose 'not X' is no single outcome."""
    siblings = [o for o in catalog.values() if o.market == outcome.market and o.outcome_id != outcome.outcome_id]
    return siblings[0] if len(siblings) == 1 else None
