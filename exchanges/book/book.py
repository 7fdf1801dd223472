"""A central limit order book for one symbol: price-time priority matching, pure Python, no Django.

Prices are integer ticks and quantities integer lots (exact and fast); see ``instrument.py`` for the
``Decimal`` boundary. The book has no clock of its own: good-till-time orders carry an integer
``expire_at`` in the caller's units and go when the caller calls :meth:`OrderBook.expire`.

One book is driven by one thread (the matching service serialises commands per symbol). Every command
returns the list of events it caused, in order (see ``events.py``); the book itself keeps no history.

Data structures (chosen for the amend-heavy flow of real venues):

* each price level is an intrusive doubly linked list of orders, so cancel and amend are O(1);
* an ``order_id -> order`` dict finds any live order in O(1);
* each side keeps a heap of its price keys with lazy deletion (an emptied level leaves its key in the
  heap until it surfaces; a set guarantees one heap entry per key so the heap stays bounded by the
  number of distinct prices), so the best price is O(1) to read and O(log n) to change.

The full rules (priority, order types, STP, iceberg, amend, expiry, stops, events) are in
``docs/exchange-book.md``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Any

from .constants import CancelReason, Op, OrderType, Reject, Side, StpMode
from .events import (
    Accepted,
    Amended,
    BookDelta,
    Cancelled,
    Event,
    Expired,
    Reduced,
    Rejected,
    Trade,
    Triggered,
)

SNAPSHOT_VERSION = 1

_BUY = Side.BUY
_SELL = Side.SELL
_LIMIT = OrderType.LIMIT
_MARKET = OrderType.MARKET
_FOK = OrderType.FOK
_POST_ONLY = OrderType.POST_ONLY
_STOP_LIMIT = OrderType.STOP_LIMIT
_STOP_MARKET = OrderType.STOP_MARKET
_ALL_TYPES = OrderType.ALL
_NEEDS_PRICE = OrderType.NEEDS_PRICE
_STOPS = OrderType.STOPS
_RESTING = OrderType.RESTING
_MAY_EXPIRE = OrderType.MAY_EXPIRE
_MAY_BE_ICEBERG = OrderType.MAY_BE_ICEBERG
_CANCEL_RESTING = StpMode.CANCEL_RESTING
_CANCEL_INCOMING = StpMode.CANCEL_INCOMING
_CANCEL_BOTH = StpMode.CANCEL_BOTH
_DECREMENT = StpMode.DECREMENT_AND_CANCEL
_SELF_TRADE = CancelReason.SELF_TRADE
_UNFILLED = CancelReason.UNFILLED


class _Order:
    """A live order. ``level`` is set while it rests on the book; a stop waiting for its trigger has none.

    ``qty`` is the open quantity (hidden iceberg reserve included), ``visible`` the displayed part
    (equal to ``qty`` unless the order is an iceberg). ``sub_no`` is the submission number (stop trigger
    and expiry tie-break), ``arrival`` the number given when the order last joined the back of a queue.
    """

    __slots__ = (
        "order_id",
        "owner",
        "is_buy",
        "side",
        "order_type",
        "price",
        "qty",
        "visible",
        "display",
        "stp",
        "expire_at",
        "stop_price",
        "sub_no",
        "arrival",
        "prev",
        "next",
        "level",
        "live",
    )

    def __init__(self, order_id, owner, side, order_type, price, qty, display, stp, expire_at, stop_price, sub_no):
        self.order_id = order_id
        self.owner = owner
        self.is_buy = side == _BUY
        self.side = side
        self.order_type = order_type
        self.price = price
        self.qty = qty
        self.visible = qty if display is None or display > qty else display
        self.display = display
        self.stp = stp
        self.expire_at = expire_at
        self.stop_price = stop_price
        self.sub_no = sub_no
        self.arrival = 0
        self.prev = None
        self.next = None
        self.level = None
        self.live = False


class _Level:
    """One price on one side: a FIFO queue of orders and the sum of their displayed quantities."""

    __slots__ = ("price", "key", "head", "tail", "qty", "levels")

    def __init__(self, price, key, levels):
        self.price = price
        self.key = key
        self.head = None
        self.tail = None
        self.qty = 0
        self.levels = levels


class _Side:
    """Levels of one side keyed by ``price`` (asks) or ``-price`` (bids), so the smallest key is the best."""

    __slots__ = ("side", "levels", "heap", "inheap")

    def __init__(self, side):
        self.side = side
        self.levels: dict[int, _Level] = {}
        self.heap: list[int] = []
        self.inheap: set[int] = set()

    def best(self) -> _Level | None:
        heap = self.heap
        levels = self.levels
        while heap:
            lvl = levels.get(heap[0])
            if lvl is not None:
                return lvl
            self.inheap.discard(heappop(heap))
        return None

    def sorted_levels(self) -> list[_Level]:
        levels = self.levels
        return [levels[k] for k in sorted(levels)]


@dataclass(slots=True, frozen=True)
class OrderView:
    """A read-only copy of a live order, for queries and tests."""

    order_id: Any
    owner: Any
    side: str
    order_type: str
    price: int | None
    qty: int
    visible_qty: int
    display_qty: int | None
    stop_price: int | None
    expire_at: int | None
    stp: str
    status: str  # "open" (on the book) or "waiting_trigger" (a stop order off the book)
    #: its queue place, as ``snapshot``/``restore`` keep it (submission number, arrival at its level)
    sub_no: int = 0
    arrival: int = 0


@dataclass(slots=True, frozen=True)
class BookDepth:
    """Displayed quantity per price level, best first, as of book delta ``seq``."""

    seq: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


def _view(o: _Order) -> OrderView:
    return OrderView(
        order_id=o.order_id,
        owner=o.owner,
        side=o.side,
        order_type=o.order_type,
        price=o.price,
        qty=o.qty,
        visible_qty=o.visible if o.level is not None else 0,
        display_qty=o.display,
        stop_price=o.stop_price,
        expire_at=o.expire_at,
        stp=o.stp,
        status="open" if o.level is not None else "waiting_trigger",
        sub_no=o.sub_no,
        arrival=o.arrival,
    )


def _is_pos_int(x) -> bool:
    return type(x) is int and x > 0


class OrderBook:
    """The order book of one symbol. Commands: :meth:`submit`, :meth:`amend`, :meth:`cancel`, :meth:`expire`.

    ``owner`` on an order is any hashable value: orders with equal owners never trade with each other
    (self-trade prevention, see :class:`~exchanges.book.constants.StpMode`). ``default_stp`` applies to
    orders submitted without an ``stp`` mode.
    """

    def __init__(self, symbol: str = "", *, default_stp: str = _CANCEL_RESTING):
        if default_stp not in StpMode.ALL:
            raise ValueError(f"unknown STP mode {default_stp!r}")
        self.symbol = symbol
        self.default_stp = default_stp
        self.seq = 0  # last BookDelta seq
        self.trade_no = 0  # last Trade trade_no
        self.last_price: int | None = None  # price of the last trade, drives stop triggers
        self.clock: int | None = None  # the largest ``now`` given to expire()
        self._counter = 0  # source of sub_no and arrival numbers
        self._bids = _Side(_BUY)
        self._asks = _Side(_SELL)
        self._orders: dict[Any, _Order] = {}
        self._buy_stops: list[tuple[int, int, _Order]] = []  # (stop_price, sub_no, order): lowest first
        self._sell_stops: list[tuple[int, int, _Order]] = []  # (-stop_price, sub_no, order): highest first
        self._expiry: list[tuple[int, int, _Order]] = []  # (expire_at, sub_no, order)

    # ------------------------------------------------------------------ commands

    def submit(
        self,
        order_id: Any,
        owner: Any,
        side: str,
        order_type: str,
        qty: int,
        price: int | None = None,
        *,
        stop_price: int | None = None,
        display_qty: int | None = None,
        expire_at: int | None = None,
        stp: str | None = None,
    ) -> list[Event]:
        """Place a new order. Returns ``[Rejected]`` or ``[Accepted, ...what followed]``.

        ``price`` is required for limit, ioc, fok, post_only and stop_limit and ignored for market and
        stop_market. ``display_qty`` makes a limit, post_only or stop_limit order an iceberg.
        ``expire_at`` (good-till-time) is allowed on the types that can wait: limit, post_only and stops.
        """
        reason = None
        if order_id in self._orders:
            reason = Reject.DUPLICATE_ORDER_ID
        elif side != _BUY and side != _SELL:
            reason = Reject.INVALID_SIDE
        elif order_type not in _ALL_TYPES:
            reason = Reject.INVALID_ORDER_TYPE
        elif type(qty) is not int or qty <= 0:
            reason = Reject.INVALID_QTY
        elif order_type in _NEEDS_PRICE and (type(price) is not int or price <= 0):
            reason = Reject.INVALID_PRICE
        elif (stop_price is not None or order_type in _STOPS) and (
            order_type not in _STOPS or type(stop_price) is not int or stop_price <= 0
        ):
            reason = Reject.INVALID_STOP_PRICE
        elif display_qty is not None and (order_type not in _MAY_BE_ICEBERG or not _is_pos_int(display_qty)):
            reason = Reject.INVALID_DISPLAY_QTY
        elif expire_at is not None and (order_type not in _MAY_EXPIRE or type(expire_at) is not int):
            reason = Reject.INVALID_EXPIRE_AT
        elif expire_at is not None and self.clock is not None and expire_at <= self.clock:
            reason = Reject.ALREADY_EXPIRED
        elif stp is not None and stp not in StpMode.ALL:
            reason = Reject.INVALID_STP
        if reason is not None:
            return [Rejected(Op.SUBMIT, order_id, reason)]
        is_buy = side == _BUY
        if order_type not in _NEEDS_PRICE:
            price = None
        if order_type == _LIMIT:
            pass
        elif order_type in _STOPS:
            last = self.last_price
            if last is not None and (last >= stop_price if is_buy else last <= stop_price):
                return [Rejected(Op.SUBMIT, order_id, Reject.STOP_WOULD_TRIGGER)]
        elif order_type == _POST_ONLY:
            if self._crosses(is_buy, price):
                return [Rejected(Op.SUBMIT, order_id, Reject.POST_ONLY_WOULD_CROSS)]
        elif order_type == _FOK:
            if not self._fok_fillable(is_buy, price, qty, owner, stp or self.default_stp):
                return [Rejected(Op.SUBMIT, order_id, Reject.FOK_UNFILLABLE)]
        elif order_type == _MARKET:
            if not (self._asks if is_buy else self._bids).levels:
                return [Rejected(Op.SUBMIT, order_id, Reject.NO_LIQUIDITY)]

        self._counter += 1
        o = _Order(
            order_id,
            owner,
            side,
            order_type,
            price,
            qty,
            display_qty,
            stp or self.default_stp,
            expire_at,
            stop_price,
            self._counter,
        )
        out: list = [Accepted(order_id, owner, side, order_type, price, qty, stop_price, display_qty, expire_at)]
        if expire_at is not None:
            heappush(self._expiry, (expire_at, o.sub_no, o))
        if order_type in _STOPS:
            o.live = True
            self._orders[order_id] = o
            if is_buy:
                heappush(self._buy_stops, (stop_price, o.sub_no, o))
            else:
                heappush(self._sell_stops, (-stop_price, o.sub_no, o))
            return out
        self._enter(o, out)
        if self._buy_stops or self._sell_stops:
            self._run_stops(out)
        return out

    def cancel(self, order_id: Any) -> list[Event]:
        """Cancel a resting order or a waiting stop: ``[Cancelled, BookDelta?]`` or ``[Rejected(unknown_order)]``."""
        o = self._orders.pop(order_id, None)
        if o is None:
            return [Rejected(Op.CANCEL, order_id, Reject.UNKNOWN_ORDER)]
        o.live = False
        out: list = [Cancelled(order_id, o.qty, CancelReason.REQUESTED)]
        if o.level is not None:
            lvl = self._unlink(o)
            self.seq += 1
            out.append(BookDelta(self.seq, o.side, lvl.price, lvl.qty))
        return out

    def amend(self, order_id: Any, *, price: int | None = None, qty: int | None = None) -> list[Event]:
        """Change the limit price and/or the open quantity of a resting order.

        ``qty`` is the new *open* quantity (what is left to fill), not the original size. A size decrease
        keeps the order's place in the queue; a size increase or a price change sends it to the back, and
        a new price that crosses the book trades at once (a post_only order is refused instead, unchanged).
        Stop orders waiting for their trigger cannot be amended (``not_amendable``).
        """
        o = self._orders.get(order_id)
        if o is None:
            return [Rejected(Op.AMEND, order_id, Reject.UNKNOWN_ORDER)]
        lvl = o.level
        if lvl is None:
            return [Rejected(Op.AMEND, order_id, Reject.NOT_AMENDABLE)]
        if price is None:
            price = o.price
        elif type(price) is not int or price <= 0:
            return [Rejected(Op.AMEND, order_id, Reject.INVALID_PRICE)]
        if qty is None:
            qty = o.qty
        elif type(qty) is not int or qty <= 0:
            return [Rejected(Op.AMEND, order_id, Reject.INVALID_QTY)]

        if price != o.price:
            # The hot path of real order flow (most amends move a quote without crossing): inlined.
            is_buy = o.is_buy
            if is_buy:
                own = self._bids
                opp = self._asks
            else:
                own = self._asks
                opp = self._bids
            heap = opp.heap
            opp_levels = opp.levels
            while heap:
                best = opp_levels.get(heap[0])
                if best is not None:
                    crosses = best.price <= price if is_buy else best.price >= price
                    break
                opp.inheap.discard(heappop(heap))
            else:
                crosses = False
            if crosses and o.order_type == _POST_ONLY:
                return [Rejected(Op.AMEND, order_id, Reject.POST_ONLY_WOULD_CROSS)]
            p = o.prev
            n = o.next
            if p is None:
                lvl.head = n
            else:
                p.next = n
            if n is None:
                lvl.tail = p
            else:
                n.prev = p
            lvl.qty -= o.visible
            levels = own.levels
            if lvl.head is None:
                del levels[lvl.key]
            self.seq += 1
            out: list = [Amended(order_id, price, qty, True), BookDelta(self.seq, o.side, lvl.price, lvl.qty)]
            o.price = price
            o.qty = qty
            d = o.display
            o.visible = qty if d is None or d > qty else d
            if crosses:
                o.level = o.prev = o.next = None
                self._enter(o, out)
                if self._buy_stops or self._sell_stops:
                    self._run_stops(out)
                return out
            key = -price if is_buy else price
            lvl = levels.get(key)
            if lvl is None:
                lvl = levels[key] = _Level(price, key, levels)
                if key not in own.inheap:
                    own.inheap.add(key)
                    heappush(own.heap, key)
                lvl.head = o
                o.prev = None
            else:
                t = lvl.tail
                t.next = o
                o.prev = t
            o.next = None
            lvl.tail = o
            o.level = lvl
            lvl.qty += o.visible
            self._counter += 1
            o.arrival = self._counter
            self.seq += 1
            out.append(BookDelta(self.seq, o.side, price, lvl.qty))
            return out

        old = o.qty
        if qty == old:
            return [Amended(order_id, price, qty, False)]
        if qty < old:
            o.qty = qty
            out = [Amended(order_id, price, qty, False)]
            if o.visible > qty:
                lvl.qty -= o.visible - qty
                o.visible = qty
                self.seq += 1
                out.append(BookDelta(self.seq, o.side, price, lvl.qty))
            return out
        out = [Amended(order_id, price, qty, True)]
        self._unlink(o)
        o.qty = qty
        d = o.display
        o.visible = qty if d is None or d > qty else d
        self._rest(o, out)
        return out

    def expire(self, now: int) -> list[Event]:
        """Remove every good-till-time order with ``expire_at <= now``: ``[Expired, BookDelta?, ...]``.

        Orders expire in ``(expire_at, submission)`` order. ``now`` also becomes the book's clock: a
        later order with ``expire_at <= clock`` is rejected ``already_expired``.
        """
        if type(now) is not int:
            raise TypeError("now must be an int in the caller's clock units")
        if self.clock is None or now > self.clock:
            self.clock = now
        out: list = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            o = heappop(heap)[2]
            if not o.live:
                continue
            o.live = False
            del self._orders[o.order_id]
            out.append(Expired(o.order_id, o.qty))
            if o.level is not None:
                lvl = self._unlink(o)
                self.seq += 1
                out.append(BookDelta(self.seq, o.side, lvl.price, lvl.qty))
        return out

    # ------------------------------------------------------------------ matching

    def _enter(self, o: _Order, out: list) -> None:
        """An accepted, triggered or re-priced order takes what it can, then rests or is cancelled."""
        if self._take(o, out) or o.qty == 0:
            self._drop(o)
        elif o.order_type in _RESTING:
            d = o.display
            o.visible = o.qty if d is None or d > o.qty else d
            self._rest(o, out)
        else:
            out.append(Cancelled(o.order_id, o.qty, _UNFILLED))
            self._drop(o)

    def _drop(self, o: _Order) -> None:
        if o.live:
            o.live = False
            del self._orders[o.order_id]

    def _take(self, o: _Order, out: list) -> bool:
        """Match ``o`` against the opposite side while it crosses. True if STP cancelled ``o``."""
        if o.is_buy:
            opp = self._asks
        else:
            opp = self._bids
        levels = opp.levels
        heap = opp.heap
        limit = o.price
        is_buy = o.is_buy
        owner = o.owner
        orders = self._orders
        append = out.append
        while True:
            while heap:
                lvl = levels.get(heap[0])
                if lvl is not None:
                    break
                opp.inheap.discard(heappop(heap))
            else:
                return False
            price = lvl.price
            if limit is not None and (price > limit if is_buy else price < limit):
                return False
            before = lvl.qty
            stopped = False
            m = lvl.head
            while m is not None:
                nxt = m.next
                if m.owner == owner:
                    mode = o.stp
                    if mode == _CANCEL_RESTING:
                        self._unlink(m)
                        m.live = False
                        del orders[m.order_id]
                        append(Cancelled(m.order_id, m.qty, _SELF_TRADE))
                    elif mode == _DECREMENT:
                        q = o.qty if o.qty < m.qty else m.qty
                        o.qty -= q
                        if m.qty == q:
                            self._unlink(m)
                            m.live = False
                            del orders[m.order_id]
                            m.qty = 0
                            append(Cancelled(m.order_id, q, _SELF_TRADE))
                        else:
                            m.qty -= q
                            if m.visible > m.qty:
                                lvl.qty -= m.visible - m.qty
                                m.visible = m.qty
                            append(Reduced(m.order_id, q, m.qty, _SELF_TRADE))
                        if o.qty == 0:
                            append(Cancelled(o.order_id, q, _SELF_TRADE))
                            stopped = True
                            break
                        append(Reduced(o.order_id, q, o.qty, _SELF_TRADE))
                    else:
                        if mode == _CANCEL_BOTH:
                            self._unlink(m)
                            m.live = False
                            del orders[m.order_id]
                            append(Cancelled(m.order_id, m.qty, _SELF_TRADE))
                        append(Cancelled(o.order_id, o.qty, _SELF_TRADE))
                        stopped = True
                        break
                    m = nxt
                    continue

                vis = m.visible
                q = o.qty
                fill = q if q < vis else vis
                o.qty = q - fill
                m.qty -= fill
                m.visible = vis = vis - fill
                lvl.qty -= fill
                self.trade_no += 1
                self.last_price = price
                append(Trade(self.trade_no, price, fill, o.order_id, m.order_id, owner, m.owner, o.side, o.qty, m.qty))
                if vis == 0:
                    if m.qty:
                        # Iceberg: the next slice is displayed and goes to the back of the queue.
                        d = m.display
                        m.visible = vis = m.qty if d > m.qty else d
                        lvl.qty += vis
                        self._counter += 1
                        m.arrival = self._counter
                        if nxt is not None:
                            p = m.prev
                            if p is None:
                                lvl.head = nxt
                            else:
                                p.next = nxt
                            nxt.prev = p
                            t = lvl.tail
                            t.next = m
                            m.prev = t
                            m.next = None
                            lvl.tail = m
                        else:
                            nxt = lvl.head
                    else:
                        self._unlink(m)
                        m.live = False
                        del orders[m.order_id]
                if o.qty == 0:
                    break
                m = nxt
            if lvl.qty != before:
                self.seq += 1
                append(BookDelta(self.seq, opp.side, price, lvl.qty))
            if stopped:
                return True
            if o.qty == 0:
                return False

    def _rest(self, o: _Order, out: list) -> None:
        self._counter += 1
        o.arrival = self._counter
        lvl = self._link(o)
        if not o.live:
            o.live = True
            self._orders[o.order_id] = o
        self.seq += 1
        out.append(BookDelta(self.seq, o.side, o.price, lvl.qty))

    def _link(self, o: _Order) -> _Level:
        """Append ``o`` to the back of its price level, creating the level if needed."""
        if o.is_buy:
            side = self._bids
            key = -o.price
        else:
            side = self._asks
            key = o.price
        levels = side.levels
        lvl = levels.get(key)
        if lvl is None:
            lvl = levels[key] = _Level(o.price, key, levels)
            if key not in side.inheap:
                side.inheap.add(key)
                heappush(side.heap, key)
            lvl.head = o
            o.prev = None
        else:
            t = lvl.tail
            t.next = o
            o.prev = t
        o.next = None
        lvl.tail = o
        o.level = lvl
        lvl.qty += o.visible
        return lvl

    def _unlink(self, o: _Order) -> _Level:
        """Take ``o`` out of its level's queue (deleting the level if it empties) and return the level."""
        lvl = o.level
        p = o.prev
        n = o.next
        if p is None:
            lvl.head = n
        else:
            p.next = n
        if n is None:
            lvl.tail = p
        else:
            n.prev = p
        lvl.qty -= o.visible
        o.level = o.prev = o.next = None
        if lvl.head is None:
            del lvl.levels[lvl.key]
        return lvl

    def _crosses(self, is_buy: bool, price: int) -> bool:
        lvl = (self._asks if is_buy else self._bids).best()
        if lvl is None:
            return False
        return lvl.price <= price if is_buy else lvl.price >= price

    def _fok_fillable(self, is_buy: bool, price: int, qty: int, owner: Any, stp: str) -> bool:
        """Would a fill-or-kill order fill completely? A dry run of ``_take`` in the same order of events.

        Within a level the queue is walked once: a self order stops the fill unless STP cancels the
        resting order; icebergs' hidden reserve is reachable only after the first pass (it replenishes
        at the back), by which time no self order is left in the level.
        """
        opp = self._asks if is_buy else self._bids
        limit_key = price if is_buy else -price
        need = qty
        for key in sorted(k for k in opp.levels if k <= limit_key):
            lvl = opp.levels[key]
            hidden = 0
            m = lvl.head
            while m is not None:
                if m.owner == owner:
                    if stp != _CANCEL_RESTING:
                        return False
                else:
                    need -= m.visible
                    if need <= 0:
                        return True
                    hidden += m.qty - m.visible
                m = m.next
            need -= hidden
            if need <= 0:
                return True
        return False

    def _collect_triggered(self, pending: deque) -> None:
        last = self.last_price
        if last is None:
            return
        got = []
        heap = self._buy_stops
        while heap and heap[0][0] <= last:
            o = heappop(heap)[2]
            if o.live:
                got.append(o)
        heap = self._sell_stops
        while heap and -heap[0][0] >= last:
            o = heappop(heap)[2]
            if o.live:
                got.append(o)
        if got:
            got.sort(key=lambda o: o.sub_no)
            pending.extend(got)

    def _run_stops(self, out: list) -> None:
        """Enter every stop order the last trade price has gone through, in the order they triggered
        (ties: submission order); each may trade and trigger more."""
        pending: deque = deque()
        self._collect_triggered(pending)
        while pending:
            o = pending.popleft()
            o.order_type = _LIMIT if o.order_type == _STOP_LIMIT else _MARKET
            out.append(Triggered(o.order_id, o.order_type, o.stop_price))
            self._enter(o, out)
            self._collect_triggered(pending)

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        """Number of live orders (resting and waiting stops)."""
        return len(self._orders)

    def __contains__(self, order_id: Any) -> bool:
        return order_id in self._orders

    @property
    def counter(self) -> int:
        """The source of submission and arrival numbers (persisted with the book, as in ``snapshot``)."""
        return self._counter

    def get_order(self, order_id: Any) -> OrderView | None:
        o = self._orders.get(order_id)
        return None if o is None else _view(o)

    def open_orders(self, owner: Any = None) -> list[OrderView]:
        """Live orders (of ``owner`` if given), in submission order."""
        orders = sorted(self._orders.values(), key=lambda o: o.sub_no)
        return [_view(o) for o in orders if owner is None or o.owner == owner]

    def best_bid(self) -> tuple[int, int] | None:
        lvl = self._bids.best()
        return None if lvl is None else (lvl.price, lvl.qty)

    def best_ask(self) -> tuple[int, int] | None:
        lvl = self._asks.best()
        return None if lvl is None else (lvl.price, lvl.qty)

    def depth(self, limit: int | None = None) -> BookDepth:
        """Displayed quantity per level, best first, at most ``limit`` levels per side."""
        bids = [(lvl.price, lvl.qty) for lvl in self._bids.sorted_levels()[:limit]]
        asks = [(lvl.price, lvl.qty) for lvl in self._asks.sorted_levels()[:limit]]
        return BookDepth(self.seq, bids, asks)

    def queue(self, side: str, price: int) -> list[OrderView]:
        """The orders at one price level, front of the queue first."""
        book_side = self._bids if side == _BUY else self._asks
        lvl = book_side.levels.get(-price if side == _BUY else price)
        out = []
        m = lvl.head if lvl is not None else None
        while m is not None:
            out.append(_view(m))
            m = m.next
        return out

    def levels(self, side: str) -> list[list[OrderView]]:
        """Every level of ``side``, best first, each as its queue (front first)."""
        book_side = self._bids if side == _BUY else self._asks
        return [self.queue(side, lvl.price) for lvl in book_side.sorted_levels()]

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` if the internal structures disagree (for tests; O(n))."""

        def fail(msg: str) -> None:
            raise AssertionError(msg)

        seen = set()
        for book_side in (self._bids, self._asks):
            is_bid = book_side is self._bids
            for key, lvl in book_side.levels.items():
                if lvl.key != key or key != (-lvl.price if is_bid else lvl.price):
                    fail(f"level key {key} does not match price {lvl.price}")
                if key not in book_side.inheap:
                    fail(f"level {lvl.price} missing from the price heap")
                if lvl.head is None:
                    fail(f"empty level {lvl.price} kept")
                total = 0
                prev = None
                m = lvl.head
                while m is not None:
                    if m.prev is not prev or m.level is not lvl or not m.live:
                        fail(f"broken queue at {m.order_id!r}")
                    if self._orders.get(m.order_id) is not m:
                        fail(f"{m.order_id!r} on the book but not indexed")
                    if m.is_buy != is_bid or m.price != lvl.price:
                        fail(f"{m.order_id!r} on the wrong level")
                    if prev is not None and prev.arrival >= m.arrival:
                        fail(f"time priority broken at {m.order_id!r}")
                    if not (0 < m.visible <= m.qty) or (m.display is None and m.visible != m.qty):
                        fail(f"bad visible quantity on {m.order_id!r}")
                    if m.display is not None and m.visible > m.display:
                        fail(f"iceberg {m.order_id!r} shows more than its display size")
                    total += m.visible
                    seen.add(m.order_id)
                    prev = m
                    m = m.next
                if lvl.tail is not prev:
                    fail(f"tail of level {lvl.price} is wrong")
                if total != lvl.qty:
                    fail(f"level {lvl.price} total {lvl.qty} != {total}")
            if len(book_side.heap) != len(book_side.inheap):
                fail("price heap holds a key twice")
        for oid, o in self._orders.items():
            if oid not in seen and not (o.level is None and o.order_type in _STOPS):
                fail(f"{oid!r} indexed but neither on the book nor a waiting stop")
        bid, ask = self._bids.best(), self._asks.best()
        if bid is not None and ask is not None and bid.price >= ask.price:
            fail(f"book crossed: bid {bid.price} >= ask {ask.price}")

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> dict:
        """Everything needed to rebuild the book after a restart, as JSON-friendly plain values
        (provided order ids and owners are). Restore with :meth:`restore`."""
        orders = []
        for o in sorted(self._orders.values(), key=lambda o: (o.arrival, o.sub_no)):
            orders.append(
                {
                    "order_id": o.order_id,
                    "owner": o.owner,
                    "side": o.side,
                    "order_type": o.order_type,
                    "price": o.price,
                    "qty": o.qty,
                    "visible": o.visible,
                    "display_qty": o.display,
                    "stp": o.stp,
                    "expire_at": o.expire_at,
                    "stop_price": o.stop_price,
                    "sub_no": o.sub_no,
                    "arrival": o.arrival,
                    "resting": o.level is not None,
                }
            )
        return {
            "version": SNAPSHOT_VERSION,
            "symbol": self.symbol,
            "default_stp": self.default_stp,
            "seq": self.seq,
            "trade_no": self.trade_no,
            "last_price": self.last_price,
            "clock": self.clock,
            "counter": self._counter,
            "orders": orders,
        }

    @classmethod
    def restore(cls, snap: dict) -> OrderBook:
        """Rebuild a book from :meth:`snapshot`; ``seq``, ``trade_no`` and queue order carry on."""
        if snap.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {snap.get('version')!r}")
        book = cls(snap["symbol"], default_stp=snap["default_stp"])
        book.seq = snap["seq"]
        book.trade_no = snap["trade_no"]
        book.last_price = snap["last_price"]
        book.clock = snap["clock"]
        book._counter = snap["counter"]
        # Orders come in arrival order, so appending them rebuilds every queue in its order.
        for d in snap["orders"]:
            o = _Order(
                d["order_id"],
                d["owner"],
                d["side"],
                d["order_type"],
                d["price"],
                d["qty"],
                d["display_qty"],
                d["stp"],
                d["expire_at"],
                d["stop_price"],
                d["sub_no"],
            )
            o.visible = d["visible"]
            o.arrival = d["arrival"]
            o.live = True
            book._orders[o.order_id] = o
            if d["resting"]:
                book._link(o)
            elif o.is_buy:
                heappush(book._buy_stops, (o.stop_price, o.sub_no, o))
            else:
                heappush(book._sell_stops, (-o.stop_price, o.sub_no, o))
            if o.expire_at is not None:
                heappush(book._expiry, (o.expire_at, o.sub_no, o))
        return book
