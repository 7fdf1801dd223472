"""Hedging fills on the client's bookmaker: the bet row before the call, one bookmaker bet per key,
timeouts resolved by asking, declines retried within a price drift then left unhedged (and
counted as such), and hedging that goes on under every trading control."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from exchanges.connectors.registry import get_connector
from hedging.choices import BetStatus
from hedging.connectors.simulated import SimulatedBookmaker
from hedging.models import HedgeBet, SimBookmakerBet
from hedging.services import hedge_fill, hedge_left_unhedged, hedge_selection
from hedging.tasks import hedge_fill_task, hedge_sweep_task
from tests.factories import AccountFactory, ClientFactory, place_resting_order
from tests.helpers import drain, in_threads
from trading.events import client_group
from trading.models import Fill
from trading.services import controls
from trading.services.fills import fill_apply, fills_poll

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_hedging")]


def a_fill(*, client=None, back: bool = False, stake: str = "100", price: str = "1.808") -> Fill:
    """A fill applied from the simulated venue, not yet hedged (its on-commit task is not run)."""
    account = AccountFactory(client=client or ClientFactory(name="demo:vertex"))
    order = place_resting_order(
        account=account, back=back, order_stake=Decimal(stake), bookmaker_outcome_price=Decimal(price)
    )
    vf = get_connector(order.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal(stake))
    return fill_apply(exchange=order.exchange, venue_fill=vf, source="stream")


def selection_of(fill: Fill) -> str:
    o = fill.order
    return hedge_selection(fixture_id=o.fixture.fixture_id, outcome_id=o.outcome_id, player_id=o.player_id, back=o.back)


def test_a_sell_fill_backs_the_outcome_at_the_bookmakers_current_price_with_stake_s_over_o():
    fill = a_fill(back=False, price="1.80")
    SimulatedBookmaker.configure(prices={selection_of(fill): Decimal("1.808")})

    bet = hedge_fill(fill_id=fill.pk)

    assert bet.bet_status == BetStatus.PLACED and bet.attempts == 1
    assert bet.placed_price == Decimal("1.808") and bet.placed_stake == Decimal("55.31")  # 100/1.808 up to the cent
    assert bet.bookmaker.name == "vertex" and bet.idempotency_key == f"hedge-{fill.pk}"
    sim = SimBookmakerBet.objects.get()
    assert sim.idempotency_key == bet.idempotency_key and sim.bet_id == bet.bookmaker_bet_id
    assert sim.selection == selection_of(fill) and not sim.selection.endswith(":not")


def test_a_buy_fill_backs_the_complement_at_the_orders_price_when_the_book_gives_none():
    fill = a_fill(back=True, price="2.20")

    bet = hedge_fill(fill_id=fill.pk)

    assert bet.bet_status == BetStatus.PLACED
    assert (bet.placed_price, bet.placed_stake) == (Decimal("2.2"), Decimal("45.46"))
    assert SimBookmakerBet.objects.get().selection.endswith(":not")


def test_hedging_one_fill_twice_leaves_one_bet_and_one_bookmaker_bet():
    fill = a_fill()

    hedge_fill_task.delay(fill.pk)
    hedge_fill_task.delay(fill.pk)

    assert HedgeBet.objects.filter(fill=fill).count() == 1
    assert SimBookmakerBet.objects.count() == 1


def test_a_pending_bet_is_resolved_by_asking_the_bookmaker_not_by_placing_again():
    fill = a_fill()
    SimulatedBookmaker.configure(mode="pending")

    assert hedge_fill(fill_id=fill.pk).bet_status == BetStatus.PENDING
    bet = hedge_fill(fill_id=fill.pk)

    assert bet.bet_status == BetStatus.PLACED and bet.placed_at is not None
    assert SimBookmakerBet.objects.count() == 1


def test_the_sweep_resumes_a_pending_bet():
    fill = a_fill()
    SimulatedBookmaker.configure(mode="pending")
    hedge_fill(fill_id=fill.pk)

    assert hedge_sweep_task(older_than_seconds=-60) == 1

    assert HedgeBet.objects.get(fill=fill).bet_status == BetStatus.PLACED


def test_a_timeout_is_resolved_by_the_idempotency_key_and_never_places_a_second_bet():
    fill = a_fill()
    SimulatedBookmaker.configure(mode="timeout")  # the bookmaker takes the bet, its answer is lost

    bet = hedge_fill(fill_id=fill.pk)
    again = hedge_fill(fill_id=fill.pk)

    assert bet.bet_status == again.bet_status == BetStatus.PLACED
    assert SimBookmakerBet.objects.count() == 1 and bet.bookmaker_bet_id == SimBookmakerBet.objects.get().bet_id


def test_a_declined_hedge_is_retried_at_the_new_price_within_the_drift():
    fill = a_fill(price="2.00")
    SimulatedBookmaker.configure(script=["decline"], prices={selection_of(fill): Decimal("1.96")})  # 2 % worse

    bet = hedge_fill(fill_id=fill.pk)

    assert bet.bet_status == BetStatus.PLACED and bet.attempts == 2
    assert (bet.placed_price, bet.placed_stake) == (Decimal("1.96"), Decimal("51.03"))
    keys = sorted(SimBookmakerBet.objects.values_list("idempotency_key", "status"))
    assert keys == [(f"hedge-{fill.pk}", "declined"), (f"hedge-{fill.pk}-r1", "placed")]


def test_a_decline_with_the_price_past_the_maximum_drift_is_not_retried():
    fill = a_fill(price="2.00")
    SimulatedBookmaker.configure(script=["decline"], prices={selection_of(fill): Decimal("1.80")})  # 10 % worse

    bet = hedge_fill(fill_id=fill.pk)

    assert bet.bet_status == BetStatus.DECLINED and bet.attempts == 1
    assert "drift" in bet.decline_reason and SimBookmakerBet.objects.count() == 1


def test_a_bet_the_bookmaker_declines_because_its_price_moved_is_retried_at_its_price():
    fill = a_fill(price="2.00")
    sel = selection_of(fill)
    SimulatedBookmaker.configure(prices={sel: Decimal("2.00")})
    real_price = SimulatedBookmaker.current_price

    def moving(self, *, bookmaker, selection):  # the price falls between our read and our bet
        price = real_price(self, bookmaker=bookmaker, selection=selection)
        SimulatedBookmaker.behaviour.prices[sel] = Decimal("1.95")
        return price

    SimulatedBookmaker.current_price = moving
    try:
        bet = hedge_fill(fill_id=fill.pk)
    finally:
        SimulatedBookmaker.current_price = real_price

    assert bet.bet_status == BetStatus.PLACED and bet.placed_price == Decimal("1.95")
    assert SimBookmakerBet.objects.order_by("id").first().reason == "price_moved"


def test_a_declined_hedge_left_unhedged_counts_in_pnl_and_raises_an_alert(
    mm_client, api, django_capture_on_commit_callbacks
):
    client, _ = mm_client
    alerts = []

    def on_alert(sender, bet, reason, **kwargs):
        alerts.append((bet.fill_id, reason))

    hedge_left_unhedged.connect(on_alert)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(client_group(client.id), channel)
    SimulatedBookmaker.configure(mode="decline")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            fill = a_fill(client=client, stake="40")  # hedged on commit: declined three times
    finally:
        hedge_left_unhedged.disconnect(on_alert)

    bet = HedgeBet.objects.get(fill=fill)
    assert bet.bet_status == BetStatus.DECLINED and bet.attempts == 3
    assert SimBookmakerBet.objects.count() == 3
    assert alerts == [(fill.pk, "declined")]
    body = api.get("/api/v1/pnl").json()
    assert body["unhedgedStake"] == 40.0 and body["unhedgedStakePct"] == 100.0 and body["totalTurnover"] == 0.0
    bet_events = [e["data"]["betStatus"] for e in drain(layer, channel) if e["type"] == "bet"]
    assert bet_events[0] == "pending" and bet_events[-1] == "declined"


@pytest.mark.parametrize(
    "control",
    [
        lambda c: controls.client_pause(client=c, actor="api:t"),
        lambda c: controls.client_stop(client=c, actor="api:t"),
        lambda c: controls.system_stop(actor="admin:t"),
        lambda c: controls.emergency_on(actor="admin:t"),
    ],
    ids=["pause", "stop", "system_stop", "emergency"],
)
def test_fills_that_happened_are_hedged_under_every_control(mm_client, control, django_capture_on_commit_callbacks):
    client, _ = mm_client
    account = AccountFactory(client=client)
    order = place_resting_order(account=account, order_stake=Decimal("100"))
    get_connector(order.exchange).match(venue_order_id=order.exchange_order_id, size=Decimal("30"))
    control(client)

    with django_capture_on_commit_callbacks(execute=True):
        fills = fills_poll(account=account)

    assert len(fills) == 1
    assert HedgeBet.objects.get(fill=fills[0]).bet_status == BetStatus.PLACED


# --- a worker killed mid-call -------------------------------------------------------------------------------------

KILLED_WORKER = """
import sys, time, django
django.setup()
from hedging.connectors.simulated import SimulatedBookmaker
from hedging.services import hedge_fill

def hang(bet):  # the bookmaker has taken the bet; the worker dies before hearing so
    with open(sys.argv[2], "w") as f:
        f.write(bet.idempotency_key)
    time.sleep(300)

SimulatedBookmaker.configure(before_answer=hang)
hedge_fill(fill_id=int(sys.argv[1]))
"""


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_after_the_bet_row_and_before_the_answer_leaves_exactly_one_bookmaker_bet(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from django.conf import settings
    from django.db import connection

    from tests.factories import FillFactory, OrderFactory

    order = OrderFactory(account=AccountFactory(client=ClientFactory(name="demo:vertex")), back=False)
    fill = FillFactory(order=order, stake=Decimal("100"))  # committed, its hedge not yet run
    db = connection.settings_dict
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)},
        "DJANGO_SETTINGS_MODULE": "mmsite.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    if db.get("PASSWORD"):
        env["DATABASE_URL"] = env["DATABASE_URL"].replace(f"{db['USER']}@", f"{db['USER']}:{db['PASSWORD']}@")
    marker = tmp_path / "called"
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, str(fill.pk), str(marker)], cwd=settings.BASE_DIR, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the worker never reached the bookmaker"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)

    bet = HedgeBet.objects.get(fill=fill)  # written and committed before the call
    assert bet.bet_status == BetStatus.PENDING and bet.bookmaker_bet_id == ""
    assert SimBookmakerBet.objects.count() == 1

    resumed = hedge_fill(fill_id=fill.pk)  # the redelivered task (acks_late) on another worker

    assert resumed.pk == bet.pk and resumed.bet_status == BetStatus.PLACED
    assert SimBookmakerBet.objects.count() == 1
    assert resumed.bookmaker_bet_id == SimBookmakerBet.objects.get().bet_id


def test_the_sweep_hedges_a_recent_fill_whose_task_was_lost_but_not_old_history():
    from datetime import timedelta

    from django.utils import timezone

    recent = a_fill()
    old = a_fill()
    Fill.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    Fill.objects.filter(pk=recent.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    assert hedge_sweep_task() == 1

    assert HedgeBet.objects.get().fill_id == recent.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_fill_hedged_by_eight_workers_at_once_is_one_bet_even_through_declines():
    from tests.factories import FillFactory, OrderFactory

    order = OrderFactory(account=AccountFactory(client=ClientFactory(name="demo:vertex")), back=False)
    fill = FillFactory(order=order, stake=Decimal("100"))
    SimulatedBookmaker.configure(script=["decline"])  # the first key is declined, the retry placed

    bets = in_threads(lambda _: hedge_fill(fill_id=fill.pk), list(range(8)), 8)

    assert {b.pk for b in bets} == {HedgeBet.objects.get(fill=fill).pk}
    assert HedgeBet.objects.get(fill=fill).bet_status == BetStatus.PLACED
    keys = sorted(SimBookmakerBet.objects.values_list("idempotency_key", "status"))
    assert keys == [(f"hedge-{fill.pk}", "declined"), (f"hedge-{fill.pk}-r1", "placed")]


class RefusingBookmaker(SimulatedBookmaker):
    """A bookmaker that refuses every bet outright (an error answer, not a decline)."""

    def place_bet(self, **kwargs):
        from hedging.connectors.base import BookmakerError

        raise BookmakerError("account restricted")


def test_a_bookmaker_refusal_is_a_decline_and_the_fill_is_left_unhedged(settings):
    from hedging.models import Bookmaker

    settings.BOOKMAKER_CONNECTORS = {"refuser": "tests.hedging.test_hedge.RefusingBookmaker"}
    book = Bookmaker.objects.create(name="refuser", simulated=False)
    fill = a_fill(client=ClientFactory(name="acme:refuser", hedge_bookmaker=book))

    bet = hedge_fill(fill_id=fill.pk)

    assert bet.bet_status == BetStatus.DECLINED and bet.attempts == 3
    assert bet.decline_reason.startswith("refused: account restricted")
    assert not SimBookmakerBet.objects.exists()
