"""Trading controls: the status the client sees, what each control does to resting orders, the
audit trail, and concurrent transitions (PostgreSQL)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.test import override_settings

from exchanges.choices import Exchange
from exchanges.connectors.registry import get_connector
from exchanges.connectors.simulated import SimulatedVenueConnector
from tests.factories import AccountFactory, ClientFactory, FixtureFactory, OrderFactory, place_resting_order
from trading.choices import ControlAction, OrderStatus
from trading.events import client_group
from trading.models import ClientTradingState, Order, SystemTradingState, TradingControlEvent
from trading.selectors.controls import trading_allowed, trading_status
from trading.services import controls

pytestmark = pytest.mark.django_db

STATUS_FIELDS = [
    "client",
    "clientName",
    "oddsFormat",
    "status",
    "tradingActive",
    "manualPaused",
    "manualStopped",
    "systemTradingBlocked",
    "emergencyActive",
    "systemStopped",
    "softPaused",
]


def venue_open(order: Order) -> list[str]:
    """Venue order ids still resting for the order's account."""
    return [o.venue_order_id for o in get_connector(order.exchange).open_orders(account=order.account.username)]


def set_flags(client, *, system: dict | None = None, **client_flags) -> None:
    ClientTradingState.objects.filter(client=client).update(**client_flags)
    SystemTradingState.get()
    SystemTradingState.objects.filter(pk=1).update(**(system or {}))


def events(client=None) -> list[tuple[str, str]]:
    return list(TradingControlEvent.objects.filter(client=client).order_by("id").values_list("action", "actor"))


# --- status derivation -------------------------------------------------------------------------------------


def test_a_fresh_client_is_live_with_the_seeds_eleven_fields(api):
    resp = api.get("/api/v1/trading/status")

    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == STATUS_FIELDS
    assert body == {
        "client": "demo:vertex",
        "clientName": "Demo Client",
        "oddsFormat": "decimal",
        "status": "live",
        "tradingActive": True,
        "manualPaused": False,
        "manualStopped": False,
        "systemTradingBlocked": False,
        "emergencyActive": False,
        "systemStopped": False,
        "softPaused": False,
    }
    assert not SystemTradingState.objects.exists(), "reading the status must not write"


@pytest.mark.parametrize(
    "client_flags,system,status,blocked,system_stopped",
    [
        ({"soft_paused": True}, {}, "soft_paused", False, False),
        ({"manual_paused": True}, {}, "manual_paused", False, False),
        ({"manual_paused": True, "soft_paused": True}, {}, "manual_paused", False, False),
        ({"manual_stopped": True, "manual_paused": True, "soft_paused": True}, {}, "manual_stopped", False, False),
        ({}, {"paused": True}, "system_stopped", True, False),
        ({"manual_stopped": True}, {"paused": True}, "system_stopped", True, False),
        ({"manual_paused": True}, {"stopped": True}, "system_stopped", True, True),
        ({}, {"paused": True, "stopped": True}, "system_stopped", True, True),
        ({}, {"emergency": True}, "emergency", False, False),
        ({"manual_stopped": True}, {"emergency": True, "stopped": True}, "emergency", True, True),
    ],
)
def test_status_follows_the_documented_precedence(
    api, mm_client, client_flags, system, status, blocked, system_stopped
):
    client, _ = mm_client
    set_flags(client, system=system, **client_flags)

    body = api.get("/api/v1/trading/status").json()

    assert body["status"] == status
    assert body["tradingActive"] is False
    assert body["systemTradingBlocked"] is blocked
    assert body["systemStopped"] is system_stopped
    assert body["emergencyActive"] is bool(system.get("emergency"))
    assert body["manualPaused"] is bool(client_flags.get("manual_paused"))
    assert body["manualStopped"] is bool(client_flags.get("manual_stopped"))
    assert body["softPaused"] is bool(client_flags.get("soft_paused"))
    assert trading_allowed(client=client) is False


def test_trading_is_allowed_only_when_live(mm_client):
    client, _ = mm_client
    assert trading_allowed(client=client) is True
    controls.soft_pause(client=client, reason="exposure limit")
    assert trading_allowed(client=client) is False
    controls.soft_resume(client=client)
    assert trading_allowed(client=client) is True


# --- client controls through the API --------------------------------------------------------------------------


def test_pause_keeps_resting_orders_and_records_who_paused(api, mm_client):
    client, key = mm_client
    order = place_resting_order(account=AccountFactory(client=client))

    resp = api.post("/api/v1/trading/pause", {"reason": "lunch"}, format="json")

    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == STATUS_FIELDS
    assert body["status"] == "manual_paused" and body["manualPaused"] is True and body["tradingActive"] is False
    order.refresh_from_db()
    assert order.order_status == OrderStatus.PLACED
    assert venue_open(order) == [order.exchange_order_id]
    event = TradingControlEvent.objects.get(client=client)
    assert (event.action, event.actor, event.reason) == ("pause", f"api:{key[3:13]}", "lunch")
    assert event.created_at is not None


def test_pausing_twice_is_still_paused_with_one_event(api, mm_client):
    client, _ = mm_client
    api.post("/api/v1/trading/pause")
    resp = api.post("/api/v1/trading/pause")

    assert resp.json()["status"] == "manual_paused"
    assert [a for a, _ in events(client)] == ["pause"]


def test_resume_after_pause_is_live_again(api, mm_client):
    client, _ = mm_client
    api.post("/api/v1/trading/pause")

    body = api.post("/api/v1/trading/resume").json()

    assert body["status"] == "live" and body["tradingActive"] is True
    assert [a for a, _ in events(client)] == ["pause", "resume"]


def test_stop_leaves_zero_open_orders_on_every_venue_when_it_returns(api, mm_client):
    client, _ = mm_client
    poly = AccountFactory(client=client, exchange=Exchange.POLYMARKET)
    kalshi = AccountFactory(client=client, exchange=Exchange.KALSHI)
    orders = [place_resting_order(account=poly), place_resting_order(account=poly), place_resting_order(account=kalshi)]
    never_sent = OrderFactory(account=poly, order_status=OrderStatus.PENDING_PLACEMENT, exchange_order_id=None)
    filled = OrderFactory(account=poly, order_status=OrderStatus.FILLED)

    resp = api.post("/api/v1/trading/stop")

    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "manual_stopped" and body["manualStopped"] is True
    assert body["cancelled"] == 4 and sorted(body["orderIds"]) == sorted([o.id for o in orders] + [never_sent.id])
    assert body["failed"] == []
    assert get_connector("polymarket").open_orders(account=poly.username) == []
    assert get_connector("kalshi").open_orders(account=kalshi.username) == []
    assert not Order.objects.for_client(client).open().exists()
    filled.refresh_from_db()
    assert filled.order_status == OrderStatus.FILLED
    assert [a for a, _ in events(client)] == ["stop"]


def test_start_clears_the_stop_but_not_a_pause(api, mm_client):
    client, _ = mm_client
    api.post("/api/v1/trading/pause")
    api.post("/api/v1/trading/stop")

    body = api.post("/api/v1/trading/start").json()

    assert body["status"] == "manual_paused" and body["manualStopped"] is False
    assert api.post("/api/v1/trading/resume").json()["status"] == "live"
    assert [a for a, _ in events(client)] == ["pause", "stop", "start", "resume"]


def test_stop_does_not_touch_another_clients_orders(api, mm_client, other_client):
    theirs = place_resting_order(account=AccountFactory(client=other_client[0]))

    api.post("/api/v1/trading/stop")

    theirs.refresh_from_db()
    assert theirs.order_status == OrderStatus.PLACED
    assert venue_open(theirs) == [theirs.exchange_order_id]


def test_a_reason_longer_than_the_audit_log_keeps_is_400_naming_it(api, mm_client):
    resp = api.post("/api/v1/trading/pause", {"reason": "x" * 256}, format="json")

    assert resp.status_code == 400
    assert resp.json()["parameter"] == "reason"
    assert trading_status(client=mm_client[0])["status"] == "live"


@pytest.mark.parametrize(
    "path", ["trading/pause", "trading/resume", "trading/stop", "trading/start", "orders/cancel-all", "orders/1/cancel"]
)
def test_get_on_a_post_only_endpoint_is_405_json(api, path):
    resp = api.get(f"/api/v1/{path}")

    assert resp.status_code == 405
    assert resp.json()["error"] == "method_not_allowed"


def test_controls_need_an_api_key(client):
    assert client.post("/api/v1/trading/stop").status_code == 401


def test_a_transition_is_pushed_to_the_clients_stream_after_commit(mm_client, django_capture_on_commit_callbacks):
    client, _ = mm_client
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(client_group(client.id), channel)

    with django_capture_on_commit_callbacks(execute=True):
        controls.client_pause(client=client, actor="admin:ops")

    message = async_to_sync(layer.receive)(channel)
    assert "trading" in str(message) and "manual_paused" in str(message)


# --- soft pause -----------------------------------------------------------------------------------------------


def test_soft_pause_keeps_orders_and_its_first_reason(mm_client):
    client, _ = mm_client
    order = place_resting_order(account=AccountFactory(client=client))

    controls.soft_pause(client=client, reason="exposure limit")
    controls.soft_pause(client=client, reason="something else")

    state = ClientTradingState.objects.get(client=client)
    assert state.soft_paused and state.soft_pause_reason == "exposure limit"
    assert trading_status(client=client)["status"] == "soft_paused"
    assert venue_open(order) == [order.exchange_order_id]
    assert events(client) == [("soft_pause", "system")]
    controls.soft_resume(client=client)
    assert trading_status(client=client)["status"] == "live"
    assert ClientTradingState.objects.get(client=client).soft_pause_reason == ""


# --- system-wide ----------------------------------------------------------------------------------------------


def test_system_pause_blocks_every_client_and_keeps_their_orders(api, mm_client, other_client):
    theirs = place_resting_order(account=AccountFactory(client=other_client[0]))

    controls.system_pause(actor="admin:ops", reason="feed outage")

    body = api.get("/api/v1/trading/status").json()
    assert (body["status"], body["systemTradingBlocked"], body["systemStopped"]) == ("system_stopped", True, False)
    assert trading_allowed(client=other_client[0]) is False
    assert venue_open(theirs) == [theirs.exchange_order_id]
    assert events(None) == [("system_pause", "admin:ops")]
    controls.system_resume(actor="admin:ops")
    assert api.get("/api/v1/trading/status").json()["status"] == "live"


def test_system_stop_cancels_every_clients_orders_and_resume_clears_it(mm_client, other_client):
    mine = place_resting_order(account=AccountFactory(client=mm_client[0]))
    theirs = place_resting_order(account=AccountFactory(client=other_client[0], exchange=Exchange.BETFAIR))

    report = controls.system_stop(actor="admin:ops", reason="venue incident")

    assert sorted(report.cancelled) == sorted([mine.id, theirs.id]) and report.ok
    assert venue_open(mine) == [] and venue_open(theirs) == []
    assert trading_status(client=other_client[0])["systemStopped"] is True
    assert SystemTradingState.get().reason == "venue incident"
    controls.system_resume(actor="admin:ops")
    assert trading_status(client=other_client[0])["status"] == "live"
    assert SystemTradingState.get().reason == ""
    assert [a for a, _ in events(None)] == ["system_stop", "system_resume"]


def test_emergency_cancels_every_clients_orders_and_blocks_all_until_cleared(api, mm_client, other_client):
    mine = [place_resting_order(account=AccountFactory(client=mm_client[0])) for _ in range(2)]
    theirs = place_resting_order(account=AccountFactory(client=other_client[0], exchange=Exchange.KALSHI))
    pending = OrderFactory(
        account=AccountFactory(client=other_client[0]),
        order_status=OrderStatus.PENDING_PLACEMENT,
        exchange_order_id=None,
    )

    report = controls.emergency_on(actor="admin:ops", reason="red button")

    assert sorted(report.cancelled) == sorted([o.id for o in [*mine, theirs, pending]])
    assert not Order.objects.open().exists()
    assert all(venue_open(o) == [] for o in [*mine, theirs])
    for c in (mm_client[0], other_client[0]):
        status = trading_status(client=c)
        assert status["status"] == "emergency" and status["emergencyActive"] is True and not status["tradingActive"]
        assert trading_allowed(client=c) is False
    # a client cannot start its way out of an emergency
    assert api.post("/api/v1/trading/start").json()["status"] == "emergency"
    assert TradingControlEvent.objects.get(action=ControlAction.EMERGENCY_ON).client is None

    controls.emergency_off(actor="admin:ops")
    assert trading_status(client=mm_client[0])["status"] == "live"
    assert [a for a, _ in events(None)] == ["emergency_on", "emergency_off"]


def test_emergency_off_leaves_a_separate_system_stop_in_place(mm_client):
    controls.system_stop(actor="admin:ops", reason="maintenance")
    controls.emergency_on(actor="admin:ops", reason="red button")

    controls.emergency_off(actor="admin:ops")

    assert trading_status(client=mm_client[0])["status"] == "system_stopped"
    assert SystemTradingState.get().reason == "red button"


def test_repeated_system_transitions_record_one_event(mm_client):
    controls.system_pause(actor="admin:a")
    controls.system_pause(actor="admin:b")
    controls.system_resume(actor="admin:a")
    controls.system_resume(actor="admin:b")
    controls.emergency_off(actor="admin:a")

    assert events(None) == [("system_pause", "admin:a"), ("system_resume", "admin:a")]


# --- concurrency (PostgreSQL, real parallel connections) ------------------------------------------------------


class CountingVenue(SimulatedVenueConnector):
    """The simulated venue, counting every cancel request it receives per venue order id."""

    calls: Counter = Counter()
    lock = threading.Lock()

    def cancel(self, *, account, venue_order_id):
        with self.lock:
            self.calls[venue_order_id] += 1
        return super().cancel(account=account, venue_order_id=venue_order_id)


def run_in_parallel(*fns):
    """Run each fn in its own thread (own DB connection), released together; return results."""
    barrier = threading.Barrier(len(fns))
    results: list = [None] * len(fns)
    errors: list = []

    def run(i, fn):
        try:
            barrier.wait()
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - surfaced in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@override_settings(VENUE_CONNECTORS={"*": "tests.trading.test_controls.CountingVenue"})
def test_concurrent_stops_and_cancel_all_cancel_each_venue_order_exactly_once():
    CountingVenue.calls.clear()
    client = ClientFactory(name="race:vertex")
    accounts = [AccountFactory(client=client, exchange=e) for e in (Exchange.POLYMARKET, Exchange.KALSHI)]
    fixture = FixtureFactory()
    orders = [place_resting_order(account=accounts[i % 2], fixture=fixture) for i in range(12)]

    reports = run_in_parallel(
        lambda: controls.client_stop(client=client, actor="api:one"),
        lambda: controls.client_stop(client=client, actor="api:two"),
        lambda: controls.orders_cancel_all(client=client, actor="api:three"),
    )

    venue_ids = [o.exchange_order_id for o in orders]
    assert {v: CountingVenue.calls[v] for v in venue_ids} == {v: 1 for v in venue_ids}
    cancelled = [i for r in reports for i in r.cancelled]
    assert sorted(cancelled) == sorted(o.id for o in orders), "each order reported cancelled by exactly one caller"
    assert all(r.ok for r in reports)
    assert set(Order.objects.filter(client=client).values_list("order_status", flat=True)) == {OrderStatus.CANCELLED}
    assert all(get_connector(a.exchange).open_orders(account=a.username) == [] for a in accounts)
    assert [a for a, _ in events(client)] == ["stop"]
    assert ClientTradingState.objects.get(client=client).manual_stopped is True


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_pauses_and_emergencies_each_record_one_transition():
    client = ClientFactory(name="race2:vertex")

    run_in_parallel(
        *[lambda: controls.client_pause(client=client, actor="api:x") for _ in range(3)],
        *[lambda: controls.emergency_on(actor="admin:ops") for _ in range(3)],
    )

    assert [a for a, _ in events(client)] == ["pause"]
    assert [a for a, _ in events(None)] == ["emergency_on"]
    assert trading_status(client=client)["status"] == "emergency"
