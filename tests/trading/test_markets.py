"""The market catalog (trading/markets.py) against the sample replay the project ships."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from trading import markets
from trading.markets import CATALOG, MarketDefinitionError, MarketType, Meaning, build_catalog, complement, lookup

SAMPLE = Path(markets.__file__).parent / "feed" / "samples" / "sample_replay.jsonl"


def sample_header() -> dict:
    with SAMPLE.open() as fh:
        return json.loads(fh.readline())


def sample_messages():
    with SAMPLE.open() as fh:
        fh.readline()
        for line in fh:
            yield json.loads(line)


def test_every_market_of_the_sample_replay_header_means_what_the_catalog_says():
    header_catalog = build_catalog(sample_header()["markets"])
    assert header_catalog.keys() == CATALOG.keys()
    for outcome_id, outcome in header_catalog.items():
        assert outcome == CATALOG[outcome_id], outcome_id


def test_every_outcome_the_sample_prices_is_in_the_catalog_for_its_market_and_sport():
    sports = {}
    seen = set()
    for msg in sample_messages():
        payload = msg["payload"]
        if msg["channel"] == "fixtures":
            sports[payload["fixtureId"]] = payload["sport"]["sportId"]
        if msg["channel"] != "odds":
            continue
        for entries in payload["odds"].values():
            for entry in entries.values():
                outcome = lookup(entry["outcomeId"], sport_id=sports[payload["fixtureId"]])
                assert outcome is not None, entry
                assert outcome.market.market_id == entry["marketId"]
                assert (entry["playerId"] != 0) == outcome.market.player_prop
                seen.add(entry["outcomeId"])
    assert seen == set(CATALOG)  # the catalog holds nothing the sample never quotes


def test_a_markets_id_is_its_first_outcomes_id():
    for outcome in CATALOG.values():
        first = min(o.outcome_id for o in CATALOG.values() if o.market == outcome.market)
        assert outcome.market.market_id == first


def test_lines_are_exact_decimals_and_the_away_side_of_a_handicap_gets_the_opposite_line():
    assert CATALOG[10170].line == Decimal("2.25") and CATALOG[10171].meaning == Meaning.UNDER
    assert CATALOG[1070].line == Decimal("-0.25") and CATALOG[1070].meaning == Meaning.HOME
    assert CATALOG[1071].line == Decimal("0.25") and CATALOG[1071].meaning == Meaning.AWAY
    assert CATALOG[131].line == Decimal("-4.5") and CATALOG[132].line == Decimal("4.5")
    assert CATALOG[1105].score == (1, 2)
    assert CATALOG[102].meaning == Meaning.DRAW and CATALOG[102].market_type == MarketType.ONE_X_TWO
    assert CATALOG[1150].meaning == Meaning.PLAYER and CATALOG[1150].market.player_prop


def test_ids_not_in_the_catalog_or_of_another_sport_are_unknown_never_guessed():
    assert lookup(161) is None  # a seed default id the sample does not define
    assert lookup(101, sport_id=11) is None  # a soccer market on a basketball fixture
    assert lookup(101, sport_id=10) is CATALOG[101]
    assert lookup(101) is CATALOG[101]


def test_two_way_markets_have_a_complement_and_three_way_ones_do_not():
    assert complement(CATALOG[10170]) is CATALOG[10171]
    assert complement(CATALOG[1071]) is CATALOG[1070]
    assert complement(CATALOG[101]) is None
    assert complement(CATALOG[1100]) is None


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"marketId": 9, "marketType": "exotic", "outcomes": []}, "unknown market type"),
        (
            {
                "marketId": 9,
                "marketType": "totals",
                "handicap": 2.5,
                "outcomes": [{"outcomeId": 9, "outcomeName": "Over-ish"}],
            },
            "no outcome named",
        ),
        (
            {"marketId": 9, "marketType": "correctscore", "outcomes": [{"outcomeId": 9, "outcomeName": "any other"}]},
            "is not 'h:a'",
        ),
        ({"marketId": 9, "marketType": "totals", "handicap": "NaN", "outcomes": []}, "not finite"),
        ({"marketType": "totals", "outcomes": []}, "lacks marketId"),
    ],
)
def test_a_definition_the_catalog_cannot_interpret_is_refused_with_its_reason(definition, message):
    with pytest.raises(MarketDefinitionError, match=message):
        build_catalog([definition])


def test_an_outcome_defined_twice_is_refused():
    definition = {"marketId": 104, "marketType": "btts", "outcomes": [{"outcomeId": 104, "outcomeName": "Yes"}]}
    with pytest.raises(MarketDefinitionError, match="defined twice"):
        build_catalog([definition, definition])
