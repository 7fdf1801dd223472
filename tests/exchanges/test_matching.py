"""The matching service: orders, trades, holds, fees, cancels, paper mode, restart, expiry, stops."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.core.management import call_command

from exchanges.errors import ExchangeError
from exchanges.ledger.selectors import owner_balances
from exchanges.models import BookState, ExchangeOrder, ExchangeTrade, Hold
from exchanges.selectors.market_data import bbo, book_snapshot
from exchanges.services import matching
from exchanges.services.orders import order_amend, order_cancel, order_place, orders_cancel_all


def bal(trader, mode="live"):
    return {
        r["asset"]: (r["balance"], r["held"])
        for r in owner_balances(owner_type="trader", owner_id=str(trader.pk), mode=mode)
    }


def test_resting_buy_holds_quote_and_shows_in_the_book(market, alice):
    order = order_place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("1000"), price=D("0.003"))
    assert order.status == "open" and order.open_quantity == D("1000")
    assert bal(alice)["USDC"] == (D("1000"), D("3"))
    snap = book_snapshot(symbol="vaix")
    assert snap["bids"] == [(D("0.003"), D("1000"))] and snap["asks"] == []
    assert snap["sequence"] == 1
    assert bbo(symbol="vaix")["best_bid"] == D("0.003")


def test_crossing_orders_trade_at_the_makers_price_with_fees(market, alice, bob):
    maker = order_place(trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("1000"), price=D("0.0030"))
    taker = order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("400"), price=D("0.0040"))
    assert taker.status == "filled" and taker.filled_quantity == D("400")
    trade = ExchangeTrade.objects.get()
    assert trade.price == D("0.003") and trade.quantity == D("400") and trade.taker_side == "buy"
    # bob (taker, standard tier: 20 bps) receives 400 VAIX less 0.8; alice (maker: 10 bps) receives 1.2 USDC less 0.0012
    assert bal(bob)["VAIX"] == (D("100399.2"), D("0"))
    assert bal(bob)["USDC"] == (D("998.8"), D("0"))  # the hold at 0.004 was released down to the trade price
    assert bal(alice)["USDC"] == (D("1001.1988"), D("0"))
    assert bal(alice)["VAIX"] == (D("99600"), D("600"))
    maker = ExchangeOrder.objects.get(pk=maker.pk)
    assert maker.status == "partially_filled" and maker.open_quantity == D("600")
    call_command("ledger_check", stdout=open("/dev/null", "w"))


def test_refusals_write_nothing(market, alice):
    before = bal(alice)
    cases = [
        ({"side": "hold"}, "invalid_side"),
        ({"type": "twap"}, "invalid_order_type"),
        ({"quantity": D("0")}, "invalid_quantity"),
        ({"quantity": D("-5")}, "invalid_quantity"),
        ({"quantity": D("1.5")}, "quantity_off_lot"),
        ({"price": D("0.00305")}, "price_off_tick"),
        ({"quantity": D("10000000")}, "insufficient_balance"),
    ]
    for override, code in cases:
        kw = {
            "trader": alice,
            "symbol": "vaix",
            "side": "buy",
            "type": "limit",
            "quantity": D("10"),
            "price": D("0.003"),
        }
        kw.update(override)
        with pytest.raises(ExchangeError) as exc:
            order_place(**kw)
        assert exc.value.code == code, (override, exc.value)
    with pytest.raises(ExchangeError) as exc:
        order_place(trader=alice, symbol="nope", side="buy", type="limit", quantity=D("10"), price=D("0.003"))
    assert exc.value.code == "invalid_symbol" and exc.value.status == 404
    assert bal(alice) == before
    assert not ExchangeOrder.objects.exists() and not Hold.objects.exists()


def test_cancel_releases_the_hold_and_another_trader_gets_404(market, alice, bob):
    order = order_place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("1000"), price=D("0.003"))
    with pytest.raises(ExchangeError) as exc:
        order_cancel(trader=bob, order_id=order.order_id)
    assert exc.value.status == 404
    done = order_cancel(trader=alice, order_id=order.order_id)
    assert done.status == "cancelled"
    assert bal(alice)["USDC"] == (D("1000"), D("0"))
    assert book_snapshot(symbol="vaix")["bids"] == []
    with pytest.raises(ExchangeError) as exc:
        order_cancel(trader=alice, order_id=order.order_id)
    assert exc.value.code == "order_not_open"


def test_paper_orders_use_paper_balances_and_a_separate_book(market, alice, bob):
    live_before_a, live_before_b = bal(alice), bal(bob)
    order_place(
        trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("100"), price=D("0.003"), mode="paper"
    )
    order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("100"), price=D("0.003"), mode="paper")
    assert ExchangeTrade.objects.get().mode == "paper"
    assert bal(alice) == live_before_a and bal(bob) == live_before_b
    assert bal(bob, "paper")["VAIX"][0] > D("50000")
    assert book_snapshot(symbol="vaix")["bids"] == [] and book_snapshot(symbol="vaix", mode="paper")["bids"] == []
    order_place(trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("5"), price=D("0.004"), mode="paper")
    assert book_snapshot(symbol="vaix")["asks"] == []


def test_market_buy_holds_against_the_highest_ask_and_releases_the_rest(market, alice, bob):
    order_place(trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("100"), price=D("0.003"))
    order_place(trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("100"), price=D("0.005"))
    o = order_place(trader=bob, symbol="vaix", side="buy", type="market", quantity=D("150"))
    assert o.status == "filled" and o.filled_notional == D("0.3") + D("0.25")
    assert bal(bob)["USDC"] == (D("1000") - D("0.55"), D("0"))
    with pytest.raises(ExchangeError) as exc:
        order_place(trader=bob, symbol="vaix", side="sell", type="market", quantity=D("10"))
    assert exc.value.code == "no_liquidity"


def test_amend_price_loses_priority_size_down_keeps_it(market, alice, bob):
    a = order_place(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("100"), price=D("0.003"))
    b = order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("100"), price=D("0.003"))
    order_amend(trader=alice, order_id=a.order_id, quantity=D("50"))  # keeps priority
    assert bal(alice)["USDC"] == (D("1000"), D("0.15"))
    carol_sell = order_place(trader=bob, symbol="vaix", side="sell", type="limit", quantity=D("10"), price=D("0.003"))
    # bob's own bid is cancelled by STP (cancel_resting), so the sell hits alice first
    assert ExchangeTrade.objects.get().maker_order.order_id == a.order_id
    del b, carol_sell
    a2 = order_amend(trader=alice, order_id=a.order_id, price=D("0.0029"))
    assert a2.price == D("0.0029") and a2.open_quantity == D("40")
    assert bal(alice)["USDC"][1] == D("40") * D("0.0029")
    call_command("ledger_check", stdout=open("/dev/null", "w"))


def test_restart_rebuilds_the_book_with_nothing_lost_and_sequence_continuing(market, alice, bob):
    for i in range(5):
        order_place(
            trader=alice,
            symbol="vaix",
            side="sell",
            type="limit",
            quantity=D("10"),
            price=D("0.0030") + D("0.0001") * i,
        )
    order_place(
        trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("50"), price=D("0.004"), display_qty=D("10")
    )
    order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("15"), price=D("0.0031"))
    before = book_snapshot(symbol="vaix")
    state = BookState.objects.get(market=market, mode="live")
    matching.local_books_clear()  # the process restarts: no book in memory
    matching.accounts_cache_clear()
    order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("1"), price=D("0.001"))
    after = book_snapshot(symbol="vaix")
    assert after["sequence"] == before["sequence"] + 1
    assert after["asks"] == before["asks"]
    # the iceberg still shows one slice; a sweep takes it slice by slice, trade numbers continue
    t = order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("80"), price=D("0.004"))
    assert t.filled_quantity == D("80")
    nos = list(ExchangeTrade.objects.order_by("trade_no").values_list("trade_no", flat=True))
    assert nos == list(range(1, len(nos) + 1)) and nos[0] == 1 and state.trade_no == 2
    call_command("ledger_check", stdout=open("/dev/null", "w"))


def test_gtt_expiry_survives_a_restart_and_releases_the_hold(market, alice):
    o = order_place(
        trader=alice,
        symbol="vaix",
        side="buy",
        type="limit",
        quantity=D("100"),
        price=D("0.003"),
        expire_at=matching.now_us() + 200_000,
    )
    matching.local_books_clear()
    import time

    time.sleep(0.25)
    from exchanges.services.orders import books_expire_due

    assert books_expire_due() == 1
    assert ExchangeOrder.objects.get(pk=o.pk).status == "expired"
    assert bal(alice)["USDC"] == (D("1000"), D("0"))


def test_stop_triggers_after_a_restart(market, alice, bob):
    order_place(trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("10"), price=D("0.003"))
    order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("10"), price=D("0.003"))  # last 0.003
    stop = order_place(
        trader=bob,
        symbol="vaix",
        side="buy",
        type="stop_limit",
        quantity=D("5"),
        price=D("0.0035"),
        stop_price=D("0.0035"),
    )
    assert stop.status == "waiting_trigger"
    matching.local_books_clear()
    order_place(trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("100"), price=D("0.0035"))
    order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("1"), price=D("0.0035"))  # last 0.0035
    stop = ExchangeOrder.objects.get(pk=stop.pk)
    assert stop.status == "filled" and stop.book_type == "limit"
    call_command("ledger_check", stdout=open("/dev/null", "w"))


def test_cancel_all_for_a_symbol(market, alice):
    for i in range(3):
        order_place(
            trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("10"), price=D("0.001") + D("0.0001") * i
        )
    cancelled = orders_cancel_all(trader=alice, symbol="vaix")
    assert len(cancelled) == 3
    assert bal(alice)["USDC"] == (D("1000"), D("0"))


def test_a_buy_filled_below_its_limit_settles_on_sqlite_too(market, alice, bob):
    """0.0175 captured + 0.0005 left of a 0.018 hold: the ledger's parts-sum check must hold on SQLite,
    which compares in floating point (0.0005 + 0.0175 != 0.018 as floats)."""
    order_place(trader=alice, symbol="vaix", side="sell", type="limit", quantity=D("5"), price=D("0.0035"))
    buy = order_place(trader=bob, symbol="vaix", side="buy", type="limit", quantity=D("5"), price=D("0.0036"))
    assert buy.status == "filled"
    assert bal(bob)["USDC"] == (D("1000") - D("0.0175"), D("0"))
    call_command("ledger_check", stdout=open("/dev/null", "w"))


@pytest.mark.django_db(transaction=True)
def test_a_flush_between_tests_clears_what_the_process_remembers():
    """post_migrate (which follows every flush of a transactional test) empties the process's caches,
    so a market, account or book id remembered from the flushed database is never used again."""
    from django.apps import apps
    from django.db.models.signals import post_migrate

    from exchanges.services import orders as order_services

    from .conftest import make_market, make_trader

    make_market()
    t = make_trader("flushy", funds={"USDC": 10})
    order_place(trader=t, symbol="vaix", side="buy", type="limit", quantity=D("1"), price=D("0.003"))
    order_services.market_get(symbol="vaix")
    assert matching._BOOKS and matching._ACCOUNTS and matching._STATES_KNOWN and order_services._MARKETS
    post_migrate.send(sender=apps.get_app_config("exchanges"), app_config=apps.get_app_config("exchanges"))
    assert not (matching._BOOKS or matching._ACCOUNTS or matching._STATES_KNOWN or order_services._MARKETS)
