"""The pure amount parser and the withdrawal fee (no Django)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.amounts import QUANTUM, AmountError, parse_amount, withdrawal_fee

amounts = st.decimals(min_value=D("0.00000001"), max_value=D("999999999"), places=8)


@given(amounts)
def test_every_positive_8_place_amount_parses_exactly_from_a_string_and_a_decimal(value):
    assert parse_amount(str(value)) == value
    assert parse_amount(value) == value


@given(amounts, st.integers(min_value=0, max_value=10000))
def test_the_fee_is_rounded_up_to_the_quantum_and_never_above_the_amount(value, bps):
    fee = withdrawal_fee(value, D(bps))
    exact = value * D(bps) / D(10000)
    assert fee >= exact and fee - exact < QUANTUM
    assert fee % QUANTUM == 0
    assert fee <= value


@pytest.mark.parametrize(
    "raw", [None, "", "abc", "-1", "0", "0.000000001", "NaN", "Infinity", "1e15", True, [], {}, 1e-9]
)
def test_bad_amounts_are_refused(raw):
    with pytest.raises(AmountError):
        parse_amount(raw)


def test_floats_are_read_through_their_shortest_repr():
    assert parse_amount(0.1) == D("0.1")
    assert parse_amount(100.25) == D("100.25")
