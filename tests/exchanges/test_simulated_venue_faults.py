"""The simulated venue as the engine meets it: faults configured per account (latency, rejections,
timeouts, disconnects, expiry), its user stream with a resumable cursor, and the seeded taker flow."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest

from exchanges.connectors.base import PlaceRequest, VenueError, VenueStreamDisconnected, VenueUnknownOutcome
from exchanges.connectors.sim_taker import SimTakerFlow
from exchanges.connectors.simulated import SimulatedVenueConnector
from exchanges.models.venue import SimVenueOrder, SimVenueOrderStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def venue():
    """A fresh connector (its own seeded fault generator) and a fresh account name."""
    SimulatedVenueConnector._config_cache.clear()
    v = SimulatedVenueConnector("simulated")
    v.user = f"acct-{uuid.uuid4().hex[:8]}"
    yield v
    SimulatedVenueConnector._config_cache.clear()


def req(venue, coid=None, size="10", price="0.45"):
    return PlaceRequest(
        client_order_id=coid or f"c-{uuid.uuid4().hex[:10]}",
        account=venue.user,
        market="m1",
        side="sell",
        price=Decimal(price),
        size=Decimal(size),
    )


def configure(venue, **fields):
    SimulatedVenueConnector.configure(exchange=venue.exchange, account=venue.user, **fields)


def test_latency_makes_every_call_take_that_long(venue):
    configure(venue, latency_ms=120)
    t0 = time.monotonic()
    venue.place(req(venue))
    venue.open_orders(account=venue.user)
    assert time.monotonic() - t0 >= 0.24


def test_a_rejection_refuses_the_order_and_records_nothing(venue):
    configure(venue, reject_rate=Decimal("1"))
    r = req(venue)
    with pytest.raises(VenueError, match="simulated rejection"):
        venue.place(r)
    assert venue.order_status(account=venue.user, client_order_id=r.client_order_id) is None


def test_timeouts_on_place_are_lost_requests_or_lost_answers_and_a_retry_returns_the_one_order(venue):
    configure(venue, timeout_rate=Decimal("1"))
    outcomes = []
    for _ in range(12):
        r = req(venue)
        with pytest.raises(VenueUnknownOutcome):
            venue.place(r)
        outcomes.append(SimVenueOrder.objects.filter(client_order_id=r.client_order_id).exists())
    assert True in outcomes and False in outcomes  # both kinds of timeout happen
    reached = next(o for o in SimVenueOrder.objects.filter(account=venue.user))
    configure(venue, timeout_rate=Decimal("0"))
    again = venue.place(req(venue, coid=reached.client_order_id))  # same id: the same order, not a second
    assert again.venue_order_id == reached.venue_order_id
    assert SimVenueOrder.objects.filter(client_order_id=reached.client_order_id).count() == 1


def test_the_same_seed_makes_the_same_faults_in_the_same_order(venue, settings):
    configure(venue, timeout_rate=Decimal("0.5"))

    def run():
        v = SimulatedVenueConnector("seeded")
        v._config_cache[("seeded", venue.user)] = (time.monotonic() + 3600, venue.config(venue.user))
        out = []
        for _ in range(20):
            try:
                v.balance(account=venue.user)
                out.append("ok")
            except VenueUnknownOutcome:
                out.append("timeout")
        return out

    first, second = run(), run()
    assert first == second and "ok" in first and "timeout" in first


def test_replace_cancels_the_old_order_and_places_the_new_one(venue):
    old = venue.place(req(venue))
    new = venue.replace(account=venue.user, venue_order_id=old.venue_order_id, new=req(venue, price="0.47"))
    assert venue.order_status(account=venue.user, client_order_id=old.client_order_id).state == "cancelled"
    assert [o.venue_order_id for o in venue.open_orders(account=venue.user)] == [new.venue_order_id]
    assert new.price == Decimal("0.47")


def test_balance_reserves_the_collateral_of_resting_orders(venue):
    venue.place(req(venue, size="100", price="0.40"))  # a sell reserves (1 - 0.40) x 100
    assert venue.balance(account=venue.user) == Decimal("1000000") - Decimal("60")


def test_books_are_per_exchange(venue):
    venue.place(req(venue))
    assert SimulatedVenueConnector("other").open_orders(account=venue.user) == []


def test_the_stream_delivers_order_and_fill_events_in_order_and_resumes_from_a_cursor(venue):
    stream = venue.stream(account=venue.user)  # subscribed now: what follows is delivered
    placed = venue.place(req(venue, size="10"))
    venue.match(venue_order_id=placed.venue_order_id, size=Decimal("4"), trade_id=f"t-{uuid.uuid4().hex[:6]}")
    first = [next(stream) for _ in range(3)]
    assert [e.kind for e in first] == ["order", "fill", "order"]
    assert first[1].fill.size == Decimal("4") and first[2].order.filled == Decimal("4")

    venue.cancel(account=venue.user, venue_order_id=placed.venue_order_id)
    resumed = venue.stream(account=venue.user, cursor=first[-1].cursor)  # a new connection
    event = next(resumed)
    assert event.kind == "order" and event.order.state == "cancelled"


def test_a_quiet_stream_yields_idle_keepalives(venue, settings):
    settings.SIM_VENUE = {"stream_idle_seconds": 0.1, "stream_poll_seconds": 0.02}
    stream = venue.stream(account=venue.user)
    assert next(stream).kind == "idle"


def test_an_injected_disconnect_drops_an_open_stream_and_a_new_one_resumes(venue):
    stream = venue.stream(account=venue.user)
    venue.place(req(venue))
    cursor = next(stream).cursor
    SimulatedVenueConnector.inject_disconnect(exchange=venue.exchange, account=venue.user)
    venue.place(req(venue))
    with pytest.raises(VenueStreamDisconnected):
        next(stream)
    with pytest.raises(VenueStreamDisconnected):
        next(stream)  # stays closed
    assert next(venue.stream(account=venue.user, cursor=cursor)).kind == "order"  # nothing lost


def test_random_disconnects_at_the_configured_rate(venue):
    configure(venue, disconnect_rate=Decimal("1"))
    with pytest.raises(VenueStreamDisconnected):
        next(venue.stream(account=venue.user))


def test_orders_expire_at_the_venue_after_the_configured_time(venue):
    configure(venue, expire_after_seconds=1)
    placed = venue.place(req(venue))
    stream = venue.stream(account=venue.user, cursor="0")
    assert venue.expire_due() == []
    SimVenueOrder.objects.filter(venue_order_id=placed.venue_order_id).update(
        expires_at=SimVenueOrder.objects.get(venue_order_id=placed.venue_order_id).created_at
    )
    assert venue.expire_due() == [placed.venue_order_id]
    assert venue.order_status(account=venue.user, client_order_id=placed.client_order_id).state == "expired"
    assert [e.order.state for e in (next(stream), next(stream))][-1] == "expired"


def _book(venue, n=8):
    return [venue.place(req(venue, coid=f"{venue.user}-{i}", size="10")) for i in range(n)]


def _taker_run(seed: int):
    v = SimulatedVenueConnector("taker")
    v.user = f"acct-{uuid.uuid4().hex[:8]}"
    _book(v)
    flow = SimTakerFlow(v, seed=seed, rate=5.0, partial_ratio=0.5, accounts=[v.user])
    trades = []
    for _ in range(6):
        trades += [(t.client_order_id.split("-")[-1], t.size) for t in flow.step(1.0)]
    return trades


def test_the_taker_flow_is_deterministic_for_a_seed_and_trades_partly_and_fully():
    a, b, c = _taker_run(7), _taker_run(7), _taker_run(8)
    assert a == b and a != c
    sizes = {size for _, size in a}
    assert len(a) > 5 and Decimal("10") in sizes and any(s < 10 for s in sizes)
    assert not SimVenueOrder.objects.filter(filled__gt=models_f("size")).exists()


def models_f(name):
    from django.db.models import F

    return F(name)


def test_the_taker_never_trades_a_closed_order(venue):
    orders = _book(venue, 2)
    venue.cancel(account=venue.user, venue_order_id=orders[0].venue_order_id)
    flow = SimTakerFlow(venue, seed=1, rate=20.0, partial_ratio=0.0, accounts=[venue.user])
    trades = flow.step(1.0)
    assert {t.client_order_id for t in trades} == {orders[1].client_order_id}
    assert SimVenueOrder.objects.get(venue_order_id=orders[1].venue_order_id).status == SimVenueOrderStatus.FILLED
