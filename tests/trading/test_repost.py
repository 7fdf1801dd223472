"""After a fill, the filled size is quoted again on the venue when trading is active and the
exposure cap allows (fill -> on commit -> ``trading.quote_repost`` -> ``quote_refresh``); never while
paused or stopped, nor past ``max_outcome_stake``. On the real simulated venue."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import F, Sum

from exchanges.connectors.registry import get_connector
from exchanges.models.venue import SimVenueOrder, SimVenueOrderStatus
from tests.factories import AccountFactory, ClientFactory, FixtureFactory, OutcomeMarketFactory, QuotingRuleFactory
from trading.choices import OrderStatus
from trading.models import LiveQuote, Order
from trading.services import controls
from trading.services.fills import fill_apply
from trading.services.quoting import quotes_on_price

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_hedging")]

ODDS = Decimal("1.808")


@pytest.fixture
def key(db):
    client = ClientFactory(name="reposter:vertex")
    account = AccountFactory(client=client, max_outcome_stake=Decimal("1000"))
    fixture = FixtureFactory()
    OutcomeMarketFactory(fixture=fixture, exchange=account.exchange, exchange_outcome_id="tok-161")
    QuotingRuleFactory(account=account, tournament=fixture.tournament)
    return {"client": client, "account": account, "fixture": fixture}


def quote(key, capture) -> Order:
    with capture(execute=True):
        (decision,) = quotes_on_price(
            fixture_id=key["fixture"].fixture_id,
            bookmaker="vertex",
            outcome_id=161,
            player_id=0,
            price=ODDS,
            limit=Decimal("5000"),
            active=True,
        )
    order = Order.objects.get(pk=decision.order_id)
    assert order.order_status == OrderStatus.PLACED
    return order


def taker_fills(order: Order, size: str, capture):
    venue_fill = get_connector(order.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal(size))
    with capture(execute=True):
        return fill_apply(exchange=order.exchange, venue_fill=venue_fill, source="stream")


def resting(key) -> Decimal:
    """Contracts resting at the venue for the account."""
    qs = SimVenueOrder.objects.filter(account=key["account"].username, status=SimVenueOrderStatus.OPEN)
    return qs.aggregate(s=Sum(F("size") - F("filled")))["s"] or Decimal(0)


def test_a_full_fill_is_followed_by_a_new_quote_of_the_filled_size(key, django_capture_on_commit_callbacks):
    first = quote(key, django_capture_on_commit_callbacks)
    taker_fills(first, "100", django_capture_on_commit_callbacks)

    first.refresh_from_db()
    new = Order.objects.exclude(pk=first.pk).get(account=key["account"])
    assert first.order_status == OrderStatus.FILLED
    assert new.order_status == OrderStatus.PLACED and new.order_stake == Decimal("100")
    assert new.order_cents == first.order_cents and resting(key) == Decimal("100")
    assert LiveQuote.objects.get(account=key["account"]).order_id == new.pk


def test_a_partial_fill_is_topped_up_so_the_filled_size_rests_again(key, django_capture_on_commit_callbacks):
    first = quote(key, django_capture_on_commit_callbacks)
    taker_fills(first, "40", django_capture_on_commit_callbacks)

    assert resting(key) == Decimal("100")  # 60 left was replaced by a fresh 100
    first.refresh_from_db()
    assert first.order_status == OrderStatus.CANCELLED and first.matched_stake == Decimal("40")


@pytest.mark.parametrize("control", ["pause", "stop"])
def test_nothing_is_reposted_while_paused_or_stopped(key, control, django_capture_on_commit_callbacks):
    first = quote(key, django_capture_on_commit_callbacks)
    venue_fill = get_connector(first.exchange).match(venue_order_id=first.exchange_order_id, size=Decimal("100"))
    if control == "pause":
        controls.client_pause(client=key["client"], actor="test")
    else:
        controls.client_stop(client=key["client"], actor="test")
    with django_capture_on_commit_callbacks(execute=True):
        fill = fill_apply(exchange=first.exchange, venue_fill=venue_fill, source="stream")

    assert fill is not None and fill.hedge_bet is not None  # hedged all the same
    assert Order.objects.filter(account=key["account"]).count() == 1 and resting(key) == 0


def test_nothing_is_reposted_once_the_outcome_cap_is_reached(key, django_capture_on_commit_callbacks):
    key["account"].max_outcome_stake = Decimal("100")
    key["account"].save(update_fields=["max_outcome_stake"])
    first = quote(key, django_capture_on_commit_callbacks)
    taker_fills(first, "100", django_capture_on_commit_callbacks)
    assert Order.objects.filter(account=key["account"]).count() == 1 and resting(key) == 0


def test_the_repost_is_capped_by_the_room_left_under_the_cap(key, django_capture_on_commit_callbacks):
    key["account"].max_outcome_stake = Decimal("150")
    key["account"].save(update_fields=["max_outcome_stake"])
    first = quote(key, django_capture_on_commit_callbacks)
    taker_fills(first, "100", django_capture_on_commit_callbacks)
    new = Order.objects.exclude(pk=first.pk).get(account=key["account"])
    assert new.order_stake == Decimal("50") and resting(key) == Decimal("50")


def test_a_late_fill_of_an_older_order_does_not_requote_at_its_stale_price(key, django_capture_on_commit_callbacks):
    old = quote(key, django_capture_on_commit_callbacks)
    venue_fill = get_connector(old.exchange).match(venue_order_id=old.exchange_order_id, size=Decimal("10"))
    with django_capture_on_commit_callbacks(execute=True):  # the price moves: old is replaced
        quotes_on_price(
            fixture_id=key["fixture"].fixture_id,
            bookmaker="vertex",
            outcome_id=161,
            player_id=0,
            price=Decimal("2.20"),
            limit=Decimal("5000"),
            active=True,
        )
    live = LiveQuote.objects.get(account=key["account"]).order
    assert live.pk != old.pk and live.order_cents != old.order_cents
    with django_capture_on_commit_callbacks(execute=True):
        fill_apply(exchange=old.exchange, venue_fill=venue_fill, source="poll")  # the old order's trade, late
    assert LiveQuote.objects.get(account=key["account"]).order_id == live.pk
    live.refresh_from_db()
    assert live.order_status == OrderStatus.PLACED
