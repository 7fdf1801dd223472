"""Placement: PENDING_PLACEMENT -> PLACED / FAILED as the venue answers; a timeout is resolved by
asking the venue, never by sending again; the token bucket keeps each account under its rate."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest

from exchanges.connectors import registry
from exchanges.connectors.base import VenueError, VenueUnknownOutcome
from exchanges.connectors.simulated import SimulatedVenueConnector
from exchanges.models import SimVenueOrder, SimVenueOrderStatus
from tests.factories import AccountFactory, OrderFactory
from trading.choices import OrderStatus
from trading.models import Order, PlacementAttempt
from trading.ratelimit import BucketRate, TokenBucket, rate_for, take_token
from trading.services.orders import order_cancel
from trading.services.placement import PlacementThrottled, order_place, order_resolve_unknown
from trading.tasks.placement import order_place_task, orders_resolve_unknown_task

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

TEST_EXCHANGE = "kalshi"  # served by the test connectors below in the tests that need them


class CountingVenue(SimulatedVenueConnector):
    """The simulated venue, counting the place requests it receives."""

    sent: list[str] = []

    def place(self, req):
        type(self).sent.append(req.client_order_id)
        return super().place(req)


class LostAnswerVenue(CountingVenue):
    """The order reaches the venue, then the answer is lost (a read timeout)."""

    def place(self, req):
        super().place(req)
        raise VenueUnknownOutcome("read timeout after 10s")


class LostRequestVenue(CountingVenue):
    """The first request never reaches the venue (connect timeout); later ones do."""

    def place(self, req):
        if not type(self).sent:
            type(self).sent.append(req.client_order_id)
            raise VenueUnknownOutcome("connect timeout")
        return super().place(req)


class RefusingVenue(CountingVenue):
    def place(self, req):
        type(self).sent.append(req.client_order_id)
        raise VenueError("insufficient balance")


@pytest.fixture
def venue(settings):
    """``venue(Class)`` serves TEST_EXCHANGE from ``Class`` and returns its list of sent ids."""

    def use(cls):
        cls.sent = []
        settings.VENUE_CONNECTORS = {TEST_EXCHANGE: f"{__name__}.{cls.__name__}"}
        registry._connector.cache_clear()
        return cls.sent

    yield use
    registry._connector.cache_clear()


def pending(**fields) -> Order:
    account = fields.pop("account", None) or AccountFactory(exchange=TEST_EXCHANGE)
    return OrderFactory(
        account=account,
        order_status=OrderStatus.PENDING_PLACEMENT,
        exchange_order_id=None,
        exchange_outcome_id="KXTEST-YES",
        order_cents=Decimal("0.58"),
        back=False,
        **fields,
    )


def at_venue(order: Order) -> list[SimVenueOrder]:
    return list(SimVenueOrder.objects.filter(client_order_id=order.client_order_id))


# --- the lifecycle ---------------------------------------------------------------------------------------------


def test_placement_records_placed_with_the_venue_id(venue):
    sent = venue(CountingVenue)
    order = order_place(order_id=pending().pk)
    (twin,) = at_venue(order)
    assert order.order_status == OrderStatus.PLACED
    assert order.exchange_order_id == twin.venue_order_id
    assert (twin.market, twin.side, twin.price, twin.size) == ("KXTEST-YES", "sell", Decimal("0.58"), Decimal(100))
    assert sent == [order.client_order_id]


def test_placing_twice_sends_once(venue):
    sent = venue(CountingVenue)
    order = pending()
    order_place(order_id=order.pk)
    again = order_place(order_id=order.pk)  # a redelivered task
    assert again.order_status == OrderStatus.PLACED
    assert sent == [order.client_order_id]
    assert PlacementAttempt.objects.get(order=order).sent == 1


def test_definite_refusal_fails_the_order(venue):
    sent = venue(RefusingVenue)
    order = order_place(order_id=pending().pk)
    assert order.order_status == OrderStatus.FAILED
    assert "insufficient balance" in order.status_reason
    assert len(sent) == 1 and order_place(order_id=order.pk).order_status == OrderStatus.FAILED and len(sent) == 1


def test_order_cancelled_before_placement_is_never_placed(venue):
    sent = venue(CountingVenue)
    order = pending()
    order_cancel(client=order.client, order_id=order.pk, actor="test")
    assert order_place(order_id=order.pk).order_status == OrderStatus.CANCELLED
    assert sent == [] and at_venue(order) == []


# --- unknown outcomes ----------------------------------------------------------------------------------------


def test_venue_timeout_ends_as_the_venue_knows_it_never_placed_twice(venue):
    sent = venue(LostAnswerVenue)
    order = order_place(order_id=pending().pk)
    assert order.order_status == OrderStatus.PENDING_PLACEMENT  # unknown: not FAILED, not PLACED
    assert "unknown" in order.status_reason

    resolved = order_place(order_id=order.pk)  # the task runs again: it asks, it does not send
    (twin,) = at_venue(order)
    assert resolved.order_status == OrderStatus.PLACED
    assert resolved.exchange_order_id == twin.venue_order_id
    assert sent == [order.client_order_id]  # exactly one place request ever sent
    assert order_resolve_unknown(order_id=order.pk).order_status == OrderStatus.PLACED
    assert sent == [order.client_order_id]


def test_sweep_resolves_a_timed_out_placement_by_lookup(venue):
    sent = venue(LostAnswerVenue)
    order = order_place(order_id=pending().pk)
    Order.objects.filter(pk=order.pk).update(updated_at=order.updated_at - dt.timedelta(minutes=1))
    assert orders_resolve_unknown_task.delay().get() == 1
    order.refresh_from_db()
    assert order.order_status == OrderStatus.PLACED and len(at_venue(order)) == 1
    assert sent == [order.client_order_id]


def test_request_that_never_reached_the_venue_is_sent_again_after_asking(venue):
    sent = venue(LostRequestVenue)
    order = order_place(order_id=pending().pk)
    assert order.order_status == OrderStatus.PENDING_PLACEMENT and at_venue(order) == []
    order = order_resolve_unknown(order_id=order.pk)
    assert order.order_status == OrderStatus.PLACED
    assert len(at_venue(order)) == 1 and sent == [order.client_order_id] * 2


def test_stale_order_the_venue_never_saw_is_failed_not_sent(venue):
    sent = venue(LostRequestVenue)
    order = order_place(order_id=pending().pk)
    later = order.created_at + dt.timedelta(minutes=5)
    order = order_resolve_unknown(order_id=order.pk, now=later)
    assert order.order_status == OrderStatus.FAILED
    assert at_venue(order) == [] and len(sent) == 1


def test_a_superseded_send_claim_sends_nothing(venue):
    """Two workers: A counted send 1, then B asked the venue (nothing there) and counted send 2.
    A's send must not go out: only B's, which followed a lookup."""
    from trading.services.placement import _send

    sent = venue(CountingVenue)
    order = pending()
    PlacementAttempt.objects.create(order=order, sent=2)
    assert _send(order_id=order.pk, claimed=1).order_status == OrderStatus.PENDING_PLACEMENT
    assert sent == []
    assert _send(order_id=order.pk, claimed=2).order_status == OrderStatus.PLACED
    assert sent == [order.client_order_id]


def test_cancel_of_a_timed_out_placement_cancels_it_at_the_venue(venue):
    venue(LostAnswerVenue)
    order = order_place(order_id=pending().pk)
    cancelled = order_cancel(client=order.client, order_id=order.pk, actor="test")
    assert cancelled.order_status == OrderStatus.CANCELLED
    (twin,) = at_venue(order)
    assert twin.status == SimVenueOrderStatus.CANCELLED
    assert order_place(order_id=order.pk).order_status == OrderStatus.CANCELLED


# --- rate limits ---------------------------------------------------------------------------------------------


def test_token_bucket_refuses_beyond_the_rate(settings):
    settings.VENUE_RATE_LIMITS = {"kalshi": (1.0, 3)}
    results = [take_token(account_id=1, exchange="kalshi") for _ in range(4)]
    assert [ok for ok, _ in results] == [True, True, True, False]
    assert 0 < results[-1][1] <= 1.0
    assert take_token(account_id=2, exchange="kalshi")[0]  # buckets are per account


def test_token_bucket_refills_at_its_rate():
    bucket = TokenBucket("test-refill", BucketRate(per_second=100.0, burst=1))
    assert bucket.take()[0]
    ok, wait = bucket.take()
    assert not ok and 0 < wait <= 0.01
    time.sleep(0.02)
    assert bucket.take()[0]


def test_placement_throttled_sends_nothing_and_the_task_leaves_it_for_the_sweep(venue, settings):
    sent = venue(CountingVenue)
    settings.VENUE_RATE_LIMITS = {TEST_EXCHANGE: (0.001, 1)}
    account = AccountFactory(exchange=TEST_EXCHANGE)
    first, second = pending(account=account), pending(account=account)
    assert order_place(order_id=first.pk).order_status == OrderStatus.PLACED
    with pytest.raises(PlacementThrottled) as exc:
        order_place(order_id=second.pk)
    assert exc.value.retry_after > 0
    order_place_task.delay(second.pk)  # eager: no delayed retry, nothing raised
    second.refresh_from_db()
    assert second.order_status == OrderStatus.PENDING_PLACEMENT
    assert not PlacementAttempt.objects.filter(order=second, sent__gt=0).exists()
    assert sent == [first.client_order_id]


@pytest.mark.redis
def test_token_bucket_is_shared_through_redis(settings):
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    assert isinstance(caches["default"], RedisCache)
    settings.VENUE_RATE_LIMITS = {"kalshi": (1.0, 2)}
    bucket_a = TokenBucket("venue-rate:shared", rate_for("kalshi"))
    bucket_b = TokenBucket("venue-rate:shared", rate_for("kalshi"))  # another process's view
    assert [bucket_a.take()[0], bucket_b.take()[0], bucket_a.take()[0]] == [True, True, False]
