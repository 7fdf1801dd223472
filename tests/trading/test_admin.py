"""The operator console: every page renders, search finds rows, actions go through the services,
and credentials (exchange account secrets, API keys) never appear on a page after creation."""

from __future__ import annotations

import re
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib import admin
from django.urls import reverse
from rest_framework.test import APIClient

from exchanges.connectors.base import PlaceRequest
from exchanges.connectors.registry import get_connector
from exchanges.models import SimVenueOrder, SimVenueOrderStatus
from hedging.choices import BetStatus
from tests.factories import (
    AccountFactory,
    ClientFactory,
    FillFactory,
    FixtureFactory,
    HedgeBetFactory,
    OrderFactory,
    make_api_key,
)
from trading.choices import ControlAction, MatchedStatus, OrderStatus
from trading.models import (
    ApiKey,
    Client,
    ClientTradingState,
    ExchangeAccount,
    LiveQuote,
    Order,
    OutcomeMarket,
    PlacementAttempt,
    QuotingRule,
    SystemTradingState,
    TradingControlEvent,
)
from trading.services.pnl import pnl_days_mark, pnl_days_rebuild

pytestmark = pytest.mark.django_db

#: Apps whose every model the MM console covers (the house exchange's models get their own pages).
CONSOLE_APPS = {"trading", "hedging"}
VENUE_MODELS = {"exchanges.SimVenueOrder", "exchanges.SimVenueTrade"}
SECRET = "s3cr3t-private-key-do-not-show"


def venue_order(order: Order) -> Order:
    """Put ``order`` on the simulated venue and record the venue's id, as placement does."""
    placed = get_connector(order.exchange).place(
        PlaceRequest(
            client_order_id=order.client_order_id,
            account=order.account.username,
            market=order.exchange_outcome_id,
            side=order.side,
            price=order.order_cents,
            size=order.order_stake,
        )
    )
    Order.objects.filter(pk=order.pk).update(exchange_order_id=placed.venue_order_id)
    order.refresh_from_db()
    return order


def open_venue_orders(client: Client) -> int:
    usernames = list(client.accounts.values_list("username", flat=True))
    return SimVenueOrder.objects.filter(account__in=usernames, status=SimVenueOrderStatus.OPEN).count()


@pytest.fixture
def data(db):
    """One of everything the console lists, linked as the engine links them."""
    client = ClientFactory(name="demo:vertex", display_name="Demo Client")
    account = AccountFactory(client=client, username="0xdemo")
    account.set_credentials({"private_key": SECRET})
    account.save()
    fixture = FixtureFactory(participant1_name="Arsenal", participant2_name="Chelsea")
    open_orders = [
        venue_order(OrderFactory(account=account, fixture=fixture, exchange_order_id=None, outcome_id=o))
        for o in (111, 112)
    ]
    filled = OrderFactory(
        account=account,
        fixture=fixture,
        order_status=OrderStatus.FILLED,
        matched_status=MatchedStatus.FULLY_MATCHED,
        matched_stake=Decimal("100"),
    )
    venue_order(filled)
    trade = get_connector(filled.exchange).match(venue_order_id=filled.exchange_order_id, size=filled.order_stake)
    fill = FillFactory(order=filled, venue_trade_id=trade.trade_id)
    bet = HedgeBetFactory(fill=fill)
    key = make_api_key(client)
    TradingControlEvent.objects.create(client=None, action=ControlAction.SYSTEM_PAUSE, actor="admin:x", reason="t")
    TradingControlEvent.objects.create(client=client, action=ControlAction.PAUSE, actor="api:abc", reason="")
    SystemTradingState.get()
    pnl_days_rebuild()  # a PnL rollup row ...
    pnl_days_mark()  # ... and its stale marker
    from hedging.connectors.simulated import SimulatedBookmaker  # the simulated bookmaker's own bet

    SimulatedBookmaker().place_bet(
        idempotency_key=bet.idempotency_key,
        bookmaker="vertex",
        selection=f"{fixture.fixture_id}:{filled.outcome_id}:0:not",
        price=bet.placed_price,
        stake=bet.placed_stake,
        accept_price_drift=Decimal("0.01"),
    )
    OutcomeMarket.objects.create(fixture=fixture, outcome_id=111, exchange=account.exchange, exchange_outcome_id="tok1")
    QuotingRule.objects.create(account=account, tournament=fixture.tournament)
    LiveQuote.objects.create(
        client=client, account=account, fixture=fixture, outcome_id=111, order=open_orders[0], seq=1
    )
    PlacementAttempt.objects.create(order=open_orders[0], sent=1)
    return {
        "client": client,
        "account": account,
        "fixture": fixture,
        "open_orders": open_orders,
        "filled": filled,
        "fill": fill,
        "bet": bet,
        "raw_key": key,
    }


def console_models():
    return [m for m in admin.site._registry if m._meta.app_label in CONSOLE_APPS or m._meta.label in VENUE_MODELS]


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def act(admin_client, model, action: str, ids, **extra):
    return admin_client.post(
        url(model, "changelist"), {"action": action, "_selected_action": [str(i) for i in ids], **extra}, follow=True
    )


# --- every page renders -------------------------------------------------------------------------------------


def test_every_console_model_is_registered():
    registered = {m._meta.label for m in console_models()}
    from django.apps import apps

    expected = {m._meta.label for app in CONSOLE_APPS for m in apps.get_app_config(app).get_models()}
    assert expected | VENUE_MODELS <= registered


def test_every_changelist_renders_for_a_superuser(admin_client, data):
    for model in console_models():
        resp = admin_client.get(url(model, "changelist"), follow=True)
        assert resp.status_code == 200, model
        assert model._meta.verbose_name.lower() in resp.content.decode().lower(), model


def test_every_change_page_renders_for_a_superuser(admin_client, data):
    for model in console_models():
        obj = model._default_manager.order_by("pk").first()
        assert obj is not None, f"test data has no {model.__name__}"
        resp = admin_client.get(url(model, "change", obj.pk))
        assert resp.status_code == 200, model


def test_add_pages_render_where_adding_is_allowed(admin_client, data):
    for model in (Client, ExchangeAccount, ApiKey):
        assert admin_client.get(url(model, "add")).status_code == 200


def test_engine_state_cannot_be_added_or_edited_from_the_console(admin_client, data):
    order = data["filled"]
    assert admin_client.get(url(Order, "add")).status_code == 403
    resp = admin_client.post(url(Order, "change", order.pk), {"order_status": "CANCELLED", "matched_stake": "0"})
    assert resp.status_code == 403
    order.refresh_from_db()
    assert order.order_status == OrderStatus.FILLED and order.matched_stake == Decimal("100")


@pytest.mark.parametrize(
    "model,query,expected",
    [
        (Order, "mm-test", None),  # not an exact id: no match, no error
        (Client, "demo", 1),
        (ExchangeAccount, "0xdemo", 1),
    ],
)
def test_search_finds_rows(admin_client, data, model, query, expected):
    resp = admin_client.get(url(model, "changelist"), {"q": query})
    assert resp.status_code == 200
    if expected is not None:
        assert resp.context["cl"].result_count == expected


def test_order_search_by_client_order_id_fixture_and_venue_id(admin_client, data):
    order = data["open_orders"][0]
    for q in (order.client_order_id, order.exchange_order_id, str(order.pk)):
        resp = admin_client.get(url(Order, "changelist"), {"q": q})
        assert [o.pk for o in resp.context["cl"].result_list] == [order.pk], q
    resp = admin_client.get(url(Order, "changelist"), {"q": data["fixture"].fixture_id})
    assert resp.context["cl"].result_count == 3


def test_bet_and_fill_search_by_venue_trade_id(admin_client, data):
    from hedging.models import HedgeBet
    from trading.models import Fill

    trade = data["fill"].venue_trade_id
    assert admin_client.get(url(Fill, "changelist"), {"q": trade}).context["cl"].result_count == 1
    assert admin_client.get(url(HedgeBet, "changelist"), {"q": trade}).context["cl"].result_count == 1


def test_changelist_query_counts_do_not_grow_with_rows(admin_client, data):
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_per_list() -> dict[str, int]:
        counts = {}
        for model in console_models():
            with CaptureQueriesContext(connection) as ctx:
                assert admin_client.get(url(model, "changelist"), follow=True).status_code == 200
            counts[model.__name__] = len(ctx)
        return counts

    few = queries_per_list()
    call_command("seed_demo", stdout=StringIO())  # dozens of rows of every kind
    many = queries_per_list()

    for name, n in many.items():
        assert n <= few[name] + 2, f"{name}: {few[name]} queries with a few rows, {n} with many"


# --- client controls -------------------------------------------------------------------------------------------


def test_pause_and_resume_actions_call_the_service_with_the_admin_as_actor(admin_client, data, admin_user):
    client = data["client"]

    act(admin_client, Client, "pause_clients", [client.pk])

    state = ClientTradingState.objects.get(client=client)
    assert state.manual_paused is True
    event = TradingControlEvent.objects.filter(client=client).first()
    assert (event.action, event.actor) == (ControlAction.PAUSE, f"admin:{admin_user.username}")
    assert open_venue_orders(client) == 2  # a pause keeps resting orders

    act(admin_client, Client, "resume_clients", [client.pk])
    state.refresh_from_db()
    assert state.manual_paused is False


def test_stop_action_leaves_no_open_order_at_the_venue(admin_client, data):
    client = data["client"]
    assert open_venue_orders(client) == 2

    resp = act(admin_client, Client, "stop_clients", [client.pk])

    assert resp.status_code == 200
    assert open_venue_orders(client) == 0
    assert not Order.objects.for_client(client).open().exists()
    assert ClientTradingState.objects.get(client=client).manual_stopped is True
    assert "Stopped: demo:vertex" in resp.content.decode()

    act(admin_client, Client, "start_clients", [client.pk])
    assert ClientTradingState.objects.get(client=client).manual_stopped is False


def test_client_list_shows_the_derived_trading_status(admin_client, data):
    ClientTradingState.objects.filter(client=data["client"]).update(manual_stopped=True)
    assert "manual_stopped" in admin_client.get(url(Client, "changelist")).content.decode()


def test_adding_a_client_creates_its_bookmaker_and_trading_state(admin_client, db):
    resp = admin_client.post(
        url(Client, "add"), {"name": "acme:pinnacle", "display_name": "Acme", "odds_format": "decimal"}, follow=True
    )
    assert resp.status_code == 200
    client = Client.objects.get(name="acme:pinnacle")
    assert client.hedge_bookmaker.name == "pinnacle"
    assert ClientTradingState.objects.filter(client=client).exists()


# --- order cancel ----------------------------------------------------------------------------------------------


def test_cancel_action_cancels_open_orders_at_the_venue_and_skips_closed_ones(admin_client, data):
    target = data["open_orders"][0]
    filled = data["filled"]

    resp = act(admin_client, Order, "cancel_orders", [target.pk, filled.pk])

    target.refresh_from_db()
    filled.refresh_from_db()
    assert target.order_status == OrderStatus.CANCELLED
    assert SimVenueOrder.objects.get(client_order_id=target.client_order_id).status == SimVenueOrderStatus.CANCELLED
    assert filled.order_status == OrderStatus.FILLED
    assert data["open_orders"][1].__class__.objects.get(pk=data["open_orders"][1].pk).order_status == "PLACED"
    body = resp.content.decode()
    assert f"Not open, nothing to cancel: {filled.pk}" in body


# --- system controls ----------------------------------------------------------------------------------------------


def control(admin_client, action: str, reason: str = ""):
    return admin_client.post(
        reverse("admin:trading_systemtradingstate_control", args=[1]), {"action": action, "reason": reason}, follow=True
    )


def test_system_page_shows_state_and_buttons(admin_client, data):
    resp = admin_client.get(url(SystemTradingState, "changelist"), follow=True)
    body = resp.content.decode()
    assert resp.status_code == 200
    assert "live (no system-wide block)" in body
    for value in ("system_pause", "system_stop", "system_resume", "emergency_on", "emergency_off"):
        assert f'value="{value}"' in body


def test_system_pause_then_resume(admin_client, data, admin_user):
    control(admin_client, "system_pause", "maintenance")
    system = SystemTradingState.get()
    assert system.paused and system.reason == "maintenance"
    assert open_venue_orders(data["client"]) == 2
    event = TradingControlEvent.objects.filter(client__isnull=True).first()
    assert (event.action, event.actor) == (ControlAction.SYSTEM_PAUSE, f"admin:{admin_user.username}")

    control(admin_client, "system_resume")
    assert not SystemTradingState.get().paused


def test_system_stop_cancels_every_open_order(admin_client, data):
    other = AccountFactory(client=ClientFactory(name="acme:pinnacle"))
    venue_order(OrderFactory(account=other, exchange_order_id=None))

    resp = control(admin_client, "system_stop", "venue outage")

    assert "System stopped" in resp.content.decode()
    assert SystemTradingState.get().stopped
    assert not Order.objects.open().exists()
    assert not SimVenueOrder.objects.filter(status=SimVenueOrderStatus.OPEN).exists()


def test_emergency_on_and_off(admin_client, data):
    resp = control(admin_client, "emergency_on", "drill")
    assert SystemTradingState.get().emergency
    assert not Order.objects.open().exists()
    assert "emergency" in resp.content.decode()

    control(admin_client, "emergency_off")
    assert not SystemTradingState.get().emergency


def test_system_control_refuses_get_and_unknown_actions(admin_client, data):
    assert admin_client.get(reverse("admin:trading_systemtradingstate_control", args=[1])).status_code == 405
    resp = control(admin_client, "explode")
    assert "Unknown action" in resp.content.decode()
    system = SystemTradingState.get()
    assert not (system.paused or system.stopped or system.emergency)


def test_system_control_needs_the_change_permission(client, data, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_systemtradingstate"))
    client.force_login(user)

    assert (
        client.post(
            reverse("admin:trading_systemtradingstate_control", args=[1]), {"action": "system_stop"}
        ).status_code
        == 403
    )
    assert not SystemTradingState.get().stopped


# --- API keys ------------------------------------------------------------------------------------------------------


def test_creating_a_key_shows_it_once_and_stores_only_its_hash(admin_client, data):
    client = data["client"]

    resp = admin_client.post(url(ApiKey, "add"), {"client": client.pk, "name": "ops"})

    assert resp.status_code == 200
    assert "no-store" in resp["Cache-Control"]
    raw = re.search(r"mm_[0-9a-f]{10}_[A-Za-z0-9_-]+", resp.content.decode()).group(0)
    key = ApiKey.objects.get(client=client, name="ops")
    assert key.key_hash == ApiKey.hash_key(raw)
    assert raw not in {key.prefix, key.key_hash, key.name}
    # the key works ...
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=raw)
    assert api.get("/api/v1/me").json()["client"] == "demo:vertex"
    # ... and is never shown again
    for page in (url(ApiKey, "change", key.pk), url(ApiKey, "changelist"), url(Client, "change", client.pk)):
        body = admin_client.get(page).content.decode()
        assert raw not in body and key.key_hash not in body


def test_key_list_shows_prefix_client_and_usage_but_no_hash(admin_client, data):
    key = ApiKey.objects.get(client=data["client"])
    body = admin_client.get(url(ApiKey, "changelist")).content.decode()
    assert f"mm_{key.prefix}_" in body and "demo:vertex" in body
    assert key.key_hash not in body and data["raw_key"] not in body


def test_revoke_action_revokes_and_the_key_stops_working(admin_client, data):
    key = ApiKey.objects.get(client=data["client"])

    act(admin_client, ApiKey, "revoke_keys", [key.pk])

    key.refresh_from_db()
    assert key.revoked_at is not None
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=data["raw_key"])
    assert api.get("/api/v1/me").status_code == 401


def test_keys_cannot_be_deleted_only_revoked(admin_client, data):
    key = ApiKey.objects.get(client=data["client"])
    assert admin_client.post(url(ApiKey, "delete", key.pk), {"post": "yes"}).status_code == 403
    assert ApiKey.objects.filter(pk=key.pk).exists()


# --- exchange account credentials ----------------------------------------------------------------------------------


def account_form(account: ExchangeAccount | None = None, **overrides) -> dict:
    base = {
        "client": account.client_id if account else None,
        "exchange": account.exchange if account else "kalshi",
        "username": account.username if account else "kalshi-ops",
        "active": "on",
        "max_outcome_stake": "1000",
        "balance": "0",
        "credentials": "",
    }
    return {**base, **overrides}


def test_credentials_are_never_rendered_neither_plain_nor_encrypted(admin_client, data):
    account = data["account"]
    ciphertext = account.credentials_encrypted
    assert ciphertext

    for page in (url(ExchangeAccount, "change", account.pk), url(ExchangeAccount, "changelist")):
        body = admin_client.get(page).content.decode()
        assert SECRET not in body
        assert ciphertext not in body and ciphertext[:40] not in body
    body = admin_client.get(url(ExchangeAccount, "change", account.pk)).content.decode()
    assert "credentials set" in body.lower() and 'alt="True"' in body


def test_new_credentials_are_encrypted_and_an_empty_field_keeps_them(admin_client, data):
    client = data["client"]
    resp = admin_client.post(
        url(ExchangeAccount, "add"),
        account_form(client=client.pk, credentials='{"key_id": "k1", "private_key_pem": "PEM-SECRET"}'),
    )
    assert resp.status_code == 302
    account = ExchangeAccount.objects.get(username="kalshi-ops")
    assert "PEM-SECRET" not in account.credentials_encrypted
    assert account.get_credentials() == {"key_id": "k1", "private_key_pem": "PEM-SECRET"}

    admin_client.post(url(ExchangeAccount, "change", account.pk), account_form(account, max_outcome_stake="500"))
    account.refresh_from_db()
    assert account.max_outcome_stake == Decimal("500")
    assert account.get_credentials()["private_key_pem"] == "PEM-SECRET"

    admin_client.post(url(ExchangeAccount, "change", account.pk), account_form(account, clear_credentials="on"))
    account.refresh_from_db()
    assert not account.has_credentials


def test_a_form_error_does_not_echo_the_submitted_secret(admin_client, data):
    account = data["account"]
    resp = admin_client.post(
        url(ExchangeAccount, "change", account.pk),
        account_form(account, max_outcome_stake="-1", credentials='{"private_key": "NEW-SECRET-VALUE"}'),
    )
    assert resp.status_code == 200  # shown again with errors
    assert "NEW-SECRET-VALUE" not in resp.content.decode()
    account.refresh_from_db()
    assert account.get_credentials() == {"private_key": SECRET}


def test_credentials_must_be_a_json_object(admin_client, data):
    account = data["account"]
    for bad in ("not json SECRETX", "[1, 2]", "{}"):
        resp = admin_client.post(url(ExchangeAccount, "change", account.pk), account_form(account, credentials=bad))
        assert resp.status_code == 200
        assert resp.context["adminform"].form.errors["credentials"]
        assert "SECRETX" not in resp.content.decode()
    account.refresh_from_db()
    assert account.get_credentials() == {"private_key": SECRET}


def test_hedge_bet_page_is_read_only(admin_client, data):
    from hedging.models import HedgeBet

    bet = data["bet"]
    resp = admin_client.post(url(HedgeBet, "change", bet.pk), {"bet_status": "declined"})
    assert resp.status_code == 403
    bet.refresh_from_db()
    assert bet.bet_status == BetStatus.PLACED
