from decimal import Decimal

import pytest

from exchanges.connectors.base import PlaceRequest, VenueError
from exchanges.connectors.registry import get_connector

pytestmark = pytest.mark.django_db


def _req(coid="c1", size="10"):
    return PlaceRequest(
        client_order_id=coid, account="acct", market="m1", side="buy", price=Decimal("0.45"), size=Decimal(size)
    )


def test_placing_the_same_client_order_id_twice_returns_the_first_order():
    venue = get_connector("polymarket")
    first = venue.place(_req())
    again = venue.place(_req())
    assert again.venue_order_id == first.venue_order_id
    assert len(venue.open_orders(account="acct")) == 1


def test_partial_then_full_match_reports_each_trade_once_through_the_cursor():
    venue = get_connector("simulated")
    order = venue.place(_req(size="10"))
    venue.match(venue_order_id=order.venue_order_id, size=Decimal("4"), trade_id="t1")
    page = venue.fills_since(account="acct")
    assert [f.trade_id for f in page.fills] == ["t1"]
    venue.match(venue_order_id=order.venue_order_id, size=Decimal("100"), trade_id="t2")
    page2 = venue.fills_since(account="acct", cursor=page.cursor)
    assert [(f.trade_id, f.size) for f in page2.fills] == [("t2", Decimal("6"))]
    assert venue.order_status(account="acct", client_order_id="c1").state == "filled"
    with pytest.raises(VenueError):
        venue.match(venue_order_id=order.venue_order_id, size=Decimal("1"))


def test_cancel_closes_an_open_order_and_is_harmless_on_a_filled_one():
    venue = get_connector("kalshi")
    order = venue.place(_req())
    assert venue.cancel(account="acct", venue_order_id=order.venue_order_id).state == "cancelled"
    assert venue.open_orders(account="acct") == []
    assert venue.cancel(account="acct", venue_order_id=order.venue_order_id).state == "cancelled"


def test_price_outside_the_prediction_market_range_is_refused():
    venue = get_connector("simulated")
    with pytest.raises(VenueError):
        venue.place(PlaceRequest("c9", "acct", "m", "buy", Decimal("1.2"), Decimal("1")))
