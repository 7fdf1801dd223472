"""A deliberately naive order book, the oracle for the stateful test of exchanges/book.

Written for obviousness, not speed: every resting order sits in one list, every decision sorts that
list again, and fill-or-kill is decided by trying the order as IOC on a deep copy of the whole book.
It follows the rules of docs/exchange-book.md and reports the same events as the real book, as plain
tuples, leaving out book deltas (the test checks those against the depth separately):

    ("accepted", order_id)                 ("rejected", op, order_id, reason)
    ("trade", price, qty, taker, maker, taker_remaining, maker_remaining)
    ("cancelled", order_id, qty, reason)   ("reduced", order_id, qty, remaining)
    ("expired", order_id, qty)             ("amended", order_id, price, qty, priority_lost)
    ("triggered", order_id, order_type)

It knows only the refusals that depend on the state of the book; the test never sends malformed input.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass


@dataclass(eq=False)  # orders are compared by identity
class RefOrder:
    order_id: object
    owner: object
    side: str
    order_type: str
    price: int | None
    qty: int
    display: int | None
    stp: str
    expire_at: int | None
    stop_price: int | None
    sub_no: int
    arrival: int = 0
    visible: int = 0


def _shown(order: RefOrder) -> int:
    """How much of an order is displayed when it joins the back of a queue."""
    if order.display is None:
        return order.qty
    return min(order.display, order.qty)


def _crosses(side: str, limit: int | None, price: int) -> bool:
    """Would a ``side`` order with ``limit`` (None: market) trade with a resting order at ``price``?"""
    if limit is None:
        return True
    return price <= limit if side == "buy" else price >= limit


class ReferenceBook:
    def __init__(self, default_stp: str = "cancel_resting"):
        self.default_stp = default_stp
        self.resting: list[RefOrder] = []
        self.stops: list[RefOrder] = []
        self.counter = 0
        self.last_price: int | None = None
        self.clock: int | None = None

    # ---------------------------------------------------------------- views

    def queue(self, side: str) -> list[RefOrder]:
        """Orders of ``side`` in priority order: best price first, then earliest arrival."""
        orders = [o for o in self.resting if o.side == side]
        if side == "buy":
            return sorted(orders, key=lambda o: (-o.price, o.arrival))
        return sorted(orders, key=lambda o: (o.price, o.arrival))

    def levels(self, side: str) -> list[list[tuple]]:
        """Each price level of ``side``, best first, as [(order_id, price, qty, visible), ...] front first."""
        out: list[list[tuple]] = []
        for o in self.queue(side):
            if not out or out[-1][0][1] != o.price:
                out.append([])
            out[-1].append((o.order_id, o.price, o.qty, o.visible))
        return out

    def depth(self, side: str) -> list[tuple[int, int]]:
        """(price, displayed quantity) per level, best first."""
        return [(level[0][1], sum(o[3] for o in level)) for level in self.levels(side)]

    def waiting_stops(self) -> list[tuple]:
        return sorted((o.order_id, o.qty) for o in self.stops)

    def find(self, order_id) -> RefOrder | None:
        for o in self.resting + self.stops:
            if o.order_id == order_id:
                return o
        return None

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    # ---------------------------------------------------------------- commands

    def submit(
        self,
        order_id,
        owner,
        side,
        order_type,
        qty,
        price=None,
        *,
        stop_price=None,
        display_qty=None,
        expire_at=None,
        stp=None,
    ) -> list[tuple]:
        if self.find(order_id) is not None:
            return [("rejected", "submit", order_id, "duplicate_order_id")]
        if expire_at is not None and self.clock is not None and expire_at <= self.clock:
            return [("rejected", "submit", order_id, "already_expired")]
        if order_type in ("market", "stop_market"):
            price = None
        opposite = "sell" if side == "buy" else "buy"
        order = RefOrder(
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
            self._next(),
        )
        if order_type in ("stop_limit", "stop_market"):
            if self.last_price is not None and self._stop_triggers(order):
                return [("rejected", "submit", order_id, "stop_would_trigger")]
            self.stops.append(order)
            return [("accepted", order_id)]
        best = self.queue(opposite)[:1]
        if order_type == "post_only" and best and _crosses(side, price, best[0].price):
            return [("rejected", "submit", order_id, "post_only_would_cross")]
        if order_type == "market" and not best:
            return [("rejected", "submit", order_id, "no_liquidity")]
        if order_type == "fok" and not self._fok_would_fill(order):
            return [("rejected", "submit", order_id, "fok_unfillable")]
        events: list[tuple] = [("accepted", order_id)]
        self._enter(order, events)
        self._run_stops(events)
        return events

    def cancel(self, order_id) -> list[tuple]:
        order = self.find(order_id)
        if order is None:
            return [("rejected", "cancel", order_id, "unknown_order")]
        self._remove(order)
        return [("cancelled", order_id, order.qty, "requested")]

    def amend(self, order_id, *, price=None, qty=None) -> list[tuple]:
        order = self.find(order_id)
        if order is None:
            return [("rejected", "amend", order_id, "unknown_order")]
        if order in self.stops:
            return [("rejected", "amend", order_id, "not_amendable")]
        new_price = order.price if price is None else price
        new_qty = order.qty if qty is None else qty
        if new_price != order.price:
            opposite = "sell" if order.side == "buy" else "buy"
            best = self.queue(opposite)[:1]
            if order.order_type == "post_only" and best and _crosses(order.side, new_price, best[0].price):
                return [("rejected", "amend", order_id, "post_only_would_cross")]
            events: list[tuple] = [("amended", order_id, new_price, new_qty, True)]
            self.resting.remove(order)
            order.price = new_price
            order.qty = new_qty
            self._enter(order, events)
            self._run_stops(events)
            return events
        if new_qty == order.qty:
            return [("amended", order_id, new_price, new_qty, False)]
        if new_qty < order.qty:
            order.qty = new_qty
            order.visible = min(order.visible, new_qty)
            return [("amended", order_id, new_price, new_qty, False)]
        order.qty = new_qty
        order.visible = _shown(order)
        order.arrival = self._next()
        return [("amended", order_id, new_price, new_qty, True)]

    def expire(self, now: int) -> list[tuple]:
        if self.clock is None or now > self.clock:
            self.clock = now
        due = [o for o in self.resting + self.stops if o.expire_at is not None and o.expire_at <= now]
        events = []
        for order in sorted(due, key=lambda o: (o.expire_at, o.sub_no)):
            self._remove(order)
            events.append(("expired", order.order_id, order.qty))
        return events

    # ---------------------------------------------------------------- matching

    def _remove(self, order: RefOrder) -> None:
        if order in self.resting:
            self.resting.remove(order)
        else:
            self.stops.remove(order)

    def _enter(self, order: RefOrder, events: list) -> None:
        """Match, then rest (limit, post_only) or cancel the remainder (ioc, fok, market)."""
        stopped = self._match(order, events)
        if stopped or order.qty == 0:
            return
        if order.order_type in ("limit", "post_only"):
            order.visible = _shown(order)
            order.arrival = self._next()
            self.resting.append(order)
        else:
            events.append(("cancelled", order.order_id, order.qty, "unfilled"))

    def _match(self, taker: RefOrder, events: list) -> bool:
        """Trade ``taker`` against the best resting order, one at a time. True if STP cancelled the taker."""
        opposite = "sell" if taker.side == "buy" else "buy"
        while taker.qty > 0:
            queue = self.queue(opposite)
            if not queue or not _crosses(taker.side, taker.price, queue[0].price):
                return False
            maker = queue[0]
            if maker.owner == taker.owner:
                if self._prevent_self_trade(taker, maker, events):
                    return True
                continue
            fill = min(taker.qty, maker.visible)
            taker.qty -= fill
            maker.qty -= fill
            maker.visible -= fill
            self.last_price = maker.price
            events.append(("trade", maker.price, fill, taker.order_id, maker.order_id, taker.qty, maker.qty))
            if maker.visible == 0:
                if maker.qty > 0:  # iceberg: show the next slice, at the back of the queue
                    maker.visible = _shown(maker)
                    maker.arrival = self._next()
                else:
                    self.resting.remove(maker)
        return False

    def _prevent_self_trade(self, taker: RefOrder, maker: RefOrder, events: list) -> bool:
        """Apply the taker's STP mode. True if the taker is finished."""
        mode = taker.stp
        if mode == "cancel_resting":
            self.resting.remove(maker)
            events.append(("cancelled", maker.order_id, maker.qty, "self_trade"))
            return False
        if mode == "cancel_incoming":
            events.append(("cancelled", taker.order_id, taker.qty, "self_trade"))
            return True
        if mode == "cancel_both":
            self.resting.remove(maker)
            events.append(("cancelled", maker.order_id, maker.qty, "self_trade"))
            events.append(("cancelled", taker.order_id, taker.qty, "self_trade"))
            return True
        # decrement_and_cancel
        q = min(taker.qty, maker.qty)
        maker.qty -= q
        taker.qty -= q
        if maker.qty == 0:
            self.resting.remove(maker)
            events.append(("cancelled", maker.order_id, q, "self_trade"))
        else:
            maker.visible = min(maker.visible, maker.qty)
            events.append(("reduced", maker.order_id, q, maker.qty))
        if taker.qty == 0:
            events.append(("cancelled", taker.order_id, q, "self_trade"))
            return True
        events.append(("reduced", taker.order_id, q, taker.qty))
        return False

    def _fok_would_fill(self, order: RefOrder) -> bool:
        """Fill-or-kill by definition: would it trade its whole quantity if tried as IOC right now?
        (Quantity taken away by self-trade prevention is not filled.)"""
        trial_book = copy.deepcopy(self)
        trial_events: list[tuple] = []
        trial_book._match(copy.deepcopy(order), trial_events)
        return sum(e[2] for e in trial_events if e[0] == "trade") == order.qty

    def _stop_triggers(self, stop: RefOrder) -> bool:
        if stop.side == "buy":
            return self.last_price >= stop.stop_price
        return self.last_price <= stop.stop_price

    def _run_stops(self, events: list) -> None:
        """Stops the last price went through enter one by one in trigger order, ties by submission."""
        pending: list[RefOrder] = []
        while True:
            if self.last_price is not None:
                hit = sorted((s for s in self.stops if self._stop_triggers(s)), key=lambda s: s.sub_no)
                for s in hit:
                    self.stops.remove(s)
                pending.extend(hit)
            if not pending:
                return
            stop = pending.pop(0)
            stop.order_type = "limit" if stop.order_type == "stop_limit" else "market"
            events.append(("triggered", stop.order_id, stop.order_type))
            self._enter(stop, events)
