"""Management commands: create_client (a client and a key for scripts) and seed_demo (demo data)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from exchanges.models import SimVenueOrder, SimVenueOrderStatus, SimVenueTrade
from hedging.choices import BetSettlementStatus, BetStatus
from hedging.models import Bookmaker, HedgeBet
from trading.choices import FixtureStatus, MatchedStatus, OrderStatus, SettlementStatus
from trading.models import (
    ApiKey,
    Client,
    ClientTradingState,
    ExchangeAccount,
    Fill,
    Fixture,
    Order,
    Tournament,
)
from trading.services.controls import client_stop

pytestmark = pytest.mark.django_db


def run(*args) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def me(raw_key: str):
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=raw_key)
    return api.get("/api/v1/me")


# --- create_client -----------------------------------------------------------------------------------------------


def test_create_client_prints_a_working_key_alone_on_its_last_line():
    lines = run("create_client", "demo:vertex")

    assert "created" in lines[0]
    resp = me(lines[-1])
    assert resp.status_code == 200
    assert resp.json()["client"] == "demo:vertex" and resp.json()["bookmaker"] == "vertex"
    assert lines[-1] == lines[-1].strip() and " " not in lines[-1]


def test_create_client_twice_keeps_one_client_and_makes_two_working_keys():
    first = run("create_client", "demo:vertex")[-1]
    second_run = run("create_client", "demo:vertex")

    assert "exists" in second_run[0]
    assert Client.objects.filter(name="demo:vertex").count() == 1
    assert ApiKey.objects.filter(client__name="demo:vertex").count() == 2
    assert first != second_run[-1]
    assert me(first).status_code == 200 and me(second_run[-1]).status_code == 200


def test_create_client_stores_only_the_hash_of_the_key():
    raw = run("create_client", "vertex")[-1]
    key = ApiKey.objects.get(client__name="vertex")
    assert key.key_hash == ApiKey.hash_key(raw) and raw not in (key.prefix, key.key_hash)
    assert ClientTradingState.objects.filter(client=key.client).exists()
    assert Bookmaker.objects.filter(name="vertex").exists()


@pytest.mark.parametrize(
    "name", ["", "a:b:c", "demo:", ":vertex", "Demo:Vertex", "demo:ver tex", "demo;drop", "x" * 70]
)
def test_create_client_refuses_bad_names_with_a_clear_error(name):
    with pytest.raises(CommandError, match="client:bookmaker"):
        run("create_client", name)
    assert not Client.objects.exists()


# --- seed_demo -------------------------------------------------------------------------------------------------------

SEEDED_MODELS = (
    Client,
    ClientTradingState,
    Bookmaker,
    ExchangeAccount,
    Tournament,
    Fixture,
    Order,
    Fill,
    HedgeBet,
    SimVenueOrder,
    SimVenueTrade,
    get_user_model(),
)


def snapshot() -> dict:
    counts = {m.__name__: m._default_manager.count() for m in SEEDED_MODELS}
    orders = list(
        Order.objects.order_by("client_order_id").values_list(
            "client_order_id",
            "exchange_order_id",
            "order_status",
            "matched_status",
            "matched_stake",
            "order_cents",
            "settlement_status",
            "created_at",
            "updated_at",
        )
    )
    bets = list(
        HedgeBet.objects.order_by("idempotency_key").values_list("idempotency_key", "placed_price", "placed_stake")
    )
    creds = list(ExchangeAccount.objects.order_by("pk").values_list("credentials_encrypted", flat=True))
    return {"counts": counts, "orders": orders, "bets": bets, "creds": creds}


@pytest.fixture
def seeded(settings):
    """seed_demo as on the embedded default (DEBUG on: pytest-django turns it off)."""
    settings.DEBUG = True
    lines = run("seed_demo")
    return lines


def test_seed_demo_twice_leaves_the_same_data(seeded):
    before = snapshot()

    lines = run("seed_demo")

    assert snapshot() == before
    assert "nothing (already seeded)" in lines[0]


def test_seed_demo_covers_every_order_matched_bet_and_settlement_status(seeded):
    assert set(Order.objects.values_list("order_status", flat=True)) == set(OrderStatus.values)
    assert set(Order.objects.values_list("matched_status", flat=True)) == set(MatchedStatus.values)
    assert set(Order.objects.values_list("settlement_status", flat=True)) == set(SettlementStatus.values)
    assert set(HedgeBet.objects.values_list("bet_status", flat=True)) == set(BetStatus.values)
    assert set(HedgeBet.objects.values_list("settlement_status", flat=True)) == set(BetSettlementStatus.values)
    assert set(Fixture.objects.values_list("status", flat=True)) == set(FixtureStatus.values)
    assert set(ExchangeAccount.objects.values_list("exchange", flat=True)) >= {"polymarket", "kalshi", "betfair"}
    assert Tournament.objects.values("sport_id").distinct().count() == 2


def test_seeded_data_is_consistent(seeded):
    for order in Order.objects.prefetch_related("fills"):
        assert sum((f.stake for f in order.fills.all()), 0) == order.matched_stake, order.client_order_id
        assert order.outcome_id in {111, 112, 121, 122, 131, 132, 141, 142, 151, 152, 161, 162, 171, 172}
    mirror = {"WON": "lost", "LOST": "won", "VOID": "void", "HALF_WON": "half_lost", "HALF_LOST": "half_won"}
    settled_bets = HedgeBet.objects.exclude(settlement_status=BetSettlementStatus.UNDECIDED).select_related("order")
    assert settled_bets.exists()
    for bet in settled_bets:
        assert bet.settlement_status == mirror[bet.order.settlement_status]
        assert bet.bet_status == BetStatus.PLACED
    live = Fixture.objects.filter(status__in=[FixtureStatus.LIVE, FixtureStatus.FINISHED])
    assert all(f.participant1_score is not None and f.participant2_score is not None for f in live)
    assert all(a.has_credentials for a in ExchangeAccount.objects.all())


def test_open_seeded_orders_rest_on_the_simulated_venue(seeded):
    open_orders = list(Order.objects.open())
    assert {o.order_status for o in open_orders} == {OrderStatus.PENDING_PLACEMENT, OrderStatus.PLACED}
    for order in open_orders:
        venue = SimVenueOrder.objects.get(client_order_id=order.client_order_id)
        assert venue.venue_order_id == order.exchange_order_id
        assert venue.status == SimVenueOrderStatus.OPEN
        assert venue.account == order.account.username
        assert venue.filled == order.matched_stake
    # and closed orders do not: nothing rests on the venue that we think is closed
    open_at_venue = set(SimVenueOrder.objects.filter(status="open").values_list("client_order_id", flat=True))
    assert open_at_venue == {o.client_order_id for o in open_orders}
    # every venue trade has its fill
    assert set(SimVenueTrade.objects.values_list("trade_id", flat=True)) == set(
        Fill.objects.values_list("venue_trade_id", flat=True)
    )


def test_stopping_a_seeded_client_cancels_its_orders_at_the_venue(seeded):
    client = Client.objects.get(name="demo:vertex")
    assert Order.objects.for_client(client).open().count() > 0

    report = client_stop(client=client, actor="test")

    assert report.ok
    assert not Order.objects.for_client(client).open().exists()
    usernames = client.accounts.values_list("username", flat=True)
    assert not SimVenueOrder.objects.filter(account__in=list(usernames), status="open").exists()


def test_seeded_pnl_has_spread_naked_pnl_and_unhedged_stake(seeded):
    raw = run("create_client", "demo:vertex")[-1]
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=raw)

    body = api.get("/api/v1/pnl").json()

    assert body["netRealizedSpread"] != 0 and body["settledPairCount"] > 0
    assert body["nakedPnl"] != 0 and body["nakedSettledCount"] > 0
    assert body["unhedgedStake"] > 0


def test_seed_demo_creates_the_console_superuser_once(seeded):
    User = get_user_model()
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("admin")
    assert any("admin / admin" in line for line in seeded)

    admin.set_password("changed")
    admin.save()
    lines = run("seed_demo")
    admin.refresh_from_db()
    assert admin.check_password("changed")
    assert any("superuser exists" in line for line in lines)


def test_seed_demo_leaves_an_existing_superuser_alone(django_user_model, settings):
    settings.DEBUG = True  # where seed_demo would otherwise create admin/admin
    django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    run("seed_demo")
    assert not django_user_model.objects.filter(username="admin").exists()


def test_seeded_console_pages_render(seeded, client):
    client.login(username="admin", password="admin")
    for path in (
        "/admin/trading/order/",
        "/admin/hedging/hedgebet/",
        "/admin/trading/fixture/",
        "/admin/trading/fill/",
    ):
        assert client.get(path).status_code == 200, path


def test_seed_demo_creates_no_well_known_superuser_when_debug_is_off(settings):
    settings.DEBUG = False
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert not get_user_model().objects.filter(username="admin").exists()
    assert "no demo superuser" in out.getvalue()
