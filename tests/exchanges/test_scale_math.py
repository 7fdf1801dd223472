"""The scale-order and TWAP maths (pure core): lots conserved, prices on tick, sizes as documented."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchanges.algomath import AlgoMathError, scale_ladder, split_by_weights, twap_schedule, twap_slices


def test_seed_example_buy_ladder_is_ten_equal_orders_from_high_to_low_price():
    ladder = scale_ladder(
        side="buy",
        quantity=D("10000"),
        price_low=D("0.002"),
        price_high=D("0.004"),
        num_orders=10,
        distribution="linear",
        tick_size=D("0.000001"),
        lot_size=D("1"),
        min_order_size=D("1"),
    )
    assert [q for _, q in ladder] == [D("1000")] * 10
    assert ladder[0][0] == D("0.004") and ladder[-1][0] == D("0.002")
    assert len({p for p, _ in ladder}) == 10


def test_exponential_sells_grow_away_from_the_market_by_the_ratio():
    ladder = scale_ladder(
        side="sell",
        quantity=D("1000"),
        price_low=D("1.00"),
        price_high=D("1.04"),
        num_orders=5,
        distribution="exponential",
        size_ratio=D("2"),
        tick_size=D("0.01"),
        lot_size=D("1"),
        min_order_size=D("1"),
    )
    prices = [p for p, _ in ladder]
    sizes = [q for _, q in ladder]
    assert prices == [D("1.00"), D("1.01"), D("1.02"), D("1.03"), D("1.04")]
    assert sum(sizes) == D("1000")
    assert sizes == sorted(sizes) and sizes[-1] > 10 * sizes[0]  # 1:2:4:8:16


@pytest.mark.parametrize(
    ("kwargs", "code", "parameter"),
    [
        ({"price_low": D("0.0020005")}, "price_off_tick", "price_low"),
        ({"price_high": D("0.001")}, "invalid_price", "price_high"),
        ({"quantity": D("10.5")}, "quantity_off_lot", "quantity"),
        ({"quantity": D("5")}, "below_min_order_size", "num_orders"),
        ({"price_high": D("0.002003")}, "invalid_parameter", "num_orders"),
        ({"distribution": "cubic"}, "invalid_parameter", "distribution"),
        ({"num_orders": 0}, "invalid_parameter", "num_orders"),
        ({"side": "hold"}, "invalid_side", "side"),
    ],
)
def test_impossible_ladders_are_refused_naming_the_parameter(kwargs, code, parameter):
    args = {
        "side": "buy",
        "quantity": D("10000"),
        "price_low": D("0.002"),
        "price_high": D("0.004"),
        "num_orders": 10,
        "distribution": "linear",
        "tick_size": D("0.000001"),
        "lot_size": D("1"),
        "min_order_size": D("1"),
    } | kwargs
    with pytest.raises(AlgoMathError) as err:
        scale_ladder(**args)
    assert (err.value.code, err.value.parameter) == (code, parameter)


@given(
    lots=st.integers(1, 10_000),
    weights=st.lists(st.decimals(min_value=D("0.01"), max_value=D("100"), places=2), min_size=1, max_size=50),
)
def test_split_by_weights_conserves_every_lot(lots, weights):
    sizes = split_by_weights(D(lots) * D("0.1"), weights, D("0.1"))
    assert sum(sizes) == D(lots) * D("0.1")
    assert all(q >= 0 and (q / D("0.1")) % 1 == 0 for q in sizes)


@given(lots=st.integers(1, 100_000), n=st.integers(1, 200))
def test_twap_slices_differ_by_at_most_one_lot_and_sum_to_the_quantity(lots, n):
    lot = D("0.5")
    if lots < n:
        with pytest.raises(AlgoMathError):
            twap_slices(D(lots) * lot, n, lot, lot)
        return
    sizes = twap_slices(D(lots) * lot, n, lot, lot)
    assert len(sizes) == n and sum(sizes) == D(lots) * lot
    assert max(sizes) - min(sizes) <= lot


def test_twap_schedule_spreads_slices_evenly_from_now():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    times = twap_schedule(start, 120, 20)
    assert times[0] == start and times[1] - times[0] == dt.timedelta(minutes=6)
    assert times[-1] == start + dt.timedelta(minutes=114)
