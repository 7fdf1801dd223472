"""Concurrency of the matching service on PostgreSQL: real parallel connections, one book.

Eight threads, each with its own database connection (Django gives every thread one), place crossing
orders and cancel some on one symbol at once; two of them drop the process's in-memory books before
each command (as a restart or another process would), so many commands rebuild the book from the
database under the lock. Afterwards: every ledger transaction sums to zero, no
available balance is negative (``ledger_check``), the book is not crossed, every order's filled
quantity equals its trades, open quantities match the book, trade numbers have no gaps and the
sequence numbers match.
"""

from __future__ import annotations

import random
import threading
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Q, Sum

from exchanges.errors import ExchangeError
from exchanges.models import LIVE_STATUSES, BookState, ExchangeOrder, ExchangeTrade
from exchanges.selectors.market_data import book_snapshot
from exchanges.services import matching
from exchanges.services.orders import order_cancel, order_place

from .conftest import make_market, make_trader

THREADS = 8
ORDERS_PER_THREAD = 25


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_eight_writers_on_one_book_keep_every_invariant():
    market = make_market("vaix", tick_size="0.0001", lot_size="1", min_order_size="1")
    traders = [make_trader(f"t{i}", funds={"USDC": 500, "VAIX": 50000}) for i in range(THREADS)]
    errors: list[BaseException] = []
    refusals: list[str] = []
    start = threading.Barrier(THREADS)

    def worker(i: int) -> None:
        rng = random.Random(i)
        mine: list[str] = []
        try:
            start.wait()
            for _ in range(ORDERS_PER_THREAD):
                if i % 4 == 0:
                    matching.local_books_clear()  # as if another process had written last
                if mine and rng.random() < 0.25:
                    try:
                        order_cancel(trader=traders[i], order_id=mine.pop(rng.randrange(len(mine))))
                    except ExchangeError as exc:
                        refusals.append(exc.code)
                    continue
                side = rng.choice(["buy", "sell"])
                price = D("0.0030") + D("0.0001") * rng.randint(-5, 5)
                try:
                    o = order_place(
                        trader=traders[i],
                        symbol="vaix",
                        side=side,
                        type=rng.choice(["limit", "limit", "limit", "ioc"]),
                        quantity=D(rng.randint(1, 400)),
                        price=price,
                    )
                    mine.append(o.order_id)
                except ExchangeError as exc:
                    refusals.append(exc.code)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == [], errors
    assert set(refusals) <= {"order_not_open", "insufficient_balance"}, refusals

    # Money: balanced transactions, caches right, nothing overdrawn.
    call_command("ledger_check", stdout=open("/dev/null", "w"))

    # Trades: consecutive numbers, each order's fills add up, open quantities are what is left.
    trades = ExchangeTrade.objects.filter(market=market, mode="live")
    nos = sorted(trades.values_list("trade_no", flat=True))
    assert nos == list(range(1, len(nos) + 1)) and nos, "no gaps, no duplicates, and something traded"
    for o in ExchangeOrder.objects.filter(market=market):
        traded = trades.filter(Q(taker_order=o) | Q(maker_order=o)).aggregate(q=Sum("quantity"))["q"] or D("0")
        assert traded == o.filled_quantity, o
        if o.status in LIVE_STATUSES:
            assert o.open_quantity == o.quantity - o.filled_quantity, o
        else:
            assert o.open_quantity == 0

    # The book: not crossed, and the same as a book rebuilt from the rows (a restart).
    snap = book_snapshot(symbol="vaix", depth=None)
    if snap["bids"] and snap["asks"]:
        assert snap["bids"][0][0] < snap["asks"][0][0]
    matching.local_books_clear()
    state = BookState.objects.get(market=market, mode="live")
    local = matching._rebuild(market, "live", state)
    local.book.check_invariants()
    depth = local.book.depth()
    inst = local.instrument
    assert [(inst.price(p), inst.qty(q)) for p, q in depth.bids] == snap["bids"]
    assert [(inst.price(p), inst.qty(q)) for p, q in depth.asks] == snap["asks"]
    assert depth.seq == state.sequence == snap["sequence"]
    assert state.trade_no == len(nos)
