"""Unit tests of the order book core (exchanges/book): every order type, STP mode, iceberg, amend, expiry,
stops, events and snapshot. Prices are ticks and quantities lots unless a test goes through Instrument."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from exchanges.book import (
    Accepted,
    Amended,
    BookDelta,
    Cancelled,
    Expired,
    Instrument,
    InvalidInput,
    OrderBook,
    Reduced,
    Rejected,
    Trade,
    Triggered,
)

REPO = Path(__file__).resolve().parents[2]


def of(events, kind):
    return [e for e in events if type(e) is kind]


def kinds(events):
    return [type(e).__name__ for e in events if type(e) is not BookDelta]


def fills(events):
    return [(t.maker_order_id, t.price, t.qty) for t in of(events, Trade)]


def queue_ids(book, side, price):
    return [o.order_id for o in book.queue(side, price)]


@pytest.fixture
def book():
    return OrderBook("TEST")


# ---------------------------------------------------------------- the package stands alone


def test_importing_the_book_core_does_not_import_django():
    code = "import sys, exchanges.book; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- price-time priority


def test_better_price_trades_first_then_earlier_order_at_the_same_price(book):
    book.submit("s1", "a", "sell", "limit", 5, 101)
    book.submit("s2", "b", "sell", "limit", 5, 100)
    book.submit("s3", "c", "sell", "limit", 5, 100)

    events = book.submit("b1", "d", "buy", "limit", 12, 101)

    assert fills(events) == [("s2", 100, 5), ("s3", 100, 5), ("s1", 101, 2)]
    assert book.best_ask() == (101, 3)


def test_trade_is_at_the_resting_orders_price(book):
    book.submit("s1", "a", "sell", "limit", 1, 100)
    [trade] = of(book.submit("b1", "b", "buy", "limit", 1, 105), Trade)
    assert (trade.price, trade.taker_order_id, trade.maker_order_id, trade.taker_side) == (100, "b1", "s1", "buy")


def test_limit_remainder_rests_behind_earlier_orders(book):
    book.submit("s1", "a", "sell", "limit", 2, 100)
    book.submit("b0", "c", "buy", "limit", 1, 100)  # fills 1 of s1
    events = book.submit("b1", "b", "buy", "limit", 5, 100)

    assert fills(events) == [("s1", 100, 1)]
    assert book.best_bid() == (100, 4)
    assert book.best_ask() is None
    book.submit("b2", "b", "buy", "limit", 1, 100)
    assert queue_ids(book, "buy", 100) == ["b1", "b2"]


def test_trade_reports_remaining_quantities(book):
    book.submit("s1", "a", "sell", "limit", 10, 100)
    [trade] = of(book.submit("b1", "b", "buy", "ioc", 4, 100), Trade)
    assert (trade.qty, trade.taker_remaining, trade.maker_remaining) == (4, 0, 6)
    assert trade.trade_no == 1


# ---------------------------------------------------------------- market, ioc, fok, post_only


def test_market_order_sweeps_levels_and_cancels_what_is_left(book):
    book.submit("s1", "a", "sell", "limit", 2, 100)
    book.submit("s2", "a", "sell", "limit", 2, 103)

    events = book.submit("m1", "b", "buy", "market", 10, price=99)  # price is ignored for market orders

    assert fills(events) == [("s1", 100, 2), ("s2", 103, 2)]
    assert of(events, Cancelled) == [Cancelled("m1", 6, "unfilled")]
    assert of(events, Accepted)[0].price is None
    assert "m1" not in book


def test_market_order_on_an_empty_side_is_rejected(book):
    book.submit("b1", "a", "buy", "limit", 2, 100)
    assert book.submit("m1", "b", "buy", "market", 1) == [Rejected("submit", "m1", "no_liquidity")]


def test_ioc_takes_what_it_can_within_its_limit(book):
    book.submit("s1", "a", "sell", "limit", 2, 100)
    book.submit("s2", "a", "sell", "limit", 2, 102)

    events = book.submit("i1", "b", "buy", "ioc", 5, 101)

    assert kinds(events) == ["Accepted", "Trade", "Cancelled"]
    assert fills(events) == [("s1", 100, 2)]
    assert of(events, Cancelled) == [Cancelled("i1", 3, "unfilled")]
    assert book.best_bid() is None


def test_ioc_that_cannot_trade_is_cancelled_whole(book):
    events = book.submit("i1", "b", "buy", "ioc", 5, 101)
    assert kinds(events) == ["Accepted", "Cancelled"]
    assert book.depth().bids == []


def test_fok_fills_completely_across_levels(book):
    book.submit("s1", "a", "sell", "limit", 2, 100)
    book.submit("s2", "a", "sell", "limit", 3, 101)
    events = book.submit("f1", "b", "buy", "fok", 5, 101)
    assert fills(events) == [("s1", 100, 2), ("s2", 101, 3)]
    assert not of(events, Cancelled)


def test_fok_that_cannot_fill_completely_is_rejected_and_changes_nothing(book):
    book.submit("s1", "a", "sell", "limit", 2, 100)
    book.submit("s2", "a", "sell", "limit", 3, 102)
    before = book.snapshot()

    assert book.submit("f1", "b", "buy", "fok", 5, 101) == [Rejected("submit", "f1", "fok_unfillable")]
    assert book.snapshot() == before


def test_fok_counts_iceberg_reserve(book):
    book.submit("s1", "a", "sell", "limit", 10, 100, display_qty=2)
    events = book.submit("f1", "b", "buy", "fok", 9, 100)
    assert sum(t.qty for t in of(events, Trade)) == 9


def test_fok_blocked_by_own_order_unless_stp_cancels_the_resting_one(book):
    book.submit("own", "b", "sell", "limit", 5, 100)
    book.submit("s2", "a", "sell", "limit", 5, 100)

    refused = book.submit("f1", "b", "buy", "fok", 5, 100, stp="cancel_incoming")
    assert refused == [Rejected("submit", "f1", "fok_unfillable")]

    events = book.submit("f2", "b", "buy", "fok", 5, 100, stp="cancel_resting")
    assert of(events, Cancelled) == [Cancelled("own", 5, "self_trade")]
    assert fills(events) == [("s2", 100, 5)]


def test_post_only_rests_when_it_does_not_cross(book):
    book.submit("s1", "a", "sell", "limit", 2, 101)
    events = book.submit("p1", "b", "buy", "post_only", 3, 100)
    assert kinds(events) == ["Accepted"]
    assert book.best_bid() == (100, 3)


def test_post_only_that_would_take_is_rejected(book):
    book.submit("s1", "a", "sell", "limit", 2, 101)
    assert book.submit("p1", "b", "buy", "post_only", 3, 101) == [Rejected("submit", "p1", "post_only_would_cross")]
    # also against the same owner's order: a post-only order never takes
    assert book.submit("p2", "a", "buy", "post_only", 3, 102)[0].reason == "post_only_would_cross"
    assert book.best_bid() is None


# ---------------------------------------------------------------- stops


def test_stop_limit_waits_off_book_until_the_last_price_reaches_it(book):
    book.submit("s1", "a", "sell", "limit", 1, 100)
    book.submit("b1", "b", "buy", "limit", 1, 100)  # last price 100
    accepted = book.submit("st", "c", "buy", "stop_limit", 2, 106, stop_price=105)
    assert kinds(accepted) == ["Accepted"]
    assert book.depth().bids == [] and book.get_order("st").status == "waiting_trigger"

    book.submit("s2", "a", "sell", "limit", 1, 104)
    book.submit("s3", "a", "sell", "limit", 5, 105)
    not_yet = book.submit("b2", "b", "buy", "limit", 1, 104)  # last 104 < 105
    assert not of(not_yet, Triggered)

    events = book.submit("b3", "b", "buy", "limit", 1, 105)  # last 105: triggers

    assert kinds(events) == ["Accepted", "Trade", "Triggered", "Trade"]
    assert of(events, Triggered) == [Triggered("st", "limit", 105)]
    assert fills(events)[-1] == ("s3", 105, 2)
    assert book.get_order("st") is None


def test_triggered_stop_limit_rests_its_remainder_as_a_limit_order(book):
    book.submit("s1", "a", "sell", "limit", 1, 100)
    book.submit("st", "c", "buy", "stop_limit", 3, 100, stop_price=100)
    book.submit("b1", "b", "buy", "limit", 1, 100)
    order = book.get_order("st")
    assert (order.order_type, order.status, order.price, order.qty) == ("limit", "open", 100, 3)


def test_sell_stop_market_triggers_when_price_falls_to_it(book):
    book.submit("b1", "a", "buy", "limit", 1, 100)
    book.submit("b2", "a", "buy", "limit", 4, 95)
    book.submit("st", "c", "sell", "stop_market", 3, stop_price=99)

    events = book.submit("s1", "b", "sell", "limit", 1, 100)  # last 100: no trigger
    assert not of(events, Triggered)
    book.submit("b3", "a", "buy", "limit", 1, 99)
    events = book.submit("s2", "b", "sell", "limit", 1, 99)  # last 99: trigger

    assert of(events, Triggered) == [Triggered("st", "market", 99)]
    assert fills(events)[-1] == ("b2", 95, 3)


def test_stop_market_with_nothing_to_take_is_cancelled_unfilled(book):
    book.submit("s1", "a", "sell", "limit", 1, 100)
    book.submit("st", "c", "buy", "stop_market", 3, stop_price=100)
    events = book.submit("b1", "b", "buy", "limit", 1, 100)
    assert kinds(events)[-2:] == ["Triggered", "Cancelled"]
    assert of(events, Cancelled) == [Cancelled("st", 3, "unfilled")]


def test_stop_already_through_its_price_is_rejected(book):
    book.submit("s1", "a", "sell", "limit", 1, 100)
    book.submit("b1", "b", "buy", "limit", 1, 100)
    assert book.submit("st", "c", "buy", "stop_market", 1, stop_price=100)[0].reason == "stop_would_trigger"
    assert book.submit("st", "c", "sell", "stop_market", 1, stop_price=101)[0].reason == "stop_would_trigger"
    assert kinds(book.submit("st", "c", "sell", "stop_market", 1, stop_price=99)) == ["Accepted"]


def test_stops_trigger_in_submission_order_and_may_cascade(book):
    book.submit("s1", "a", "sell", "limit", 1, 100)
    book.submit("s2", "a", "sell", "limit", 1, 101)
    book.submit("s3", "a", "sell", "limit", 1, 102)
    book.submit("late", "c", "buy", "stop_market", 1, stop_price=100)
    book.submit("early", "d", "buy", "stop_market", 1, stop_price=99)
    book.submit("chain", "e", "buy", "stop_market", 1, stop_price=101)
    book.submit("x", "f", "sell", "limit", 1, 98)
    book.submit("y", "g", "buy", "limit", 1, 98)  # last price 98

    events = book.submit("b1", "b", "buy", "limit", 1, 100)  # last 100: "late" and "early" trigger

    assert [e.order_id for e in of(events, Triggered)] == ["late", "early", "chain"]
    assert fills(events) == [("s1", 100, 1), ("s2", 101, 1), ("s3", 102, 1)]


def test_waiting_stop_can_be_cancelled_but_not_amended(book):
    book.submit("st", "c", "buy", "stop_limit", 1, 110, stop_price=105)
    assert book.amend("st", qty=2) == [Rejected("amend", "st", "not_amendable")]
    assert book.cancel("st") == [Cancelled("st", 1, "requested")]
    assert book.cancel("st") == [Rejected("cancel", "st", "unknown_order")]


# ---------------------------------------------------------------- self-trade prevention


def _stp_book(mode=None):
    book = OrderBook("TEST")
    book.submit("own", "me", "sell", "limit", 3, 100)
    book.submit("other", "you", "sell", "limit", 5, 100)
    return book


def test_stp_cancel_resting_cancels_my_resting_order_and_goes_on():
    book = _stp_book()
    events = book.submit("in", "me", "buy", "limit", 4, 100, stp="cancel_resting")
    assert kinds(events) == ["Accepted", "Cancelled", "Trade"]
    assert of(events, Cancelled) == [Cancelled("own", 3, "self_trade")]
    assert fills(events) == [("other", 100, 4)]


def test_stp_cancel_incoming_cancels_the_rest_of_my_new_order():
    book = OrderBook("TEST")
    book.submit("other", "you", "sell", "limit", 1, 100)
    book.submit("own", "me", "sell", "limit", 3, 100)
    events = book.submit("in", "me", "buy", "limit", 4, 100, stp="cancel_incoming")
    assert kinds(events) == ["Accepted", "Trade", "Cancelled"]
    assert of(events, Cancelled) == [Cancelled("in", 3, "self_trade")]
    assert queue_ids(book, "sell", 100) == ["own"]
    assert book.best_bid() is None


def test_stp_cancel_both():
    book = _stp_book()
    events = book.submit("in", "me", "buy", "limit", 4, 100, stp="cancel_both")
    assert of(events, Cancelled) == [Cancelled("own", 3, "self_trade"), Cancelled("in", 4, "self_trade")]
    assert not of(events, Trade)
    assert queue_ids(book, "sell", 100) == ["other"]


def test_stp_decrement_and_cancel_smaller_resting_order():
    book = _stp_book()
    events = book.submit("in", "me", "buy", "limit", 4, 100, stp="decrement_and_cancel")
    assert kinds(events) == ["Accepted", "Cancelled", "Reduced", "Trade"]
    assert of(events, Cancelled) == [Cancelled("own", 3, "self_trade")]
    assert of(events, Reduced) == [Reduced("in", 3, 1, "self_trade")]
    assert fills(events) == [("other", 100, 1)]


def test_stp_decrement_and_cancel_smaller_incoming_order():
    book = _stp_book()
    events = book.submit("in", "me", "buy", "limit", 2, 100, stp="decrement_and_cancel")
    assert kinds(events) == ["Accepted", "Reduced", "Cancelled"]
    assert of(events, Reduced) == [Reduced("own", 2, 1, "self_trade")]
    assert of(events, Cancelled) == [Cancelled("in", 2, "self_trade")]
    assert queue_ids(book, "sell", 100) == ["own", "other"]  # the decremented order keeps its place
    assert book.get_order("own").qty == 1


def test_stp_decrement_and_cancel_equal_sizes_cancels_both():
    book = _stp_book()
    events = book.submit("in", "me", "buy", "limit", 3, 100, stp="decrement_and_cancel")
    assert of(events, Cancelled) == [Cancelled("own", 3, "self_trade"), Cancelled("in", 3, "self_trade")]


def test_incoming_orders_mode_decides_and_the_book_default_applies_without_one():
    book = OrderBook("TEST", default_stp="cancel_incoming")
    book.submit("own", "me", "sell", "limit", 3, 100, stp="cancel_both")
    events = book.submit("in", "me", "buy", "limit", 4, 100)
    assert of(events, Cancelled) == [Cancelled("in", 4, "self_trade")]
    assert "own" in book


def test_stp_decrement_on_an_iceberg_takes_the_hidden_reserve_first():
    book = OrderBook("TEST")
    book.submit("own", "me", "sell", "limit", 10, 100, display_qty=4)
    book.submit("in", "me", "buy", "limit", 5, 100, stp="decrement_and_cancel")
    order = book.get_order("own")
    assert (order.qty, order.visible_qty) == (5, 4)
    book.submit("in2", "me", "buy", "limit", 3, 100, stp="decrement_and_cancel")
    order = book.get_order("own")
    assert (order.qty, order.visible_qty) == (2, 2)
    assert book.best_ask() == (100, 2)


# ---------------------------------------------------------------- iceberg


def test_iceberg_shows_only_its_display_size(book):
    events = book.submit("ice", "a", "sell", "limit", 10, 100, display_qty=3)
    assert of(events, BookDelta)[-1].qty == 3
    assert book.best_ask() == (100, 3)
    assert book.get_order("ice").qty == 10


def test_iceberg_replenishes_at_the_back_of_the_queue(book):
    book.submit("ice", "a", "sell", "limit", 10, 100, display_qty=3)
    book.submit("plain", "b", "sell", "limit", 2, 100)

    events = book.submit("t1", "c", "buy", "ioc", 3, 100)  # takes the whole displayed slice

    assert fills(events) == [("ice", 100, 3)]
    assert queue_ids(book, "sell", 100) == ["plain", "ice"]  # lost priority on replenish
    assert book.best_ask() == (100, 5)
    assert book.get_order("ice").visible_qty == 3


def test_partly_taken_slice_keeps_its_place(book):
    book.submit("ice", "a", "sell", "limit", 10, 100, display_qty=3)
    book.submit("plain", "b", "sell", "limit", 2, 100)
    book.submit("t1", "c", "buy", "ioc", 2, 100)
    assert queue_ids(book, "sell", 100) == ["ice", "plain"]
    assert book.get_order("ice").visible_qty == 1


def test_large_taker_goes_round_the_queue_slice_by_slice(book):
    book.submit("ice", "a", "sell", "limit", 7, 100, display_qty=3)
    book.submit("plain", "b", "sell", "limit", 2, 100)
    events = book.submit("t1", "c", "buy", "limit", 9, 100)
    assert fills(events) == [("ice", 100, 3), ("plain", 100, 2), ("ice", 100, 3), ("ice", 100, 1)]
    assert book.best_ask() is None
    # one book delta for the level, not one per fill
    assert [(d.price, d.qty) for d in of(events, BookDelta)] == [(100, 0)]


def test_iceberg_remainder_of_an_incoming_order_rests_showing_its_display_size(book):
    book.submit("s1", "a", "sell", "limit", 2, 100)
    book.submit("ice", "b", "buy", "limit", 10, 100, display_qty=4)
    order = book.get_order("ice")
    assert (order.qty, order.visible_qty) == (8, 4)
    assert book.best_bid() == (100, 4)


# ---------------------------------------------------------------- amend and cancel


def test_amend_size_down_keeps_priority(book):
    book.submit("a1", "a", "buy", "limit", 5, 100)
    book.submit("a2", "b", "buy", "limit", 5, 100)
    events = book.amend("a1", qty=2)
    assert kinds(events) == ["Amended"] and events[0] == Amended("a1", 100, 2, False)
    assert of(events, BookDelta)[0].qty == 7
    assert queue_ids(book, "buy", 100) == ["a1", "a2"]


def test_amend_size_up_loses_priority(book):
    book.submit("a1", "a", "buy", "limit", 5, 100)
    book.submit("a2", "b", "buy", "limit", 5, 100)
    events = book.amend("a1", qty=6)
    assert events[0] == Amended("a1", 100, 6, True)
    assert queue_ids(book, "buy", 100) == ["a2", "a1"]
    assert book.best_bid() == (100, 11)


def test_amend_price_loses_priority_even_when_moving_back(book):
    book.submit("a1", "a", "buy", "limit", 5, 100)
    book.submit("a2", "b", "buy", "limit", 5, 100)
    book.amend("a1", price=99)
    book.amend("a1", price=100)
    assert queue_ids(book, "buy", 100) == ["a2", "a1"]


def test_amend_price_through_the_book_trades_at_once(book):
    book.submit("s1", "a", "sell", "limit", 2, 102)
    book.submit("b1", "b", "buy", "limit", 5, 100)

    events = book.amend("b1", price=102)

    assert kinds(events) == ["Amended", "Trade"]
    assert fills(events) == [("s1", 102, 2)]
    assert book.best_bid() == (102, 3)
    assert [(d.side, d.price, d.qty) for d in of(events, BookDelta)] == [
        ("buy", 100, 0),
        ("sell", 102, 0),
        ("buy", 102, 3),
    ]


def test_amend_post_only_through_the_book_is_refused_and_changes_nothing(book):
    book.submit("s1", "a", "sell", "limit", 2, 102)
    book.submit("p1", "b", "buy", "post_only", 5, 100)
    assert book.amend("p1", price=102) == [Rejected("amend", "p1", "post_only_would_cross")]
    assert book.get_order("p1").price == 100


def test_amend_with_nothing_to_change_is_acknowledged(book):
    book.submit("b1", "b", "buy", "limit", 5, 100)
    assert book.amend("b1", price=100, qty=5) == [Amended("b1", 100, 5, False)]


def test_amend_iceberg_size_down_trims_the_displayed_slice(book):
    book.submit("ice", "a", "buy", "limit", 10, 100, display_qty=4)
    book.amend("ice", qty=3)
    order = book.get_order("ice")
    assert (order.qty, order.visible_qty) == (3, 3)
    book.amend("ice", qty=9)
    assert book.get_order("ice").visible_qty == 4


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [({"qty": 0}, "invalid_qty"), ({"qty": 1.5}, "invalid_qty"), ({"price": -1}, "invalid_price")],
)
def test_amend_refuses_bad_values(book, kwargs, reason):
    book.submit("b1", "b", "buy", "limit", 5, 100)
    assert book.amend("b1", **kwargs) == [Rejected("amend", "b1", reason)]


def test_amend_and_cancel_unknown_orders_are_rejected(book):
    assert book.amend("nope", qty=1) == [Rejected("amend", "nope", "unknown_order")]
    assert book.cancel("nope") == [Rejected("cancel", "nope", "unknown_order")]


def test_cancel_removes_the_order_and_reports_the_level(book):
    book.submit("b1", "b", "buy", "limit", 5, 100)
    book.submit("b2", "b", "buy", "limit", 1, 100)
    events = book.cancel("b1")
    assert events[0] == Cancelled("b1", 5, "requested")
    assert (events[1].side, events[1].price, events[1].qty) == ("buy", 100, 1)
    assert "b1" not in book


def test_filled_order_id_can_be_used_again(book):
    book.submit("x", "a", "sell", "limit", 1, 100)
    book.submit("y", "b", "buy", "limit", 1, 100)
    assert kinds(book.submit("x", "a", "sell", "limit", 1, 100)) == ["Accepted"]


# ---------------------------------------------------------------- good-till-time


def test_expire_removes_due_orders_in_expiry_order(book):
    book.submit("late", "a", "buy", "limit", 1, 100, expire_at=20)
    book.submit("early", "a", "buy", "limit", 2, 99, expire_at=10)
    book.submit("gtc", "a", "buy", "limit", 3, 98)
    book.submit("stop", "a", "buy", "stop_limit", 1, 120, stop_price=110, expire_at=15)

    assert book.expire(9) == []
    events = book.expire(20)

    assert [e for e in events if type(e) is Expired] == [Expired("early", 2), Expired("stop", 1), Expired("late", 1)]
    assert [o.order_id for o in book.open_orders()] == ["gtc"]


def test_order_expiring_at_or_before_the_clock_is_rejected(book):
    book.expire(100)
    assert book.submit("b1", "a", "buy", "limit", 1, 100, expire_at=100)[0].reason == "already_expired"
    assert kinds(book.submit("b2", "a", "buy", "limit", 1, 100, expire_at=101)) == ["Accepted"]


def test_filled_or_cancelled_gtt_order_does_not_expire_later(book):
    book.submit("b1", "a", "buy", "limit", 1, 100, expire_at=10)
    book.cancel("b1")
    book.submit("b1", "a", "buy", "limit", 1, 100)  # same id, now good-till-cancelled
    assert book.expire(50) == []
    assert "b1" in book


def test_amended_gtt_order_keeps_its_expiry(book):
    book.submit("b1", "a", "buy", "limit", 5, 100, expire_at=10)
    book.amend("b1", price=101)
    assert of(book.expire(10), Expired) == [Expired("b1", 5)]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        (("o", "a", "hold", "limit", 1, 100), {}, "invalid_side"),
        (("o", "a", "buy", "twap", 1, 100), {}, "invalid_order_type"),
        (("o", "a", "buy", "limit", 0, 100), {}, "invalid_qty"),
        (("o", "a", "buy", "limit", -3, 100), {}, "invalid_qty"),
        (("o", "a", "buy", "limit", 1.0, 100), {}, "invalid_qty"),
        (("o", "a", "buy", "limit", Decimal(1), 100), {}, "invalid_qty"),
        (("o", "a", "buy", "limit", 1), {}, "invalid_price"),
        (("o", "a", "buy", "ioc", 1, 0), {}, "invalid_price"),
        (("o", "a", "buy", "stop_limit", 1, 100), {}, "invalid_stop_price"),
        (("o", "a", "buy", "limit", 1, 100), {"stop_price": 90}, "invalid_stop_price"),
        (("o", "a", "buy", "market", 1), {"display_qty": 1}, "invalid_display_qty"),
        (("o", "a", "buy", "limit", 1, 100), {"display_qty": 0}, "invalid_display_qty"),
        (("o", "a", "buy", "ioc", 1, 100), {"expire_at": 5}, "invalid_expire_at"),
        (("o", "a", "buy", "limit", 1, 100), {"stp": "allow"}, "invalid_stp"),
    ],
)
def test_malformed_orders_are_rejected_with_a_reason(book, args, kwargs, reason):
    assert book.submit(*args, **kwargs) == [Rejected("submit", "o", reason)]
    assert len(book) == 0 and book.seq == 0


def test_live_order_id_cannot_be_reused(book):
    book.submit("o", "a", "buy", "limit", 1, 100)
    assert book.submit("o", "a", "buy", "limit", 1, 99) == [Rejected("submit", "o", "duplicate_order_id")]


# ---------------------------------------------------------------- events, seq, snapshot


def test_book_deltas_are_numbered_consecutively_and_zero_means_gone(book):
    events = []
    events += book.submit("s1", "a", "sell", "limit", 2, 100)
    events += book.submit("s2", "a", "sell", "limit", 2, 101)
    events += book.submit("b1", "b", "buy", "limit", 3, 101)
    events += book.cancel("b1") + book.cancel("s2")
    deltas = of(events, BookDelta)
    assert [d.seq for d in deltas] == list(range(1, len(deltas) + 1))
    assert [(d.side, d.price, d.qty) for d in deltas][-1] == ("sell", 101, 0)
    assert book.depth().seq == deltas[-1].seq


def test_every_event_names_its_type():
    assert {cls.type for cls in (Accepted, Rejected, Trade, Cancelled, Reduced, Expired, Amended, Triggered)} == {
        "accepted",
        "rejected",
        "trade",
        "cancelled",
        "reduced",
        "expired",
        "amended",
        "triggered",
    }
    assert BookDelta.type == "book_delta"


def _busy_book() -> OrderBook:
    book = OrderBook("TEST", default_stp="decrement_and_cancel")
    book.submit("s1", "a", "sell", "limit", 4, 101, expire_at=50)
    book.submit("s2", "b", "sell", "limit", 9, 101, display_qty=2)
    book.submit("s3", "a", "sell", "limit", 1, 102)
    book.submit("b1", "c", "buy", "limit", 5, 99)
    book.submit("b2", "d", "buy", "limit", 5, 99)
    book.submit("t", "e", "buy", "ioc", 5, 101)  # takes all of s1 and part of the iceberg slice
    book.submit("st", "f", "buy", "stop_limit", 3, 103, stop_price=102)
    book.expire(7)
    return book


def test_snapshot_restores_the_same_book_and_seq_goes_on():
    book = _busy_book()
    restored = OrderBook.restore(json.loads(json.dumps(book.snapshot())))

    assert restored.snapshot() == book.snapshot()
    for side in ("buy", "sell"):
        assert [[vars_of(o) for o in q] for q in restored.levels(side)] == [
            [vars_of(o) for o in q] for q in book.levels(side)
        ]
    commands = [
        lambda b: b.submit("x1", "g", "buy", "limit", 20, 102),
        lambda b: b.submit("x2", "a", "sell", "limit", 3, 99),
        lambda b: b.amend("b2", qty=1),
        lambda b: b.expire(60),
    ]
    for command in commands:
        assert command(restored) == command(book)
    restored.check_invariants()


def vars_of(view):
    return (view.order_id, view.price, view.qty, view.visible_qty, view.owner)


def test_snapshot_of_another_version_is_refused():
    snap = OrderBook("TEST").snapshot()
    snap["version"] = 99
    with pytest.raises(ValueError, match="version"):
        OrderBook.restore(snap)


def test_expire_needs_an_integer_clock(book):
    with pytest.raises(TypeError):
        book.expire(1.5)


# ---------------------------------------------------------------- Decimal boundary


@pytest.fixture
def market():
    return Instrument(tick_size="0.0001", lot_size="10")


def test_instrument_converts_exactly(market):
    assert market.to_ticks(Decimal("0.0030")) == 30
    assert market.to_ticks("0.003") == 30
    assert market.to_lots("1000") == 100
    assert market.price(30) == Decimal("0.0030")
    assert market.qty(100) == Decimal("1000")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("price", "0.00305", "price_off_tick"),
        ("quantity", "1005", "qty_off_lot"),
        ("price", 0.003, "invalid_price"),
        ("price", "-0.003", "invalid_price"),
        ("price", "abc", "invalid_price"),
        ("quantity", "NaN", "invalid_qty"),
        ("display_qty", "15", "qty_off_lot"),
        ("display_qty", "0", "invalid_display_qty"),
        ("stop_price", "0.00001", "price_off_tick"),
    ],
)
def test_instrument_rejects_values_off_the_grid(market, field, value, reason):
    book = OrderBook("VAIX")
    order = {"order_id": "o", "owner": "a", "side": "buy", "order_type": "limit", "quantity": "1000", "price": "0.003"}
    if field == "stop_price":
        order["order_type"] = "stop_limit"
    order[field] = value
    assert market.submit(book, **order) == [Rejected("submit", "o", reason)]


def test_instrument_places_and_amends_in_decimal(market):
    book = OrderBook("VAIX")
    events = market.submit(
        book, order_id="o", owner="a", side="buy", order_type="limit", quantity="1000", price=Decimal("0.003")
    )
    assert of(events, Accepted)[0].price == 30 and of(events, Accepted)[0].qty == 100
    assert market.submit(book, order_id="m", owner="b", side="buy", order_type="market", quantity="10", price="x")[
        0
    ] == Rejected("submit", "m", "no_liquidity")  # price is ignored for market orders
    assert market.amend(book, "o", price="0.00315") == [Rejected("amend", "o", "price_off_tick")]
    market.amend(book, "o", price="0.0031", quantity="500")
    assert (market.price(book.best_bid()[0]), market.qty(book.best_bid()[1])) == (Decimal("0.0031"), Decimal("500"))


def test_instrument_needs_positive_steps():
    with pytest.raises(InvalidInput):
        Instrument(tick_size="0", lot_size="1")
