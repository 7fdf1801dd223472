"""Settlement rules (trading/settlement_rules.py): one test per row of the table in
docs/settlement.md (R1..R22, named in each test; R20, an id not in the catalog, is a service
rule: tests/trading/test_settlement.py), then properties checked with hypothesis."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.markets import CATALOG, build_catalog, complement
from trading.settlement_rules import (
    FinalResult,
    Result,
    Unsettleable,
    back_result,
    bet_result,
    line_result,
    mirror,
    order_result,
)

W, L, V, HW, HL = Result.WON, Result.LOST, Result.VOID, Result.HALF_WON, Result.HALF_LOST
D = Decimal


def ft(home: int, away: int) -> FinalResult:
    return FinalResult(status="finished", home=home, away=away)


def back(outcome_id: int, home: int, away: int) -> Result:
    return back_result(CATALOG[outcome_id], ft(home, away))


def synthetic(market_type: str, handicap: str, names: tuple[str, ...]) -> list:
    """Outcomes of a market the sample does not carry (whole lines, other quarters)."""
    outcomes = [{"outcomeId": 90000 + i, "outcomeName": n} for i, n in enumerate(names)]
    return list(
        build_catalog(
            [{"marketId": 90000, "marketType": market_type, "handicap": handicap, "outcomes": outcomes}]
        ).values()
    )


# --- one test per rule --------------------------------------------------------------------------------------


def test_r1_1x2_home_wins_only_when_participant1_scores_more():
    assert [back(101, 2, 1), back(101, 1, 1), back(101, 0, 1)] == [W, L, L]


def test_r2_1x2_draw_wins_only_on_level_scores():
    assert [back(102, 2, 1), back(102, 1, 1), back(102, 0, 0), back(102, 0, 1)] == [L, W, W, L]


def test_r3_1x2_away_wins_only_when_participant2_scores_more():
    assert [back(103, 2, 1), back(103, 1, 1), back(103, 0, 1)] == [L, L, W]


def test_r4_moneyline_wins_for_the_side_ahead_and_a_tie_is_void():
    assert [back(111, 101, 99), back(112, 101, 99)] == [W, L]
    assert [back(111, 99, 101), back(112, 99, 101)] == [L, W]
    assert [back(111, 100, 100), back(112, 100, 100)] == [V, V]


def test_r5_r6_both_teams_to_score_yes_and_no():
    assert [back(104, 1, 1), back(104, 3, 0), back(104, 0, 0)] == [W, L, L]
    assert [back(105, 1, 1), back(105, 3, 0), back(105, 0, 0)] == [L, W, W]


def test_r7_totals_on_a_half_line_never_push():
    assert [back(1010, 2, 1), back(1010, 1, 1)] == [W, L]  # over 2.5
    assert [back(1011, 2, 1), back(1011, 1, 1)] == [L, W]  # under 2.5
    assert [back(121, 110, 106), back(122, 110, 106), back(121, 110, 105), back(122, 110, 105)] == [W, L, L, W]


def test_r8_totals_on_a_whole_line_push_when_the_total_equals_the_line():
    over, under = synthetic("totals", "2", ("Over", "Under"))
    assert [back_result(over, ft(h, a)) for h, a in [(2, 1), (1, 1), (1, 0)]] == [W, V, L]
    assert [back_result(under, ft(h, a)) for h, a in [(2, 1), (1, 1), (1, 0)]] == [L, V, W]


def test_r9_totals_quarter_line_x25_splits_on_x0_and_x5():
    # over 2.25 = half on over 2 and half on over 2.5
    assert [back(10170, 1, 0), back(10170, 1, 1), back(10170, 2, 1)] == [L, HL, W]
    assert [back(10171, 1, 0), back(10171, 1, 1), back(10171, 2, 1)] == [W, HW, L]


def test_r10_totals_quarter_line_x75_splits_on_x5_and_next_whole():
    # over 2.75 = half on over 2.5 and half on over 3
    assert [back(10172, 1, 1), back(10172, 2, 1), back(10172, 2, 2)] == [L, HW, W]
    assert [back(10173, 1, 1), back(10173, 2, 1), back(10173, 2, 2)] == [W, HL, L]


def test_r11_handicap_on_a_half_line_never_pushes():
    # soccer 1 -0.5 / 2 +0.5
    assert [back(1072, 1, 0), back(1072, 1, 1), back(1072, 0, 1)] == [W, L, L]
    assert [back(1073, 1, 0), back(1073, 1, 1), back(1073, 0, 1)] == [L, W, W]
    # basketball spread 1 -4.5 / 2 +4.5
    assert [back(131, 105, 100), back(131, 104, 100), back(132, 104, 100), back(132, 105, 100)] == [W, L, W, L]


def test_r12_handicap_on_a_whole_line_pushes_on_the_line():
    home, away = synthetic("spreads", "-1", ("1", "2"))
    assert [back_result(home, ft(h, a)) for h, a in [(2, 0), (2, 1), (1, 1)]] == [W, V, L]
    assert [back_result(away, ft(h, a)) for h, a in [(2, 0), (2, 1), (1, 1)]] == [L, V, W]
    dnb_home, _ = synthetic("spreads", "0", ("1", "2"))  # draw no bet
    assert back_result(dnb_home, ft(0, 0)) == V


def test_r13_handicap_quarter_line_025_splits_on_0_and_05():
    # 1 -0.25 = half on 1 0 (draw no bet) and half on 1 -0.5; 2 +0.25 the mirror
    assert [back(1070, 1, 0), back(1070, 1, 1), back(1070, 0, 1)] == [W, HL, L]
    assert [back(1071, 1, 0), back(1071, 1, 1), back(1071, 0, 1)] == [L, HW, W]


def test_r14_handicap_quarter_line_075_splits_on_05_and_1():
    home, away = synthetic("spreads", "-0.75", ("1", "2"))
    assert [back_result(home, ft(h, a)) for h, a in [(2, 0), (1, 0), (1, 1)]] == [W, HW, L]
    assert [back_result(away, ft(h, a)) for h, a in [(2, 0), (1, 0), (1, 1)]] == [L, HL, W]


def test_r15_correct_score_wins_only_on_the_exact_score():
    assert back(1107, 2, 1) == W  # "2:1"
    assert back(1107, 1, 2) == L
    assert back(1100, 0, 0) == W
    assert back(1109, 4, 0) == L  # "3:0" loses on 4:0


def test_r16_goalscorer_needs_scorer_data_and_then_wins_if_the_player_scored():
    scorer = CATALOG[1150]
    with pytest.raises(Unsettleable) as exc:
        back_result(scorer, ft(2, 1), player_id=290927)
    assert exc.value.reason == "no_scorer_data"
    known = FinalResult(status="finished", home=2, away=1, scorers=frozenset({290927}))
    assert back_result(scorer, known, player_id=290927) == W
    assert back_result(scorer, known, player_id=291144) == L
    with pytest.raises(Unsettleable, match="no_player"):
        back_result(scorer, known, player_id=0)


@pytest.mark.parametrize("status", ["cancelled", "abandoned"])
def test_r17_a_cancelled_or_abandoned_fixture_voids_every_market(status):
    for outcome in CATALOG.values():
        assert back_result(outcome, FinalResult(status=status, home=2, away=1), player_id=7) == V
        assert back_result(outcome, FinalResult(status=status)) == V


@pytest.mark.parametrize("status", ["not_started", "live", "postponed", "interrupted"])
def test_r18_a_fixture_that_may_still_be_played_is_not_settled(status):
    with pytest.raises(Unsettleable) as exc:
        back_result(CATALOG[101], FinalResult(status=status, home=1, away=0))
    assert exc.value.reason == "fixture_not_final"


def test_r19_a_finished_fixture_without_both_scores_is_not_settled():
    for home, away in [(None, None), (1, None), (None, 0)]:
        with pytest.raises(Unsettleable) as exc:
            back_result(CATALOG[1010], FinalResult(status="finished", home=home, away=away))
        assert exc.value.reason == "no_final_score"


def test_r21_a_sold_order_has_the_mirror_result_of_a_bought_one():
    over = CATALOG[10170]
    assert order_result(over, ft(1, 1), back=True) == HL
    assert order_result(over, ft(1, 1), back=False) == HW
    assert order_result(CATALOG[101], ft(2, 0), back=False) == L
    assert order_result(CATALOG[101], FinalResult(status="cancelled"), back=False) == V


def test_r22_a_hedge_bet_has_the_mirror_result_of_its_order():
    assert [bet_result(r) for r in (W, L, V, HW, HL)] == [L, W, V, HL, HW]


def test_lines_that_are_not_quarter_multiples_are_not_settled():
    with pytest.raises(Unsettleable, match="line_not_quarter"):
        line_result(D(2), D("-2.1"))


# --- properties -------------------------------------------------------------------------------------------------

#: The bettor's profit per unit stake at decimal odds o (a push returns the stake).
PROFIT = {W: lambda o: o - 1, HW: lambda o: (o - 1) / 2, V: lambda o: D(0), HL: lambda o: D("-0.5"), L: lambda o: D(-1)}

scores = st.integers(min_value=0, max_value=12)
odds = st.decimals(min_value=D("1.01"), max_value=D("50"), places=2)
#: x.25 and x.75 lines, negative and positive: (2n + 1) / 4.
quarter_lines = st.integers(min_value=-20, max_value=20).map(lambda n: D(2 * n + 1) / 4)


@given(value=st.integers(min_value=-15, max_value=15), line=quarter_lines, o=odds)
def test_a_quarter_lines_payout_is_the_average_of_its_two_neighbouring_lines(value, line, o):
    quarter = PROFIT[line_result(D(value), line)](o)
    lower = PROFIT[line_result(D(value), line - D("0.25"))](o)
    upper = PROFIT[line_result(D(value), line + D("0.25"))](o)
    assert quarter == (lower + upper) / 2


@given(home=scores, away=scores, outcome_id=st.sampled_from(sorted(i for i in CATALOG if i != 1150)))
def test_back_and_lay_of_one_outcome_mirror_each_other_and_their_exchange_pnl_sums_to_zero(home, away, outcome_id):
    outcome = CATALOG[outcome_id]
    bought = order_result(outcome, ft(home, away), back=True)
    sold = order_result(outcome, ft(home, away), back=False)
    assert sold == mirror(bought)
    # exchange PnL per contract at price p (docs/api/mm-positions-pnl.md): a buyer and a seller of
    # the same contract at the same price are a zero-sum pair
    p = D("0.37")
    buy_pnl = {W: 1 - p, HW: (1 - p) / 2, V: 0, HL: -p / 2, L: -p}[bought]
    sell_pnl = {W: p, HW: p / 2, V: 0, HL: -(1 - p) / 2, L: -(1 - p)}[sold]
    assert buy_pnl + sell_pnl == 0


@given(home=scores, away=scores, outcome_id=st.sampled_from(sorted(i for i in CATALOG if complement(CATALOG[i]))))
def test_on_a_two_way_market_backing_the_complement_is_the_mirror_so_a_hedge_of_not_x_is_the_bets_rule(
    home, away, outcome_id
):
    outcome = CATALOG[outcome_id]
    other = complement(outcome)
    assert back_result(other, ft(home, away)) == mirror(back_result(outcome, ft(home, away)))


@given(home=scores, away=scores)
def test_exactly_one_1x2_outcome_and_one_correct_score_at_most_wins(home, away):
    assert [back(i, home, away) for i in (101, 102, 103)].count(W) == 1
    assert [back(i, home, away) for i in range(1100, 1110)].count(W) == (
        1 if (home, away) in {CATALOG[i].score for i in range(1100, 1110)} else 0
    )


@given(home=scores, away=scores, o=odds)
def test_a_hedged_pair_locks_the_spread_whatever_the_score(home, away, o):
    """A sold contract at p hedged by backing X with B = s/o (docs/engine-pricing.md): the pair's
    settled PnL is s(p - 1/o) on every result, halves and pushes included."""
    s, p = D(100), D("0.58")
    b = s / o
    for outcome_id in (10170, 1070, 1010, 131):
        order = order_result(CATALOG[outcome_id], ft(home, away), back=False)
        fill_pnl = {W: s * p, HW: s * p / 2, V: 0, HL: -s * (1 - p) / 2, L: -s * (1 - p)}[order]
        bet_pnl = b * PROFIT[bet_result(order)](o)
        expected = {W: 1, HW: D("0.5"), V: 0, HL: D("0.5"), L: 1}[order] * s * (p - 1 / o)
        assert abs(fill_pnl + bet_pnl - expected) < D("1e-20")


# --- cross-check against the sample replay's own model ----------------------------------------------------------


def test_every_outcome_of_the_sample_replay_settles_as_its_generators_closing_prices_say():
    """The sample's generator closes every market at full time with the outcome's probability
    (1.001 = it happened, 1001 = it did not; Asian quarter lines price a half win as 1.001 and a
    half loss as 1001). Our rules, applied to the replay's final scores, must agree everywhere."""
    import json

    from tests.trading.test_markets import SAMPLE

    final_scores: dict[str, tuple[int, int]] = {}
    last_price: dict[tuple[str, int], float] = {}
    with SAMPLE.open() as fh:
        fh.readline()
        for line in fh:
            msg = json.loads(line)
            payload = msg["payload"]
            if msg["channel"] == "scores" and "result" in payload["scores"]:
                result = payload["scores"]["result"]
                final_scores[payload["fixtureId"]] = (result["participant1Score"], result["participant2Score"])
            if msg["channel"] == "odds":
                for entry in payload["odds"].get("vertex", {}).values():
                    if entry["playerId"] == 0:
                        last_price[(payload["fixtureId"], entry["outcomeId"])] = entry["price"]

    checked = 0
    for (fixture_id, outcome_id), price in last_price.items():
        home, away = final_scores[fixture_id]
        result = back_result(CATALOG[outcome_id], ft(home, away))
        assert (result in (W, HW)) == (price <= 1.001), (fixture_id, outcome_id, home, away, result, price)
        assert (result in (L, HL)) == (price >= 1001), (fixture_id, outcome_id, home, away, result, price)
        checked += 1
    assert len(final_scores) == 5 and checked > 60
    assert {back_result(CATALOG[10170], ft(*s)) for s in final_scores.values()} >= {
        HL
    }  # a 1-1 puts a quarter line on a half
