"""The simulated bookmaker's outcomes end to end, from a fill on the venue stream to the client's
PnL: a hedge that keeps being declined as the price drifts away is left unhedged and, once the
order settles, is counted in ``nakedPnl``; a pending bet becomes placed through the sweep."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from exchanges.connectors.base import VenueEvent
from exchanges.connectors.registry import get_connector
from hedging.choices import BetStatus
from hedging.connectors.simulated import SimulatedBookmaker
from hedging.models import HedgeBet, SimBookmakerBet
from hedging.services import hedge_left_unhedged, hedge_selection
from hedging.tasks import hedge_sweep_task
from tests.factories import AccountFactory, place_resting_order
from trading.choices import SettlementStatus
from trading.models import Order
from trading.services.fills import fills_stream_apply

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_hedging")]


def stream_fill(account, *, stake="40", odds="2.00", capture):
    order = place_resting_order(
        account=account, back=False, order_stake=Decimal(stake), bookmaker_outcome_price=Decimal(odds)
    )
    vf = get_connector(order.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal(stake))
    with capture(execute=True):
        assert fills_stream_apply(account=account, events=[VenueEvent(kind="fill", fill=vf)]) == 1
    return order


def test_a_hedge_declined_while_the_price_drifts_away_is_left_unhedged_and_counts_in_naked_pnl(
    mm_client, api, django_capture_on_commit_callbacks, settings
):
    settings.HEDGE_MAX_PRICE_DRIFT = "0.05"
    account = AccountFactory(client=mm_client[0])
    order = place_resting_order(
        account=account, back=False, order_stake=Decimal("40"), bookmaker_outcome_price=Decimal("2.00")
    )
    sel = hedge_selection(
        fixture_id=order.fixture.fixture_id, outcome_id=order.outcome_id, player_id=order.player_id, back=False
    )
    # the bookmaker declines, and its price is now 1.80 against the order's 2.00: 10 % adverse,
    # past the 5 % the retry policy accepts
    SimulatedBookmaker.configure(mode="decline", prices={sel: Decimal("1.80")})
    vf = get_connector(order.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal("40"))
    alerts: list[str] = []

    def on_alert(sender, bet, reason, **kwargs):
        alerts.append(reason)

    hedge_left_unhedged.connect(on_alert)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert fills_stream_apply(account=account, events=[VenueEvent(kind="fill", fill=vf)]) == 1
    finally:
        hedge_left_unhedged.disconnect(on_alert)

    naked = HedgeBet.objects.get(order=order)
    assert naked.bet_status == BetStatus.DECLINED and naked.attempts == 1  # not retried: drift 10 % > 5 %
    assert "drift beyond limit" in naked.decline_reason and len(alerts) == 1 and "drift" in alerts[0]
    assert SimBookmakerBet.objects.count() == 1

    before = api.get("/api/v1/pnl").json()
    assert before["unhedgedStake"] == 40.0 and before["nakedSettledCount"] == 0 and before["nakedPnl"] == 0.0

    # the order loses (the outcome we sold happens): each contract sold at 0.45 costs 0.55, -22.00
    Order.objects.filter(pk=order.pk).update(settlement_status=SettlementStatus.LOST, settled_at=timezone.now())
    after = api.get("/api/v1/pnl").json()
    assert after["nakedSettledCount"] == 1 and after["nakedPnl"] == -22.0 and after["unhedgedStake"] == 40.0


def test_a_pending_bet_is_placed_by_the_sweep_and_never_placed_twice(mm_client, django_capture_on_commit_callbacks):
    account = AccountFactory(client=mm_client[0])
    SimulatedBookmaker.configure(mode="pending", pending_polls=2)
    order = stream_fill(account, capture=django_capture_on_commit_callbacks)
    bet = HedgeBet.objects.get(order=order)
    assert bet.bet_status == BetStatus.PENDING  # the bookmaker said pending

    HedgeBet.objects.filter(pk=bet.pk).update(updated_at=timezone.now() - dt.timedelta(minutes=5))
    hedge_sweep_task.delay()  # asks: first poll still pending
    HedgeBet.objects.filter(pk=bet.pk).update(updated_at=timezone.now() - dt.timedelta(minutes=5))
    hedge_sweep_task.delay()  # second poll: placed

    bet.refresh_from_db()
    assert bet.bet_status == BetStatus.PLACED and bet.bookmaker_bet_id == SimBookmakerBet.objects.get().bet_id
    assert SimBookmakerBet.objects.count() == 1
