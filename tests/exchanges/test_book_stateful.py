"""The order book core and a naive reference book, driven side by side by hypothesis.

Every step sends the same command to both and checks that they report the same events (book deltas
aside) and hold the same book: every level, every queue in order, every waiting stop. After every step
the invariants hold: the book is not crossed, quantity is conserved order by order, queues are in time
order, book deltas are numbered 1, 2, 3, ... and replaying them gives the book's depth. A step may also
snapshot the book to JSON and carry on with the restored copy.

Example counts: the ``book-ci`` profile (default) keeps this file well under a minute; for a deep run
``BOOK_HYPOTHESIS_PROFILE=book-deep .venv/bin/python -m pytest tests/exchanges/test_book_stateful.py``.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from exchanges.book import (
    Accepted,
    Amended,
    BookDelta,
    Cancelled,
    Expired,
    OrderBook,
    OrderType,
    Reduced,
    Rejected,
    StpMode,
    Trade,
    Triggered,
)
from tests.exchanges.reference_book import ReferenceBook

settings.register_profile(
    "book-ci",
    max_examples=500,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "book-deep",
    max_examples=5_000,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile(os.environ.get("BOOK_HYPOTHESIS_PROFILE", "book-ci"))

# A narrow band of prices, few owners and small sizes make crossings, self-trades, icebergs and
# partial fills frequent.
PRICES = st.integers(min_value=1, max_value=6)
QTYS = st.integers(min_value=1, max_value=6)
OWNERS = st.integers(min_value=0, max_value=2)
TYPES = st.sampled_from(sorted(OrderType.ALL))
STP = st.one_of(st.none(), st.sampled_from(sorted(StpMode.ALL)))


def normalise(event) -> tuple:
    """A core event in the reference book's tuple form (book deltas are checked elsewhere)."""
    t = type(event)
    if t is Accepted:
        return ("accepted", event.order_id)
    if t is Rejected:
        return ("rejected", event.op, event.order_id, event.reason)
    if t is Trade:
        return (
            "trade",
            event.price,
            event.qty,
            event.taker_order_id,
            event.maker_order_id,
            event.taker_remaining,
            event.maker_remaining,
        )
    if t is Cancelled:
        return ("cancelled", event.order_id, event.qty, event.reason)
    if t is Reduced:
        return ("reduced", event.order_id, event.qty, event.remaining)
    if t is Expired:
        return ("expired", event.order_id, event.qty)
    if t is Amended:
        return ("amended", event.order_id, event.price, event.qty, event.priority_lost)
    if t is Triggered:
        return ("triggered", event.order_id, event.order_type)
    raise AssertionError(f"unexpected event {event!r}")


class BookVersusReference(RuleBasedStateMachine):
    @initialize(default_stp=st.sampled_from(sorted(StpMode.ALL)))
    def start(self, default_stp):
        self.book = OrderBook("TEST", default_stp=default_stp)
        self.ref = ReferenceBook(default_stp=default_stp)
        self.next_id = 0
        self.clock = 0
        self.open_qty: dict[int, int] = {}  # per accepted order, from the events alone
        self.depth_from_deltas: dict[str, dict[int, int]] = {"buy": {}, "sell": {}}
        self.last_seq = 0
        self.trades = 0

    # ------------------------------------------------------------ rules

    @rule(
        side=st.sampled_from(["buy", "sell"]),
        order_type=TYPES,
        price=PRICES,
        qty=QTYS,
        owner=OWNERS,
        stop_price=PRICES,
        display_qty=st.one_of(st.none(), st.integers(min_value=1, max_value=3)),
        lifetime=st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
        stp=STP,
    )
    def submit(self, side, order_type, price, qty, owner, stop_price, display_qty, lifetime, stp):
        self.next_id += 1
        kwargs = {
            "stop_price": stop_price if order_type in OrderType.STOPS else None,
            "display_qty": display_qty if order_type in OrderType.MAY_BE_ICEBERG else None,
            "expire_at": None if lifetime is None or order_type not in OrderType.MAY_EXPIRE else self.clock + lifetime,
            "stp": stp,
        }
        args = (self.next_id, owner, side, order_type, qty, None if order_type.endswith("market") else price)
        self.step(self.book.submit(*args, **kwargs), self.ref.submit(*args, **kwargs))

    @rule(
        side=st.sampled_from(["buy", "sell"]),
        post_only=st.booleans(),
        price=PRICES,
        qty=QTYS,
        owner=OWNERS,
        display_qty=st.one_of(st.none(), st.integers(min_value=1, max_value=3)),
    )
    def submit_resting(self, side, post_only, price, qty, owner, display_qty):
        """Plain resting orders, so that the book has depth for the other rules to work on."""
        self.next_id += 1
        args = (self.next_id, owner, side, "post_only" if post_only else "limit", qty, price)
        self.step(self.book.submit(*args, display_qty=display_qty), self.ref.submit(*args, display_qty=display_qty))

    @precondition(lambda self: len(self.book) > 0)
    @rule(data=st.data())
    def cancel(self, data):
        self.step(self.book.cancel(oid := self.pick_live(data)), self.ref.cancel(oid))

    @precondition(lambda self: len(self.book) > 0)
    @rule(data=st.data(), price=st.one_of(st.none(), PRICES), qty=st.one_of(st.none(), QTYS))
    def amend(self, data, price, qty):
        oid = self.pick_live(data)
        self.step(self.book.amend(oid, price=price, qty=qty), self.ref.amend(oid, price=price, qty=qty))

    @rule(data=st.data(), amend=st.booleans())
    def cancel_or_amend_a_dead_or_unknown_order(self, data, amend):
        oid = data.draw(st.integers(min_value=1, max_value=self.next_id + 1).filter(lambda i: i not in self.book))
        if amend:
            self.step(self.book.amend(oid, qty=1), self.ref.amend(oid, qty=1))
        else:
            self.step(self.book.cancel(oid), self.ref.cancel(oid))

    @rule(advance=st.integers(min_value=0, max_value=2))
    def expire(self, advance):
        self.clock += advance
        self.step(self.book.expire(self.clock), self.ref.expire(self.clock))

    @rule()
    def restart_from_snapshot(self):
        snap = json.loads(json.dumps(self.book.snapshot()))
        self.book = OrderBook.restore(snap)

    # ------------------------------------------------------------ helpers

    def pick_live(self, data) -> int:
        """A live order: resting or a stop waiting for its trigger."""
        return data.draw(st.sampled_from(sorted(o.order_id for o in self.book.open_orders())))

    def step(self, core_events: list, ref_events: list) -> None:
        assert [normalise(e) for e in core_events if type(e) is not BookDelta] == ref_events
        for event in core_events:
            self.account(event)

    def account(self, event) -> None:
        """Follow every order's open quantity through the events, and the depth through the deltas."""
        t = type(event)
        if t is BookDelta:
            assert event.seq == self.last_seq + 1, "book delta seq must be consecutive"
            self.last_seq = event.seq
            if event.qty:
                self.depth_from_deltas[event.side][event.price] = event.qty
            else:
                self.depth_from_deltas[event.side].pop(event.price, None)
        elif t is Accepted:
            self.open_qty[event.order_id] = event.qty
        elif t is Trade:
            self.trades += 1
            assert event.qty > 0
            self.open_qty[event.taker_order_id] -= event.qty
            self.open_qty[event.maker_order_id] -= event.qty
            assert self.open_qty[event.taker_order_id] == event.taker_remaining
            assert self.open_qty[event.maker_order_id] == event.maker_remaining
        elif t in (Cancelled, Expired):
            self.open_qty[event.order_id] -= event.qty
            assert self.open_qty[event.order_id] == 0, "a cancelled or expired order must have nothing left"
        elif t is Reduced:
            self.open_qty[event.order_id] -= event.qty
            assert self.open_qty[event.order_id] == event.remaining > 0
        elif t is Amended:
            self.open_qty[event.order_id] = event.qty

    # ------------------------------------------------------------ invariants

    @invariant()
    def internal_structures_consistent_and_not_crossed(self):
        self.book.check_invariants()  # includes: best bid < best ask
        bid, ask = self.book.best_bid(), self.book.best_ask()
        assert bid is None or ask is None or bid[0] < ask[0]

    @invariant()
    def same_book_as_reference(self):
        for side in ("buy", "sell"):
            core_levels = [[(o.order_id, o.price, o.qty, o.visible_qty) for o in q] for q in self.book.levels(side)]
            assert core_levels == self.ref.levels(side)
        core_stops = sorted((o.order_id, o.qty) for o in self.book.open_orders() if o.status == "waiting_trigger")
        assert core_stops == self.ref.waiting_stops()
        assert self.book.last_price == self.ref.last_price

    @invariant()
    def quantity_conserved(self):
        live = {o.order_id: o.qty for o in self.book.open_orders()}
        for oid, qty in self.open_qty.items():
            assert qty >= 0
            assert live.get(oid, 0) == qty, f"order {oid}: events leave {qty} open, the book has {live.get(oid)}"
        assert set(live) <= set(self.open_qty)

    @invariant()
    def price_time_priority(self):
        for side in ("buy", "sell"):
            prices = [q[0].price for q in self.book.levels(side)]
            assert prices == sorted(prices, reverse=side == "buy") and len(set(prices)) == len(prices)
        # order within each queue: arrival numbers increase (checked by check_invariants) and equal the
        # reference's (checked by same_book_as_reference, whose queues are sorted by arrival)

    @invariant()
    def deltas_rebuild_the_depth(self):
        depth = self.book.depth()
        assert depth.seq == self.book.seq == self.last_seq
        assert sorted(self.depth_from_deltas["buy"].items(), reverse=True) == depth.bids == self.ref.depth("buy")
        assert sorted(self.depth_from_deltas["sell"].items()) == depth.asks == self.ref.depth("sell")


BookVersusReference.TestCase.settings = PROFILE
TestBookVersusReference = BookVersusReference.TestCase
