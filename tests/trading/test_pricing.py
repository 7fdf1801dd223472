"""The pricing core: worked examples of docs/engine-pricing.md, bounds, sizing, and properties.

Properties are checked against exact rational arithmetic (``Fraction``), so a rounding that went
the wrong way in ``Decimal`` would show up.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal as D
from fractions import Fraction as F

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from trading.pricing import (
    SIZING_FIXED,
    SIZING_LIMIT_FRACTION,
    NoQuote,
    PricingConfig,
    Quote,
    Reason,
    Side,
    ceil_to_tick,
    check_odds,
    floor_to_tick,
    hedge_stake,
    quote_buy,
    quote_sell,
    requote_needed,
    to_decimal,
)

CFG = PricingConfig()  # edge 0.02, tick 0.01, bounds [0.02, 0.98], fixed 100 contracts


# --- worked examples (the same numbers as docs/engine-pricing.md) -------------------------------


def test_sell_quote_of_the_worked_example():
    # given odds 1.808 (q = 0.553097...) and a 0.02 edge on a 0.01 tick
    quote = quote_sell(D("1.808"), D("5000"), CFG)
    # then the sell price is ceil(0.573097...) = 0.58 and the locked edge 0.026902 per contract
    assert quote == Quote(
        side=Side.SELL,
        price=D("0.58"),
        size=D("100"),
        hedge_stake_per_contract=D("0.553098"),
        edge=D("0.026902"),
        hedge_odds=D("1.808"),
    )
    assert quote.back is False
    # and 100 contracts are hedged with 55.31 at the bookmaker
    assert hedge_stake(quote.size, quote.hedge_odds) == D("55.31")


def test_buy_quote_from_the_complement_odds():
    # given not-X at 2.20 (q' = 0.454545...)
    quote = quote_buy(D("2.20"), D("5000"), CFG)
    # then X is bought at floor(1 - 0.454545... - 0.02) = 0.52, edge 0.025454
    assert (quote.side, quote.price, quote.edge, quote.back) == (Side.BUY, D("0.52"), D("0.025454"), True)
    assert hedge_stake(quote.size, quote.hedge_odds) == D("45.46")


def test_profit_is_locked_in_both_outcomes_of_the_worked_example():
    quote = quote_sell(D("1.808"), None, CFG)
    s, p, o = quote.size, quote.price, quote.hedge_odds
    b = hedge_stake(s, o)
    if_x = s * p - s + b * (o - 1)  # we pay out s on the exchange, the hedge wins b*(o-1)
    if_not_x = s * p - b  # we keep s*p, the hedge loses b
    assert if_x == D("2.69048")
    assert if_not_x == D("2.69")
    assert min(if_x, if_not_x) >= s * CFG.edge


def test_limit_fraction_sizing_of_the_worked_example():
    cfg = PricingConfig(sizing_mode=SIZING_LIMIT_FRACTION, limit_fraction=D("0.1"), max_outcome_stake=D("1000"))
    # 10% of a 200 limit at odds 3.5 hedges 70 contracts (70/3.5 = 20 = 0.1 * 200)
    assert quote_sell(D("3.5"), D("200"), cfg).size == D("70")
    # 10% of a 5000 limit at 3.5 would be 1750 contracts: capped by maxOutcomeStake
    assert quote_sell(D("3.5"), D("5000"), cfg).size == D("1000")
    # with 900 already matched on the outcome, 100 remain
    assert quote_sell(D("3.5"), D("5000"), cfg, existing_stake=D("900")).size == D("100")
    assert quote_sell(D("3.5"), D("5000"), cfg, existing_stake=D("1000")) == NoQuote(Reason.OUTCOME_CAP_REACHED)


# --- bounds and refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("odds", "reason"),
    [
        (D("1.01"), Reason.ODDS_TOO_LOW),
        (D("1.001"), Reason.ODDS_TOO_LOW),
        (D("0"), Reason.ODDS_TOO_LOW),
        (D("-3"), Reason.ODDS_TOO_LOW),
        (D("1000"), Reason.ODDS_TOO_HIGH),
        (D("1001"), Reason.ODDS_TOO_HIGH),
        (D("NaN"), Reason.ODDS_NOT_FINITE),
        (D("sNaN"), Reason.ODDS_NOT_FINITE),
        (D("Infinity"), Reason.ODDS_NOT_FINITE),
        (D("-Infinity"), Reason.ODDS_NOT_FINITE),
        (1.95, Reason.ODDS_NOT_A_NUMBER),
        (None, Reason.ODDS_NOT_A_NUMBER),
    ],
)
def test_odds_outside_sane_bounds_are_not_quoted(odds, reason):
    assert check_odds(odds) is reason
    assert quote_sell(odds, D("100"), CFG).reason is reason
    assert quote_buy(odds, D("100"), CFG).reason is reason


def test_inactive_outcome_is_not_quoted():
    assert quote_sell(D("2"), D("100"), CFG, active=False) == NoQuote(Reason.INACTIVE)
    assert quote_buy(D("2"), D("100"), CFG, active=False) == NoQuote(Reason.INACTIVE)
    assert not NoQuote(Reason.INACTIVE)


def test_sell_price_above_max_is_refused_not_clipped():
    # q = 1/1.02 = 0.980392; q + 0.02 = 1.0004 > 0.98: clipping down would lose the edge
    result = quote_sell(D("1.02"), None, CFG)
    assert isinstance(result, NoQuote) and result.reason is Reason.PRICE_ABOVE_MAX
    # 1/1.042 + 0.02 = 0.97969...: ceil is 0.98, just inside
    assert quote_sell(D("1.042"), None, CFG).price == D("0.98")


def test_sell_price_below_min_is_raised_to_min():
    # long odds: q + edge = 0.001 + 0.02 = 0.021 -> 0.03, fine; with a 0.05 floor the price is raised
    cfg = PricingConfig(min_price=D("0.05"))
    quote = quote_sell(D("999"), None, cfg)
    assert quote.price == D("0.05")
    assert quote.edge >= cfg.edge


def test_buy_price_below_min_is_refused_and_above_max_clipped():
    # not-X at 1.05: 1 - 0.952381 - 0.02 = 0.0276 -> floor 0.02 = min (ok); a 0.03 floor refuses it
    assert quote_buy(D("1.05"), None, CFG).price == D("0.02")
    result = quote_buy(D("1.05"), None, PricingConfig(min_price=D("0.03")))
    assert result.reason is Reason.PRICE_BELOW_MIN
    # not-X at 500: 1 - 0.002 - 0.02 = 0.978 -> 0.97; a 0.95 ceiling clips it down (more edge)
    assert quote_buy(D("500"), None, CFG).price == D("0.97")
    quote = quote_buy(D("500"), None, PricingConfig(max_price=D("0.95")))
    assert quote.price == D("0.95") and quote.edge > D("0.02")


def test_bounds_off_the_tick_grid_move_inside():
    cfg = PricingConfig(tick=D("0.05"), min_price=D("0.02"), max_price=D("0.98"))
    assert (cfg.lo, cfg.hi) == (D("0.05"), D("0.95"))
    # 1/1.06 + 0.02 = 0.9634: 0.98 would do on a 0.01 tick, but the next 0.05 tick is 1.00
    assert quote_sell(D("1.06"), None, cfg).reason is Reason.PRICE_ABOVE_MAX
    assert quote_sell(D("1.10"), None, cfg).price == D("0.95")  # 0.9291 -> 0.95


def test_invalid_configurations_are_rejected():
    for kwargs in (
        {"tick": D("0")},
        {"tick": D("1")},
        {"min_price": D("0.5"), "max_price": D("0.5")},
        {"min_price": D("0.001")},
        {"max_price": D("0.995")},
        {"edge": D("-0.01")},
        {"lot": D("0")},
        {"sizing_mode": "kelly"},
        {"limit_fraction": D("0")},
        {"limit_fraction": D("1.5")},
        {"max_outcome_stake": D("-1")},
        {"fixed_stake": D("0")},
        {"tick": D("0.3"), "min_price": D("0.31"), "max_price": D("0.59")},  # no tick inside
    ):
        with pytest.raises(ValueError):
            PricingConfig(**kwargs)


# --- sizing -------------------------------------------------------------------------------------


def test_fixed_stake_is_capped_so_the_hedge_fits_the_bookmaker_limit():
    # 100 contracts at 2.0 need a 50 hedge; a 30 limit admits 60 contracts
    assert quote_sell(D("2.0"), D("30"), CFG).size == D("60")
    assert quote_sell(D("2.0"), None, CFG).size == D("100")  # no limit in the feed: the fixed stake
    assert quote_sell(D("2.0"), D("0"), CFG).reason is Reason.BELOW_MIN_SIZE  # the book takes nothing


def test_limit_fraction_without_a_limit_is_not_quoted():
    cfg = PricingConfig(sizing_mode=SIZING_LIMIT_FRACTION)
    assert quote_sell(D("2.0"), None, cfg).reason is Reason.NO_BOOKMAKER_LIMIT
    assert quote_sell(D("2.0"), D("0"), cfg).reason is Reason.NO_BOOKMAKER_LIMIT
    assert quote_sell(D("2.0"), D("NaN"), cfg).reason is Reason.NO_BOOKMAKER_LIMIT


def test_sizes_round_down_to_the_lot_and_respect_the_minimum():
    cfg = PricingConfig(sizing_mode=SIZING_LIMIT_FRACTION, limit_fraction=D("0.1"), lot=D("5"), min_size=D("10"))
    # 0.1 * 97 * 2.5 = 24.25 -> 20 (lots of 5)
    assert quote_sell(D("2.5"), D("97"), cfg).size == D("20")
    # 0.1 * 30 * 2.5 = 7.5 -> 5 < 10: no quote
    assert quote_sell(D("2.5"), D("30"), cfg).reason is Reason.BELOW_MIN_SIZE
    fractional = PricingConfig(fixed_stake=D("12.345"), lot=D("0.01"))
    assert quote_sell(D("2"), None, fractional).size == D("12.34")


def test_hedge_stake_rounds_up_to_the_cent():
    assert hedge_stake(D("100"), D("3")) == D("33.34")
    assert hedge_stake(D("100"), D("2")) == D("50.00")
    assert hedge_stake(D("0"), D("2")) == D("0")
    assert hedge_stake(D("7"), D("1.5"), quantum=D("1")) == D("5")


# --- requoting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old_price", "old_size", "new_price", "new_size", "expected"),
    [
        (None, None, D("0.5"), D("100"), True),  # nothing resting
        (D("0.50"), D("100"), D("0.50"), D("100"), False),
        (D("0.50"), D("100"), D("0.51"), D("100"), True),  # a tick
        (D("0.50"), D("100"), D("0.49"), D("100"), True),
        (D("0.50"), D("100"), D("0.505"), D("100"), False),  # half a tick
        (D("0.50"), D("100"), D("0.50"), D("110"), False),  # exactly 10%
        (D("0.50"), D("100"), D("0.50"), D("111"), True),
        (D("0.50"), D("100"), D("0.50"), D("89"), True),
        (D("0.50"), D("0"), D("0.50"), D("5"), True),
    ],
)
def test_requote_needed(old_price, old_size, new_price, new_size, expected):
    assert requote_needed(old_price, old_size, new_price, new_size, D("0.01")) is expected


def test_requote_size_tolerance_is_configurable():
    assert requote_needed(D("0.5"), D("100"), D("0.5"), D("104"), D("0.01"), size_tolerance=D("0.03")) is True


# --- helpers, contracts with the rest of the project ---------------------------------------------


def test_tick_rounding_helpers():
    assert ceil_to_tick(D("0.5731"), D("0.01")) == D("0.58")
    assert ceil_to_tick(D("0.57"), D("0.01")) == D("0.57")
    assert floor_to_tick(D("0.5799"), D("0.01")) == D("0.57")
    assert ceil_to_tick(D("0.5731"), D("0.005")) == D("0.575")
    assert floor_to_tick(D("0.5731"), D("0.001")) == D("0.573")


def test_to_decimal_reads_feed_numbers_exactly():
    assert to_decimal(1.95) == D("1.95")
    assert to_decimal(D("1.95")) == D("1.95")
    assert to_decimal(2) == D("2")
    assert to_decimal("1.5") == D("1.5")
    assert to_decimal("x") is None
    assert to_decimal(True) is None
    assert to_decimal(None) is None


def test_sizing_modes_match_the_model_choices():
    from trading.choices import SizingMode

    assert {SIZING_FIXED, SIZING_LIMIT_FRACTION} == set(SizingMode.values)


def test_pure_modules_do_not_import_django():
    code = (
        "import sys; import trading.pricing, trading.feed.protocol, trading.feed.client, "
        "trading.feed.server, trading.feed.replay, trading.feed.samples.make_sample; "
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- properties ---------------------------------------------------------------------------------

TICKS = [D("0.001"), D("0.005"), D("0.01"), D("0.02"), D("0.05")]


@st.composite
def configs(draw) -> PricingConfig:
    tick = draw(st.sampled_from(TICKS))
    lo = draw(st.integers(1, 40))
    hi = draw(st.integers(60, 99))
    mode = draw(st.sampled_from([SIZING_FIXED, SIZING_LIMIT_FRACTION]))
    lot = draw(st.sampled_from([D("1"), D("5"), D("0.01"), D("10")]))
    return PricingConfig(
        edge=D(draw(st.integers(0, 1000))) / 10000,
        tick=tick,
        min_price=D(lo) / 100,
        max_price=D(hi) / 100,
        sizing_mode=mode,
        fixed_stake=D(draw(st.integers(1, 100_000))) / 100,
        limit_fraction=D(draw(st.integers(1, 100))) / 100,
        max_outcome_stake=draw(st.none() | st.integers(0, 5000).map(D)),
        lot=lot,
        min_size=draw(st.none() | st.sampled_from([D("1"), D("10"), D("25")])),
    )


odds_values = st.integers(1011, 999_999).map(lambda n: D(n) / 1000)  # (1.01, 1000), 3 places
limits = st.none() | st.integers(0, 1_000_000).map(lambda n: D(n) / 100)
existing = st.integers(0, 3000).map(D)


def _check_size(quote: Quote, cfg: PricingConfig, limit, existing_stake: D) -> None:
    assert quote.size > 0
    assert quote.size % cfg.lot == 0
    assert quote.size >= cfg.size_floor
    if cfg.max_outcome_stake is not None:
        assert quote.size + existing_stake <= cfg.max_outcome_stake
    hedge_per_contract = F(1) / F(quote.hedge_odds)
    if cfg.sizing_mode == SIZING_LIMIT_FRACTION:
        assert F(quote.size) * hedge_per_contract <= F(cfg.limit_fraction) * F(limit)
    else:
        assert quote.size <= cfg.fixed_stake
        if limit is not None:
            assert F(quote.size) * hedge_per_contract <= F(limit)


@settings(max_examples=400, deadline=None)
@given(cfg=configs(), odds=odds_values, limit=limits, held=existing)
def test_every_sell_quote_is_on_tick_inside_bounds_and_keeps_the_edge(cfg, odds, limit, held):
    result = quote_sell(odds, limit, cfg, existing_stake=held)
    q = F(1) / F(odds)
    if isinstance(result, NoQuote):
        if result.reason is Reason.PRICE_ABOVE_MAX:
            # refusing was right: no on-tick price inside the bounds keeps the edge
            assert F(cfg.hi) < q + F(cfg.edge)
        return
    p = F(result.price)
    assert result.price % cfg.tick == 0
    assert cfg.min_price <= result.price <= cfg.max_price
    assert p - q >= F(cfg.edge)  # exact: the edge holds against the hedge price
    assert F(result.edge) <= p - q  # and what we report never overstates it
    assert result.edge >= cfg.edge
    # the cheapest on-tick price that keeps the edge (unless the floor lifted it)
    assert p - F(cfg.tick) < q + F(cfg.edge) or result.price == cfg.lo
    _check_size(result, cfg, limit, held)


@settings(max_examples=400, deadline=None)
@given(cfg=configs(), odds=odds_values, limit=limits, held=existing)
def test_every_buy_quote_is_on_tick_inside_bounds_and_keeps_the_edge(cfg, odds, limit, held):
    result = quote_buy(odds, limit, cfg, existing_stake=held)
    q_not = F(1) / F(odds)
    if isinstance(result, NoQuote):
        if result.reason is Reason.PRICE_BELOW_MIN:
            assert F(cfg.lo) > 1 - q_not - F(cfg.edge)
        return
    p = F(result.price)
    assert result.price % cfg.tick == 0
    assert cfg.min_price <= result.price <= cfg.max_price
    assert 1 - q_not - p >= F(cfg.edge)
    assert F(result.edge) <= 1 - q_not - p
    assert result.edge >= cfg.edge
    assert p + F(cfg.tick) > 1 - q_not - F(cfg.edge) or result.price == cfg.hi
    _check_size(result, cfg, limit, held)


@settings(max_examples=300, deadline=None)
@given(cfg=configs(), odds=odds_values, side=st.sampled_from([Side.SELL, Side.BUY]))
def test_hedged_fill_profits_at_least_the_edge_whatever_happens(cfg, odds, side):
    quote = (quote_sell if side is Side.SELL else quote_buy)(odds, D("1000000"), cfg)
    assume(isinstance(quote, Quote))
    s, p, o = F(quote.size), F(quote.price), F(quote.hedge_odds)
    b = F(hedge_stake(quote.size, quote.hedge_odds))
    if side is Side.SELL:  # sold X at p; backed X with b at o
        outcomes = (s * p - s + b * (o - 1), s * p - b)
    else:  # bought X at p; backed not-X with b at o
        outcomes = (s - s * p - b, -s * p + b * (o - 1))
    # the hedge stake is rounded up to a cent: at most one cent of the locked profit is given back
    assert min(outcomes) >= s * F(cfg.edge) - F(1, 100)


@settings(max_examples=200, deadline=None)
@given(
    price=st.integers(1, 99).map(lambda n: D(n) / 100),
    size=st.integers(1, 10_000).map(D),
    moves=st.integers(-5, 5),
)
def test_requote_exactly_when_the_price_moves_a_tick(price, size, moves):
    tick = D("0.01")
    assert requote_needed(price, size, price + moves * tick, size, tick) is (moves != 0)
    assert requote_needed(price, size, price, size, tick) is False
