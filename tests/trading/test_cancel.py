"""Order cancellation: one order and cancel-all, against the simulated venue.

The row must say what the venue says: cancelled, filled, or still open when the venue did not
confirm. Another client's order is a 404 and stays untouched at the venue."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from exchanges.choices import Exchange
from exchanges.connectors.base import VenueError, VenueUnknownOutcome
from exchanges.connectors.registry import get_connector
from exchanges.connectors.simulated import SimulatedVenueConnector
from tests.factories import AccountFactory, FixtureFactory, OrderFactory, place_resting_order
from trading.choices import OrderStatus
from trading.models import Order
from trading.services.orders import OrderNotOpen, order_cancel, orders_cancel_all

pytestmark = pytest.mark.django_db


class TimingOutVenue(SimulatedVenueConnector):
    """A venue whose cancel times out: the outcome is unknown."""

    def cancel(self, *, account, venue_order_id):
        raise VenueUnknownOutcome("read timeout after 10s")


class RefusingVenue(SimulatedVenueConnector):
    """A venue that refuses cancels (e.g. the market is suspended)."""

    def cancel(self, *, account, venue_order_id):
        raise VenueError("market suspended")


def venue_state(order: Order) -> str:
    return (
        get_connector(order.exchange)
        .order_status(account=order.account.username, client_order_id=order.client_order_id)
        .state
    )


@pytest.fixture
def account(mm_client):
    return AccountFactory(client=mm_client[0], exchange=Exchange.POLYMARKET)


# --- one order ------------------------------------------------------------------------------------------------


def test_cancel_cancels_at_the_venue_and_returns_the_order(api, account, mm_client):
    order = place_resting_order(account=account)
    before = order.updated_at

    resp = api.post(f"/api/v1/orders/{order.id}/cancel")

    assert resp.status_code == 200
    body = resp.json()
    assert body["orderId"] == order.id and body["orderStatus"] == "CANCELLED"
    assert body["exchangeOrderId"] == order.exchange_order_id
    assert venue_state(order) == "cancelled"
    order.refresh_from_db()
    assert order.order_status == OrderStatus.CANCELLED and order.updated_at > before
    assert order.status_reason == f"cancelled by api:{mm_client[1][3:13]}"


def test_cancelling_a_filled_order_is_409_and_changes_nothing(api, account):
    order = place_resting_order(account=account)
    get_connector(order.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal("100"))
    Order.objects.filter(pk=order.pk).update(order_status=OrderStatus.FILLED, matched_stake=Decimal("100"))
    order.refresh_from_db()

    resp = api.post(f"/api/v1/orders/{order.id}/cancel")

    assert resp.status_code == 409
    assert resp.json()["error"] == "order_not_open"
    after = Order.objects.get(pk=order.pk)
    assert (after.order_status, after.updated_at, after.status_reason) == (
        order.order_status,
        order.updated_at,
        order.status_reason,
    )
    assert venue_state(order) == "filled"


@pytest.mark.parametrize("status", [OrderStatus.CANCELLED, OrderStatus.FAILED, OrderStatus.EXPIRED])
def test_every_closed_status_is_not_open(api, account, status):
    order = OrderFactory(account=account, order_status=status)

    resp = api.post(f"/api/v1/orders/{order.id}/cancel")

    assert resp.status_code == 409 and resp.json()["error"] == "order_not_open"
    assert status in resp.json()["message"]


def test_another_clients_order_is_404_and_stays_resting_at_the_venue(api, other_client):
    theirs = place_resting_order(account=AccountFactory(client=other_client[0]))

    resp = api.post(f"/api/v1/orders/{theirs.id}/cancel")

    assert resp.status_code == 404 and resp.json()["error"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.order_status == OrderStatus.PLACED
    assert venue_state(theirs) == "open"


def test_service_refuses_another_clients_order_as_missing(mm_client, other_client):
    theirs = place_resting_order(account=AccountFactory(client=other_client[0]))

    with pytest.raises(Order.DoesNotExist):
        order_cancel(client=mm_client[0], order_id=theirs.id, actor="api:x")
    assert venue_state(theirs) == "open"


@pytest.mark.parametrize("raw,status", [("abc", 400), ("0", 400), ("-3", 400), ("1.5", 400), ("99999999", 404)])
def test_malformed_id_is_400_naming_it_and_unknown_id_is_404(api, raw, status):
    resp = api.post(f"/api/v1/orders/{raw}/cancel")

    assert resp.status_code == status
    if status == 400:
        assert resp.json()["parameter"] == "id"


def test_an_order_the_venue_already_filled_is_recorded_filled_not_cancelled(api, account):
    order = place_resting_order(account=account)
    get_connector(order.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal("100"))

    resp = api.post(f"/api/v1/orders/{order.id}/cancel")

    assert resp.status_code == 200
    assert resp.json()["orderStatus"] == "FILLED"
    order.refresh_from_db()
    assert order.order_status == OrderStatus.FILLED
    assert order.matched_stake == 0, "fills are applied by the fill service from the venue's trades, once"


def test_a_partly_filled_order_is_cancelled_for_the_rest(account):
    order = place_resting_order(account=account)
    get_connector(order.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal("40"))

    cancelled = order_cancel(client=account.client, order_id=order.id, actor="admin:ops")

    assert cancelled.order_status == OrderStatus.CANCELLED
    assert venue_state(order) == "cancelled"
    assert get_connector(order.exchange).open_orders(account=account.username) == []


def test_a_pending_order_the_venue_never_saw_is_cancelled(api, account):
    order = OrderFactory(account=account, order_status=OrderStatus.PENDING_PLACEMENT, exchange_order_id=None)

    resp = api.post(f"/api/v1/orders/{order.id}/cancel")

    assert resp.status_code == 200 and resp.json()["orderStatus"] == "CANCELLED"
    assert (
        get_connector(order.exchange).order_status(account=account.username, client_order_id=order.client_order_id)
        is None
    )
    order.refresh_from_db()
    assert order.exchange_order_id is None and "before reaching the venue" in order.status_reason


def test_a_pending_order_that_reached_the_venue_is_found_by_client_order_id_and_cancelled(api, account):
    placed = place_resting_order(account=account)
    venue_id = placed.exchange_order_id
    Order.objects.filter(pk=placed.pk).update(order_status=OrderStatus.PENDING_PLACEMENT, exchange_order_id=None)

    resp = api.post(f"/api/v1/orders/{placed.id}/cancel")

    assert resp.status_code == 200
    assert resp.json()["orderStatus"] == "CANCELLED" and resp.json()["exchangeOrderId"] == venue_id
    assert venue_state(placed) == "cancelled"


@override_settings(VENUE_CONNECTORS={"polymarket": "tests.trading.test_cancel.TimingOutVenue"})
def test_a_venue_timeout_leaves_the_order_open_and_is_503(api, account):
    order = place_resting_order(account=account)

    resp = api.post(f"/api/v1/orders/{order.id}/cancel")

    assert resp.status_code == 503
    assert resp.json()["error"] == "venue_unavailable"
    order.refresh_from_db()
    assert order.order_status == OrderStatus.PLACED
    assert venue_state(order) == "open"


@override_settings(VENUE_CONNECTORS={"polymarket": "tests.trading.test_cancel.RefusingVenue"})
def test_a_venue_refusal_leaves_the_order_open_and_is_502(api, account):
    order = place_resting_order(account=account)

    resp = api.post(f"/api/v1/orders/{order.id}/cancel")

    assert resp.status_code == 502 and resp.json()["error"] == "venue_error"
    assert Order.objects.get(pk=order.pk).order_status == OrderStatus.PLACED


def test_service_raises_order_not_open_for_a_closed_order(account):
    order = OrderFactory(account=account, order_status=OrderStatus.FILLED)

    with pytest.raises(OrderNotOpen):
        order_cancel(client=account.client, order_id=order.id, actor="api:x")


# --- cancel-all -----------------------------------------------------------------------------------------------


def test_cancel_all_cancels_every_open_order_of_the_client_only(api, mm_client, other_client):
    client = mm_client[0]
    poly = AccountFactory(client=client, exchange=Exchange.POLYMARKET)
    kalshi = AccountFactory(client=client, exchange=Exchange.KALSHI)
    mine = [place_resting_order(account=poly), place_resting_order(account=kalshi)]
    theirs = place_resting_order(account=AccountFactory(client=other_client[0]))

    resp = api.post("/api/v1/orders/cancel-all")

    assert resp.status_code == 200
    assert resp.json() == {"cancelled": 2, "orderIds": [o.id for o in mine], "closed": [], "failed": []}
    assert get_connector("polymarket").open_orders(account=poly.username) == []
    assert get_connector("kalshi").open_orders(account=kalshi.username) == []
    assert venue_state(theirs) == "open"
    assert Order.objects.get(pk=theirs.pk).order_status == OrderStatus.PLACED


def test_cancel_all_with_exchange_cancels_only_that_exchange(api, mm_client):
    client = mm_client[0]
    poly = place_resting_order(account=AccountFactory(client=client, exchange=Exchange.POLYMARKET))
    kalshi = place_resting_order(account=AccountFactory(client=client, exchange=Exchange.KALSHI))

    resp = api.post("/api/v1/orders/cancel-all?exchange=polymarket")

    assert resp.json()["orderIds"] == [poly.id]
    assert venue_state(poly) == "cancelled"
    assert venue_state(kalshi) == "open"
    assert Order.objects.get(pk=kalshi.pk).order_status == OrderStatus.PLACED


def test_cancel_all_with_fixture_id_cancels_only_that_fixture(api, account):
    f1, f2 = FixtureFactory(), FixtureFactory()
    on_f1 = [place_resting_order(account=account, fixture=f1) for _ in range(2)]
    on_f2 = place_resting_order(account=account, fixture=f2)

    resp = api.post(f"/api/v1/orders/cancel-all?fixtureId={f1.fixture_id}")

    assert sorted(resp.json()["orderIds"]) == sorted(o.id for o in on_f1)
    assert venue_state(on_f2) == "open"
    assert api.post("/api/v1/orders/cancel-all?fixtureId=nope&exchange=polymarket").json()["cancelled"] == 0


def test_cancel_all_with_an_unknown_exchange_is_400_and_cancels_nothing(api, account):
    order = place_resting_order(account=account)

    resp = api.post("/api/v1/orders/cancel-all?exchange=nasdaq")

    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_parameter" and resp.json()["parameter"] == "exchange"
    assert venue_state(order) == "open"


def test_cancel_all_with_nothing_open_is_zero(api):
    assert api.post("/api/v1/orders/cancel-all").json() == {"cancelled": 0, "orderIds": [], "closed": [], "failed": []}


@override_settings(VENUE_CONNECTORS={"kalshi": "tests.trading.test_cancel.TimingOutVenue"})
def test_cancel_all_reports_orders_a_venue_did_not_confirm_and_cancels_the_rest(api, mm_client):
    client = mm_client[0]
    poly = place_resting_order(account=AccountFactory(client=client, exchange=Exchange.POLYMARKET))
    stuck = place_resting_order(account=AccountFactory(client=client, exchange=Exchange.KALSHI))
    filled = place_resting_order(account=AccountFactory(client=client, exchange=Exchange.POLYMARKET))
    get_connector("polymarket").match(venue_order_id=filled.exchange_order_id, size=Decimal("100"))

    body = api.post("/api/v1/orders/cancel-all").json()

    assert body["orderIds"] == [poly.id] and body["closed"] == [filled.id]
    assert [(f["orderId"], f["error"]) for f in body["failed"]] == [(stuck.id, "venue_unavailable")]
    assert Order.objects.get(pk=stuck.pk).order_status == OrderStatus.PLACED
    assert Order.objects.get(pk=filled.pk).order_status == OrderStatus.FILLED


def test_service_cancel_all_filters_combine(mm_client):
    client = mm_client[0]
    fixture = FixtureFactory()
    poly = AccountFactory(client=client, exchange=Exchange.POLYMARKET)
    kalshi = AccountFactory(client=client, exchange=Exchange.KALSHI)
    target = place_resting_order(account=poly, fixture=fixture)
    place_resting_order(account=kalshi, fixture=fixture)
    place_resting_order(account=poly)

    report = orders_cancel_all(client=client, actor="admin:ops", exchange="polymarket", fixture_id=fixture.fixture_id)

    assert report.cancelled == [target.id] and report.ok
    assert Order.objects.for_client(client).open().count() == 2
