"""``/ws/subscribe``: auth, connection limits, per-client delivery, heartbeats, revocation.

Runs on the in-memory channel layer and local-memory cache by default; with ``REDIS_URL`` set the
same tests run on the Redis layer and cache, and the ``redis`` tests prove cross-process delivery
and cross-process connection limits with a second OS process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections, transaction

from tests.factories import (
    AccountFactory,
    FillFactory,
    FixtureFactory,
    HedgeBetFactory,
    OrderFactory,
    make_api_key,
)
from trading import events
from trading.consumers import CLOSE_TOO_MANY_CONNECTIONS, CLOSE_UNAUTHORIZED, ConnectionSlots
from trading.models import ApiKey, SystemTradingState
from trading.routing import websocket_urlpatterns
from trading.services.clients import api_key_revoke

pytestmark = pytest.mark.django_db(transaction=True)

ROUTER = URLRouter(websocket_urlpatterns)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
async def _close_worker_thread_db_connections():
    """Consumers and ``database_sync_to_async`` use a worker thread whose connection would outlive
    the test (CONN_MAX_AGE) and block dropping the PostgreSQL test database."""
    yield
    await database_sync_to_async(connections.close_all)()


# --- helpers ---------------------------------------------------------------------------------------------------


async def open_ws(raw_key: str | None = None, *, query: dict | None = None, app=ROUTER, headers=None):
    """Open a connection (header auth when ``raw_key`` is given); return the communicator, accepted."""
    headers = list(headers or [])
    if raw_key is not None:
        headers.append((b"x-api-key", raw_key.encode()))
    path = "/ws/subscribe" + (f"?{urlencode(query)}" if query else "")
    comm = WebsocketCommunicator(app, path, headers=headers)
    connected, _ = await comm.connect()
    assert connected
    return comm


async def subscribed(raw_key: str, **kwargs) -> WebsocketCommunicator:
    """An open stream with its welcome already read."""
    comm = await open_ws(raw_key, **kwargs)
    welcome = await comm.receive_json_from()
    assert welcome["type"] == "welcome"
    return comm


async def assert_closed_with(comm: WebsocketCommunicator, code: int, error: str) -> None:
    """The server says why in an error message, then closes with ``code``."""
    message = await comm.receive_json_from()
    assert message["type"] == "error" and message["data"]["error"] == error
    closing = await comm.receive_output()
    assert closing["type"] == "websocket.close" and closing["code"] == code
    await comm.disconnect()


async def receive_event(comm: WebsocketCommunicator, timeout: float = 1) -> dict:
    """The next frame, decoded with exact Decimals."""
    return json.loads(await comm.receive_from(timeout=timeout), parse_float=Decimal)


@database_sync_to_async
def revoke(raw_key: str) -> None:
    api_key_revoke(api_key=ApiKey.objects.get(prefix=ApiKey.parse_prefix(raw_key)))


@database_sync_to_async
def committed(fn, *args, **kwargs):
    """Run ``fn`` in a committed transaction (publish_* send on commit)."""
    with transaction.atomic():
        return fn(*args, **kwargs)


def order_event(client, **fields):
    order = OrderFactory(account=AccountFactory(client=client), **fields)
    events.publish_order(order)
    return order


def bet_event(client):
    bet = HedgeBetFactory(fill=FillFactory(order=OrderFactory(account=AccountFactory(client=client))))
    events.publish_bet(bet)
    return bet


def account_event(client):
    account = AccountFactory(client=client, balance=Decimal("1234.5678"))
    events.publish_account(account)
    return account


def trading_event(client):
    events.publish_trading_state(client, {"status": "manual_paused", "tradingActive": False})
    return client


def score_event(_client):
    fixture = FixtureFactory(participant1_score=2, participant2_score=1, period_scores={"1H": [1, 0]})
    events.publish_score(fixture)
    return fixture


def emergency_event(_client):
    state = SystemTradingState.get()
    state.emergency = True
    state.reason = "venue outage"
    state.save()
    events.publish_emergency(state)
    return state


# --- authentication ------------------------------------------------------------------------------------------------


async def test_key_in_header_is_welcomed_with_client_and_heartbeat(mm_client):
    client, raw_key = mm_client

    comm = await open_ws(raw_key)
    welcome = await comm.receive_json_from()

    assert welcome["type"] == "welcome"
    assert welcome["data"]["client"] == client.name == "demo:vertex"
    assert welcome["data"]["heartbeatSeconds"] == 25
    assert welcome["data"]["maxConnections"] == 5
    assert welcome["ts"].endswith("Z")
    await comm.disconnect()


@pytest.mark.parametrize("param", ["apiKey", "api_key"])
async def test_key_in_query_parameter_is_accepted_for_browsers(mm_client, param):
    comm = await open_ws(query={param: mm_client[1]})
    assert (await comm.receive_json_from())["type"] == "welcome"
    await comm.disconnect()


@pytest.mark.parametrize(
    "raw_key",
    [None, "", "garbage", "mm_0123456789_not-a-real-secret"],
    ids=["missing", "empty", "malformed", "unknown"],
)
async def test_bad_key_is_closed_with_4401(mm_client, raw_key):
    comm = await open_ws(raw_key)
    await assert_closed_with(comm, CLOSE_UNAUTHORIZED, "unauthorized")


async def test_right_prefix_with_wrong_secret_is_closed_with_4401(mm_client):
    prefix = ApiKey.parse_prefix(mm_client[1])
    comm = await open_ws(f"mm_{prefix}_forged-secret")
    await assert_closed_with(comm, CLOSE_UNAUTHORIZED, "unauthorized")


async def test_revoked_key_is_closed_with_4401(mm_client):
    await revoke(mm_client[1])
    comm = await open_ws(mm_client[1])
    await assert_closed_with(comm, CLOSE_UNAUTHORIZED, "unauthorized")


async def test_key_revoked_while_connected_is_closed_on_the_next_event(mm_client, settings):
    settings.MM_WS_AUTH_RECHECK_SECONDS = 0  # no grace: the very next event re-checks the key
    client, raw_key = mm_client
    comm = await subscribed(raw_key)

    await revoke(raw_key)
    await committed(order_event, client)

    # the event is not forwarded: the key is refused instead
    await assert_closed_with(comm, CLOSE_UNAUTHORIZED, "unauthorized")


async def test_key_revoked_while_connected_is_closed_at_the_next_heartbeat_without_events(mm_client, settings):
    settings.MM_WS_AUTH_RECHECK_SECONDS = 0
    settings.MM_WS_HEARTBEAT_SECONDS = 0.05
    comm = await subscribed(mm_client[1])

    await revoke(mm_client[1])

    await assert_closed_with(comm, CLOSE_UNAUTHORIZED, "unauthorized")


# --- connection limit --------------------------------------------------------------------------------------------


async def test_sixth_connection_of_a_key_is_refused_and_a_disconnect_frees_a_slot(mm_client):
    raw_key = mm_client[1]
    open_ones = [await subscribed(raw_key) for _ in range(5)]

    sixth = await open_ws(raw_key)
    await assert_closed_with(sixth, CLOSE_TOO_MANY_CONNECTIONS, "too_many_connections")

    await open_ones.pop().disconnect()
    replacement = await subscribed(raw_key)

    seventh = await open_ws(raw_key)
    await assert_closed_with(seventh, CLOSE_TOO_MANY_CONNECTIONS, "too_many_connections")
    for comm in [*open_ones, replacement]:
        await comm.disconnect()


async def test_the_limit_is_per_key_not_per_client(mm_client):
    client, raw_key = mm_client
    first_key_ones = [await subscribed(raw_key) for _ in range(5)]
    second_key = await database_sync_to_async(make_api_key)(client)

    comm = await subscribed(second_key)

    for c in [*first_key_ones, comm]:
        await c.disconnect()


async def test_slots_of_a_crashed_process_expire(mm_client):
    """A process that dies never releases its slots; their TTL frees them."""
    raw_key = mm_client[1]
    key_id = await database_sync_to_async(lambda: ApiKey.objects.get(prefix=ApiKey.parse_prefix(raw_key)).pk)()
    dead = ConnectionSlots(key_id, limit=5, ttl=1)
    for n in range(5):
        assert await dead.acquire(f"dead-process-channel-{n}") is not None

    refused = await open_ws(raw_key)
    await assert_closed_with(refused, CLOSE_TOO_MANY_CONNECTIONS, "too_many_connections")

    await asyncio.sleep(1.2)
    comm = await subscribed(raw_key)
    await comm.disconnect()


async def test_heartbeats_keep_a_live_connection_slot_beyond_its_ttl(mm_client, settings):
    settings.MM_WS_HEARTBEAT_SECONDS = 0.1  # slot TTL: 1 s, refreshed every 0.1 s
    settings.MM_WS_MAX_CONNECTIONS_PER_KEY = 1
    comm = await subscribed(mm_client[1])

    await asyncio.sleep(1.5)

    other = await open_ws(mm_client[1])
    await assert_closed_with(other, CLOSE_TOO_MANY_CONNECTIONS, "too_many_connections")
    await comm.disconnect()


# --- delivery -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "publish,event_type,to_all",
    [
        (order_event, "order", False),
        (bet_event, "bet", False),
        (account_event, "account", False),
        (trading_event, "trading", False),
        (score_event, "score", True),
        (emergency_event, "emergency", True),
    ],
    ids=["order", "bet", "account", "trading", "score", "emergency"],
)
async def test_each_event_type_reaches_its_client_only_or_everyone(
    mm_client, other_client, publish, event_type, to_all
):
    mine = await subscribed(mm_client[1])
    theirs = await subscribed(other_client[1])

    await committed(publish, mm_client[0])

    event = await receive_event(mine)
    assert event["type"] == event_type and event["ts"].endswith("Z") and isinstance(event["data"], dict)
    if to_all:
        assert await receive_event(theirs) == event
    else:
        assert await theirs.receive_nothing(timeout=0.2)
    await mine.disconnect()
    await theirs.disconnect()


async def test_another_clients_order_event_is_not_received(mm_client, other_client):
    mine = await subscribed(mm_client[1])

    await committed(order_event, other_client[0])

    assert await mine.receive_nothing(timeout=0.2)
    await mine.disconnect()


async def test_order_event_carries_the_order_row_with_exact_decimals(mm_client):
    mine = await subscribed(mm_client[1])

    order = await committed(
        order_event, mm_client[0], order_cents=Decimal("0.4537"), order_stake=Decimal("12345678901234.5678")
    )

    raw = await mine.receive_from()
    assert '"orderStake":12345678901234.5678' in raw  # a JSON number, every digit (a float would round)
    event = json.loads(raw, parse_float=Decimal)
    assert event["data"]["orderId"] == order.id
    assert event["data"]["orderCents"] == Decimal("0.4537")
    assert event["data"]["orderStatus"] == "PLACED"
    await mine.disconnect()


async def test_event_published_in_a_rolled_back_transaction_is_never_delivered(mm_client):
    client = mm_client[0]
    mine = await subscribed(mm_client[1])

    @database_sync_to_async
    def publish_then_roll_back():
        with pytest.raises(RuntimeError), transaction.atomic():
            order_event(client)
            raise RuntimeError("write failed")

    await publish_then_roll_back()
    assert await mine.receive_nothing(timeout=0.2)

    kept = await committed(order_event, client)  # the next committed event is the first one seen
    assert (await receive_event(mine))["data"]["orderId"] == kept.id
    await mine.disconnect()


async def test_a_disconnected_stream_leaves_its_groups(mm_client):
    first = await subscribed(mm_client[1])
    await first.disconnect()

    second = await subscribed(mm_client[1])
    await committed(order_event, mm_client[0])

    await receive_event(second)
    assert await second.receive_nothing(timeout=0.2)  # delivered once, not also to the dead channel
    await second.disconnect()


# --- heartbeats and client messages ------------------------------------------------------------------------------


async def test_ping_gets_pong(mm_client):
    comm = await subscribed(mm_client[1])

    await comm.send_json_to({"type": "ping"})

    pong = await comm.receive_json_from()
    assert pong["type"] == "pong" and pong["ts"].endswith("Z")
    await comm.disconnect()


@pytest.mark.parametrize(
    "frame,error",
    [
        ({"text_data": '{"type": "subscribe"}'}, "unknown_type"),
        ({"text_data": "[1, 2]"}, "unknown_type"),
        ({"text_data": "not json"}, "invalid_message"),
        ({"bytes_data": b"\x00\x01"}, "invalid_message"),
    ],
    ids=["unknown-type", "not-an-object", "not-json", "binary"],
)
async def test_anything_but_ping_gets_an_error_and_the_stream_stays_open(mm_client, frame, error):
    comm = await subscribed(mm_client[1])

    await comm.send_to(**frame)

    reply = await comm.receive_json_from()
    assert reply["type"] == "error" and reply["data"]["error"] == error
    await comm.send_json_to({"type": "ping"})
    assert (await comm.receive_json_from())["type"] == "pong"
    await comm.disconnect()


async def test_server_sends_heartbeats_at_the_configured_interval(mm_client, settings):
    settings.MM_WS_HEARTBEAT_SECONDS = 0.05
    comm = await open_ws(mm_client[1])
    welcome = await comm.receive_json_from()
    assert welcome["data"]["heartbeatSeconds"] == 0.05

    first = await comm.receive_json_from(timeout=1)
    second = await comm.receive_json_from(timeout=1)

    assert first["type"] == second["type"] == "heartbeat"
    assert first["ts"].endswith("Z") and second["ts"] >= first["ts"]
    await comm.disconnect()


# --- the full ASGI stack (origin validation) -----------------------------------------------------------------------


async def test_browser_from_an_allowed_origin_connects_through_the_asgi_app(mm_client):
    from mmsite.asgi import application

    comm = await open_ws(query={"apiKey": mm_client[1]}, app=application, headers=[(b"origin", b"http://localhost")])
    assert (await comm.receive_json_from())["type"] == "welcome"
    await comm.disconnect()


async def test_foreign_origin_is_refused_by_the_asgi_app(mm_client):
    from mmsite.asgi import application

    comm = WebsocketCommunicator(
        application,
        "/ws/subscribe",
        headers=[(b"origin", b"https://evil.example"), (b"x-api-key", mm_client[1].encode())],
    )
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()  # the refusing consumer listens on the channel layer until told the socket is gone


async def test_api_key_client_without_origin_connects_through_the_asgi_app(mm_client):
    from mmsite.asgi import application

    comm = WebsocketCommunicator(application, "/ws/subscribe", headers=[(b"x-api-key", mm_client[1].encode())])
    connected, _ = await comm.connect()
    try:
        assert connected
    finally:
        await comm.disconnect()


# --- across processes (Redis) ----------------------------------------------------------------------------------


def run_in_other_process(code: str) -> None:
    """Run ``code`` in a fresh Python process with this test run's settings and environment."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mmsite.settings.test"}
    program = "import django\ndjango.setup()\n" + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.redis
async def test_event_sent_by_another_process_reaches_this_process_stream_with_exact_decimals(mm_client):
    client = mm_client[0]
    mine = await subscribed(mm_client[1])

    await asyncio.to_thread(
        run_in_other_process,
        f"""
        from decimal import Decimal
        from trading.events import client_group, encode_json, send_event
        data = {{"orderId": 42, "orderStake": Decimal("12345678901234.5678"), "orderCents": Decimal("0.45")}}
        send_event(client_group({client.pk}), "order", encode_json(data), client_id={client.pk})
        """,
    )

    raw = await mine.receive_from(timeout=5)
    assert '"orderStake":12345678901234.5678' in raw
    event = json.loads(raw, parse_float=Decimal)
    assert event["type"] == "order" and event["data"]["orderId"] == 42
    assert event["data"]["orderCents"] == Decimal("0.45")
    await mine.disconnect()


@pytest.mark.redis
async def test_connection_limit_counts_other_processes_and_their_crashed_slots_expire(mm_client):
    raw_key = mm_client[1]
    key_id = await database_sync_to_async(lambda: ApiKey.objects.get(prefix=ApiKey.parse_prefix(raw_key)).pk)()

    # another web process takes all five slots, then dies without releasing them
    await asyncio.to_thread(
        run_in_other_process,
        f"""
        import asyncio
        from trading.consumers import ConnectionSlots
        slots = ConnectionSlots({key_id}, limit=5, ttl=2)
        for n in range(5):
            assert asyncio.run(slots.acquire(f"other-process-{{n}}")) is not None
        """,
    )

    refused = await open_ws(raw_key)
    await assert_closed_with(refused, CLOSE_TOO_MANY_CONNECTIONS, "too_many_connections")

    await asyncio.sleep(2.2)
    comm = await subscribed(raw_key)
    await comm.disconnect()


# --- the JSON boundary ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=False)
def test_encode_json_keeps_decimal_digits_and_renders_choices_and_times_plainly():
    import datetime as dt

    from trading.choices import OrderStatus

    text = events.encode_json(
        {
            "stake": Decimal("100.0000"),
            "big": Decimal("1E+2"),
            "status": OrderStatus.FILLED,
            "at": dt.datetime(2026, 11, 21, 9, 15, tzinfo=dt.UTC),
            "list": [1, True, None, "x"],
        }
    )

    assert (
        text == '{"stake":100.0000,"big":1E+2,"status":"FILLED","at":"2026-11-21T09:15:00Z","list":[1,true,null,"x"]}'
    )
    assert json.loads(text, parse_float=Decimal)["stake"] == Decimal("100.0000")


@pytest.mark.django_db(transaction=False)
@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), float("nan"), object()])
def test_encode_json_refuses_what_json_cannot_carry(value):
    with pytest.raises((TypeError, ValueError)):
        events.encode_json({"x": value})
