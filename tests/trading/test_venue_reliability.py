"""Reliability on PostgreSQL with real parallel connections and a slow venue:

* Stop: zero open orders at the simulated venue when the call returns, while price updates keep
  quoting and placements are in flight with venue latency on.
* A venue timeout on placement (the simulated venue's own injected timeouts): every order ends as
  the venue knows it, and no client order id is ever placed twice.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection

from exchanges.connectors.simulated import SimulatedVenueConnector
from exchanges.models.venue import SimVenueOrder, SimVenueOrderStatus
from tests.factories import AccountFactory, ClientFactory, FixtureFactory, OutcomeMarketFactory, QuotingRuleFactory
from trading.choices import OrderStatus
from trading.models import Order, PlacementAttempt
from trading.services import controls
from trading.services.placement import order_place, order_resolve_unknown
from trading.services.quoting import quotes_on_price

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("eager_hedging"),
]


@pytest.fixture(autouse=True)
def _fresh_config():
    SimulatedVenueConnector._config_cache.clear()
    yield
    SimulatedVenueConnector._config_cache.clear()


def test_stop_leaves_zero_open_orders_at_a_slow_venue_while_quotes_and_placements_race_it():
    client = ClientFactory(name="racer:vertex")
    account = AccountFactory(client=client, max_outcome_stake=Decimal("100000"))
    SimulatedVenueConnector.configure(exchange=account.exchange, account=account.username, latency_ms=40)
    fixtures = [FixtureFactory() for _ in range(4)]
    for fx in fixtures:
        OutcomeMarketFactory(fixture=fx, exchange=account.exchange, exchange_outcome_id=f"tok-{fx.pk}")
        QuotingRuleFactory(account=account, tournament=fx.tournament)
    go, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def quote_loop(fx, i):
        odds = [Decimal("1.808"), Decimal("2.20"), Decimal("1.95"), Decimal("2.50")]
        n = i
        try:
            go.wait(10)
            while not done.is_set():
                quotes_on_price(
                    fixture_id=fx.fixture_id,
                    bookmaker="vertex",
                    outcome_id=161,
                    player_id=0,
                    price=odds[n % len(odds)],
                    limit=Decimal("5000"),
                    active=True,
                )
                n += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=quote_loop, args=(fx, i)) for i, fx in enumerate(fixtures)]
    for t in threads:
        t.start()
    go.set()
    time.sleep(0.8)  # quotes resting, requotes (cancel + place, each 40 ms at the venue) in flight
    assert SimVenueOrder.objects.filter(account=account.username, status=SimVenueOrderStatus.OPEN).exists()

    report = controls.client_stop(client=client, actor="test")
    at_return = SimVenueOrder.objects.filter(account=account.username, status=SimVenueOrderStatus.OPEN).count()
    still_open = Order.objects.filter(account=account).open().count()

    done.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert report.failed == []
    assert at_return == 0 and still_open == 0
    # and nothing reached the venue afterwards either
    assert not SimVenueOrder.objects.filter(account=account.username, status=SimVenueOrderStatus.OPEN).exists()


def test_venue_timeouts_on_placement_end_as_the_venue_knows_and_never_place_twice(settings):
    from tests.factories import OrderFactory

    account = AccountFactory()
    # This test is about unknown outcomes, not the venue rate limit: 4 threads placing 48 times at
    # once would otherwise empty the account's token bucket on a slow machine (PlacementThrottled).
    settings.VENUE_RATE_LIMITS = {account.exchange: (1_000_000, 1_000_000)}
    SimulatedVenueConnector.configure(
        exchange=account.exchange, account=account.username, timeout_rate=Decimal("0.5"), latency_ms=5
    )
    orders = [
        OrderFactory(account=account, order_status=OrderStatus.PENDING_PLACEMENT, exchange_order_id=None)
        for _ in range(24)
    ]
    sends: list[str] = []
    blind: list[str] = []  # sends of an order the venue already had: must never happen
    real_place = SimulatedVenueConnector.place

    def counting_place(self, req):
        sends.append(req.client_order_id)
        if SimVenueOrder.objects.filter(client_order_id=req.client_order_id).exists():
            blind.append(req.client_order_id)
        return real_place(self, req)

    SimulatedVenueConnector.place = counting_place
    try:
        errors: list[BaseException] = []

        def worker(chunk):
            try:
                for o in chunk:
                    order_place(order_id=o.pk)
                    order_place(order_id=o.pk)  # a redelivered task: asks, does not resend blindly
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=worker, args=(orders[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        SimulatedVenueConnector.configure(exchange=account.exchange, account=account.username, timeout_rate=0)
        for o in orders:  # the sweep resolves what is still unknown, by asking
            for _ in range(5):
                if Order.objects.get(pk=o.pk).order_status != OrderStatus.PENDING_PLACEMENT:
                    break
                order_resolve_unknown(order_id=o.pk)
    finally:
        SimulatedVenueConnector.place = real_place

    for o in orders:
        o.refresh_from_db()
        at_venue = SimVenueOrder.objects.filter(client_order_id=o.client_order_id).first()
        assert SimVenueOrder.objects.filter(client_order_id=o.client_order_id).count() <= 1
        if at_venue is None:
            assert o.order_status != OrderStatus.PLACED
        else:
            assert o.order_status == OrderStatus.PLACED and o.exchange_order_id == at_venue.venue_order_id
    assert blind == []  # a send only ever followed a lookup in which the venue had never seen the order
    timed_out = PlacementAttempt.objects.filter(order__in=orders).exclude(last_error="").count()
    assert timed_out > 0  # the injected timeouts did happen
