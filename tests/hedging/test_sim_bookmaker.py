"""The simulated bookmaker behaves like a real one: idempotent on the key, declines, pending bets,
price tolerance, and a lost answer after the bet was taken."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hedging.connectors.base import BookmakerUnknownOutcome
from hedging.connectors.registry import get_bookmaker_connector
from hedging.connectors.simulated import SimulatedBookmaker
from hedging.models import SimBookmakerBet

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reset():
    SimulatedBookmaker.reset()
    yield
    SimulatedBookmaker.reset()


def bet(book, key="k1", price="2.00", stake="50"):
    return book.place_bet(
        idempotency_key=key,
        bookmaker="vertex",
        selection="fx:161:0",
        price=Decimal(price),
        stake=Decimal(stake),
        accept_price_drift=Decimal("0.01"),
    )


def test_the_registry_serves_the_simulated_bookmaker_by_default():
    assert isinstance(get_bookmaker_connector("vertex"), SimulatedBookmaker)
    assert get_bookmaker_connector("vertex") is get_bookmaker_connector("vertex", simulated=True)


def test_placing_the_same_key_twice_returns_the_first_bet():
    book = SimulatedBookmaker()
    first = bet(book)
    second = bet(book, price="3.00", stake="1")
    assert first == second and first.status == "placed"
    assert SimBookmakerBet.objects.count() == 1


def test_an_unknown_key_has_no_status():
    assert SimulatedBookmaker().bet_status(idempotency_key="nope", bookmaker="vertex") is None


def test_a_scripted_decline_then_the_default_mode():
    SimulatedBookmaker.configure(script=["decline"])
    book = SimulatedBookmaker()
    assert bet(book, key="a").status == "declined"
    assert bet(book, key="b").status == "placed"


def test_a_price_past_the_tolerance_is_declined_and_one_within_is_placed_at_the_book_price():
    SimulatedBookmaker.configure(prices={"fx:161:0": Decimal("1.97")})
    book = SimulatedBookmaker()
    declined = bet(book, key="a", price="2.00")  # 1.97 < 2.00 × 0.99
    placed = bet(book, key="b", price="1.985")  # within 1 %
    assert (declined.status, declined.reason) == ("declined", "price_moved")
    assert (placed.status, placed.price) == ("placed", Decimal("1.97"))
    assert book.current_price(bookmaker="vertex", selection="fx:161:0") == Decimal("1.97")


def test_a_pending_bet_is_placed_after_the_configured_status_polls():
    SimulatedBookmaker.configure(mode="pending", pending_polls=2)
    book = SimulatedBookmaker()
    assert bet(book).status == "pending"
    assert book.bet_status(idempotency_key="k1", bookmaker="vertex").status == "pending"
    assert book.bet_status(idempotency_key="k1", bookmaker="vertex").status == "placed"


def test_a_timeout_records_the_bet_and_loses_the_answer():
    SimulatedBookmaker.configure(mode="timeout")
    book = SimulatedBookmaker()
    with pytest.raises(BookmakerUnknownOutcome):
        bet(book)
    assert book.bet_status(idempotency_key="k1", bookmaker="vertex").status == "placed"


def test_the_hook_runs_after_the_bet_is_recorded():
    seen = []
    SimulatedBookmaker.configure(before_answer=lambda b: seen.append(SimBookmakerBet.objects.filter(pk=b.pk).exists()))
    bet(SimulatedBookmaker())
    assert seen == [True]


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        SimulatedBookmaker.configure(mode="maybe")
