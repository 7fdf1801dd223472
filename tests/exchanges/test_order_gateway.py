"""The order gateway (exchanges/api/gateway.py): place and cancel answered beside Django, batched per book.

Every request goes through the real ASGI application (``mmsite.asgi.application``) over httpx's ASGI
transport, so the gateway's event-loop side, its threads (with their own database connections) and
Django's views all run as under daphne. On PostgreSQL: the gateway is on there by default, and its
batches are real transactions on real parallel connections.
"""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal as D

import httpx
import pytest
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from exchanges.api import gateway as gw
from exchanges.errors import ExchangeError
from exchanges.ledger.choices import OPEN_HOLD_STATUSES
from exchanges.models import ExchangeOrder, Hold, LedgerAccount
from exchanges.services import matching
from exchanges.services import orders as svc
from exchanges.services.traders import trader_key_create

from .conftest import make_market, make_trader

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BASE = "/api/v1/exchange"
UNLIMITED = {
    tier: {
        "public_per_minute": 10**6,
        "authenticated_per_minute": 10**6,
        "orders_per_second_per_pair": 10**6,
        "orders_per_minute": 10**6,
    }
    for tier in ("standard", "market_maker")
}


@pytest.fixture(autouse=True)
def _limits(settings):
    """These tests are about answers and batching, not the rate limits (one test below sets its own)."""
    settings.EXCHANGE_RATE_LIMITS = UNLIMITED


@pytest.fixture(autouse=True)
def _gateway_connections_closed():
    """The gateway's threads outlive a test; their database connections must not (the test database is
    flushed and finally dropped)."""
    yield
    if gw._GATEWAY is not None:
        gw._GATEWAY.close_connections()


@pytest.fixture
def frozen_clock(monkeypatch):
    """Every request of a test falls in one rate-limit window."""
    import exchanges.api.throttling as x
    import mmsite.api.throttling as m

    t = [1_800_000_000.2]
    monkeypatch.setattr(x.time, "time", lambda: t[0])
    monkeypatch.setattr(m.time, "time", lambda: t[0])
    return t


def _app():
    from mmsite.asgi import application

    return application


class Client:
    """One trader's HTTP client on the ASGI app (X-API-Key), warmed so the gateway knows its key."""

    def __init__(self, trader, key: str):
        self.trader, self.key = trader, key

    def http(self, **headers) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=_app()),
            base_url="http://testserver",
            headers={"X-API-Key": self.key, **headers},
            timeout=30,
        )


def client_for(trader) -> Client:
    return Client(trader, trader_key_create(trader=trader)[1])


async def warm(c: Client, symbol: str) -> None:
    """A request through Django's own view: the process's key cache learns the key."""
    async with c.http() as http:
        r = await http.get(f"{BASE}/{symbol}/orders/open")
        assert r.status_code == 200, r.text


def handled() -> int:
    return gw.gateway().requests


IDS = re.compile(r"ord_[0-9a-f]+|vaix-live-\d+|vaix-paper-\d+|\d{4}-\d\d-\d\dT[0-9:.]+Z")


def norm(r: httpx.Response) -> tuple:
    """Status, body with ids and times masked, and the headers a client acts on."""
    return (
        r.status_code,
        IDS.sub("<x>", r.text),
        r.headers.get("content-type"),
        r.headers.get("retry-after"),
    )


async def scenario(c: Client, other: Client, symbol: str) -> list[tuple]:
    """The same requests, good and bad, in order; the answers normalised."""
    out = []
    async with c.http() as http, other.http() as ohttp:

        async def place(body, h=http, sym=symbol):
            r = await h.post(f"{BASE}/{sym}/orders", json=body)
            out.append(norm(r))
            return r

        async def cancel(oid, h=http, query=""):
            r = await h.delete(f"{BASE}/{symbol}/orders/{oid}{query}")
            out.append(norm(r))
            return r

        first = await place({"side": "buy", "quantity": "10", "price": "0.5000"})
        await place({"side": "buy", "quantity": "1", "price": "0.5000", "client_order_id": "c-1"})
        await place({"side": "buy", "quantity": "1", "price": "0.5000", "client_order_id": "c-1"})  # reused: 409
        await place({"side": "hold", "quantity": "1", "price": "0.5"})  # invalid_side
        await place({"side": "buy", "quantity": "0", "price": "0.5"})  # invalid_quantity
        await place({"side": "buy", "quantity": "1", "price": "0.50005"})  # price_off_tick
        await place({"side": "buy", "quantity": "1", "price": "0.5"}, sym="nosuch")  # invalid_symbol
        await place({"side": "buy", "quantity": "100000", "price": "0.9"})  # insufficient_balance
        await place({"side": "buy", "quantity": "1", "price": "0.5", "colour": "red"})  # unknown field
        await place({"side": "buy", "quantity": "1"})  # a limit order without price
        await place({"side": "buy", "quantity": "1", "price": "0.7", "order_type": "post_only"})  # would cross
        await place({"side": "buy", "quantity": "2", "price": "0.6", "order_type": "ioc"})  # trades: fills
        oid = first.json()["order_id"]
        await cancel(oid)
        await cancel(oid)  # already cancelled: 409
        await cancel("ord_" + "f" * 16)  # unknown: 404
        theirs = (await place({"side": "sell", "quantity": "1", "price": "0.9000"}, h=ohttp)).json()["order_id"]
        await cancel(theirs)  # another trader's: 404
        mine = (await place({"side": "buy", "quantity": "1", "price": "0.4000"})).json()["order_id"]
        await cancel(mine, query="?mode=paper")  # asked in the wrong mode: 404
        paper = (await place({"side": "buy", "quantity": "1", "price": "0.4000", "mode": "paper"})).json()
        await cancel(paper["order_id"])  # no mode asked: found in the paper book
        await cancel(mine)

        async def batch(method, body, sym=symbol):
            r = await http.request(method, f"{BASE}/{sym}/orders/batch", json=body)
            out.append(norm(r))
            return r.json()

        placed = await batch(
            "POST",
            {
                "orders": [
                    {"side": "buy", "quantity": "5", "price": "0.3000"},
                    {"side": "hold", "quantity": "1", "price": "0.3"},  # invalid_side
                    {"side": "buy", "quantity": "1", "price": "0.3000", "client_order_id": "b-1"},
                    {"side": "buy", "quantity": "1", "price": "0.3000", "client_order_id": "b-1"},  # reused: 409
                    {"side": "buy", "quantity": "100000", "price": "0.9"},  # insufficient_balance
                    {"side": "buy", "quantity": "2", "price": "0.7", "order_type": "ioc"},  # trades: fills
                ]
            },
        )
        in_paper = await batch("POST", {"mode": "paper", "orders": [{"side": "buy", "quantity": "1", "price": "0.2"}]})
        await batch("POST", [{"side": "sell", "quantity": "1", "price": "0.9500"}])  # a bare array
        ids = [r["order"]["order_id"] for r in placed["results"] if r["success"]]
        await batch("DELETE", {"order_ids": [ids[0], ids[0], "ord_" + "e" * 16, "junk", theirs, ids[1]]})
        await batch("DELETE", {"order_ids": [in_paper["results"][0]["order"]["order_id"]], "mode": "live"})  # 404
        await batch("DELETE", {"order_ids": [in_paper["results"][0]["order"]["order_id"]]})  # found in paper
        await batch("POST", {"orders": [{"side": "buy", "quantity": "1", "price": "0.5"}]}, sym="nosuch")
        await batch("DELETE", {"order_ids": ["ord_" + "e" * 16]}, sym="nosuch")
        await batch("POST", {"orders": {"side": "buy"}})  # not an array (Django answers)
        await batch("POST", {"orders": [{"side": "buy", "quantity": "1", "price": "0.3"}] * 11})  # too many
        await batch("DELETE", {"order_ids": []})  # empty
        await batch("POST", {"mode": "demo", "orders": [{"side": "buy", "quantity": "1", "price": "0.3"}]})
    return out


def test_the_gateway_answers_exactly_as_the_regular_views(settings):
    """The same scenario through the gateway and through Django's views (gateway off) gives the same
    answers, and the gateway really served it."""
    make_market("vaix")
    results = {}
    for on in (True, False):
        settings.EXCHANGE_ORDER_GATEWAY = on
        name = "on" if on else "off"
        maker = make_trader(f"maker-{name}", funds={"USDC": 1000, "VAIX": 100000})
        c = client_for(make_trader(f"a-{name}", funds={"USDC": 1000, "VAIX": 1000}, paper_funds={"USDC": 100}))
        other = client_for(make_trader(f"b-{name}", funds={"USDC": 1000, "VAIX": 1000}))
        svc.order_place(trader=maker, symbol="vaix", side="sell", type="limit", quantity=D("3"), price=D("0.6000"))
        asyncio.run(warm(c, "vaix"))
        asyncio.run(warm(other, "vaix"))
        before = handled()
        results[name] = asyncio.run(scenario(c, other, "vaix"))
        if on:
            assert handled() - before >= 28  # the gateway answered (nearly) all of them itself
        svc.orders_cancel_all(trader=maker)
    assert results["on"] == results["off"]
    statuses = [r[0] for r in results["on"]]
    # placed, placed, reused id, side, quantity, tick, symbol, funds, field, no price, post_only, ioc fill;
    # cancel, again, unknown, theirs (placed, 404), mine (placed, wrong mode), paper (placed, found), mine
    assert statuses[:12] == [201, 201, 409, 400, 400, 400, 404, 400, 400, 400, 400, 201]
    assert statuses[12:22] == [200, 409, 404, 201, 404, 201, 404, 201, 200, 200]
    ioc = results["on"][11][1]
    assert '"status":"filled"' in ioc and '"role":"taker"' in ioc
    # batches: place (6 orders), paper, bare array, cancel (6 ids), paper id asked live, paper id, unknown pair
    # (place, cancel), then refused as a whole: not an array, 11 orders, no ids, bad mode
    assert statuses[22:] == [200, 200, 200, 200, 200, 200, 404, 404, 400, 400, 400, 400]
    batch_place, _, _, batch_cancel, asked_live, in_paper = (r[1] for r in results["on"][22:28])
    assert '"total":6,"successful":3,"failed":3' in batch_place and '"code":"duplicate_client_order_id"' in batch_place
    assert '"code":"invalid_side"' in batch_place and '"code":"insufficient_balance"' in batch_place
    assert '"filled_quantity":"1"' in batch_place  # the IOC took the rest of the maker's ask, the rest cancelled
    assert '"total":6,"successful":2,"failed":4' in batch_cancel and '"code":"order_not_open"' in batch_cancel
    assert '"successful":0' in asked_live and '"successful":1' in in_paper
    call_command("ledger_check")


def test_rate_limits_are_counted_and_refused_as_the_views_do(settings, frozen_clock):
    """The seed's 10 orders per second per pair: the 11th placement within a second is a 429 with
    Retry-After, through the gateway as through the view (each with its own trader and counters)."""
    settings.EXCHANGE_RATE_LIMITS = {}
    make_market("vaix")
    answers = {}
    for on in (True, False):
        settings.EXCHANGE_ORDER_GATEWAY = on
        c = client_for(make_trader(f"r-{on}", funds={"USDC": 1000}))

        async def go(c=c):
            await warm(c, "vaix")
            async with c.http() as http:
                return [
                    norm(await http.post(f"{BASE}/vaix/orders", json={"side": "buy", "quantity": "1", "price": "0.1"}))
                    for _ in range(11)
                ]

        answers[on] = asyncio.run(go())
    assert answers[True] == answers[False]
    assert [a[0] for a in answers[True]] == [201] * 10 + [429]
    assert answers[True][-1][3] == "1" and "rate_limited" in answers[True][-1][1]


def test_a_batch_counts_each_of_its_orders_against_the_rate_limits_as_the_view_does(settings, frozen_clock):
    """10 orders per second per pair: a batch of 6, then a batch of 5 (11 in the second: 429, and none of
    its orders placed), then a batch cancel (a request, not orders: 200), through the gateway as the view."""
    settings.EXCHANGE_RATE_LIMITS = {}
    make_market("vaix")
    answers = {}
    for on in (True, False):
        settings.EXCHANGE_ORDER_GATEWAY = on
        c = client_for(make_trader(f"rb-{on}", funds={"USDC": 1000}))
        order = {"side": "buy", "quantity": "1", "price": "0.1"}

        async def go(c=c, order=order):
            await warm(c, "vaix")
            async with c.http() as http:
                first = await http.post(f"{BASE}/vaix/orders/batch", json={"orders": [order] * 6})
                second = await http.post(f"{BASE}/vaix/orders/batch", json={"orders": [order] * 5})
                ids = [x["order"]["order_id"] for x in first.json()["results"]]
                third = await http.request("DELETE", f"{BASE}/vaix/orders/batch", json={"order_ids": ids})
                return [norm(first), norm(second), norm(third)]

        before = handled()
        answers[on] = asyncio.run(go())
        if on:
            assert handled() - before == 3
    assert answers[True] == answers[False]
    assert [a[0] for a in answers[True]] == [200, 429, 200]
    assert answers[True][1][3] == "1" and "rate_limited" in answers[True][1][1]
    assert ExchangeOrder.objects.filter(status="open").count() == 0


def test_requests_it_would_not_answer_exactly_go_to_django():
    make_market("vaix")
    c = client_for(make_trader("alice", funds={"USDC": 100}))

    async def go():
        await warm(c, "vaix")
        before = handled()
        async with c.http() as http:
            bad_json = await http.post(
                f"{BASE}/vaix/orders", content=b"{nope", headers={"Content-Type": "application/json"}
            )
            form = await http.post(f"{BASE}/vaix/orders", data={"side": "buy"})
            browser = await http.post(
                f"{BASE}/vaix/orders",
                json={"side": "buy", "quantity": "1", "price": "0.5"},
                headers={"Origin": "http://evil.example"},
            )
            host = await http.post(
                f"{BASE}/vaix/orders", json={"side": "buy", "quantity": "1", "price": "0.5"}, headers={"Host": "evil"}
            )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://testserver") as anon:
            nokey = await anon.post(f"{BASE}/vaix/orders", json={"side": "buy", "quantity": "1", "price": "0.5"})
        return bad_json, form, browser, host, nokey, handled() - before

    bad_json, form, browser, host, nokey, served = asyncio.run(go())
    assert served == 0
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "malformed_json"
    assert form.status_code == 415
    assert browser.status_code == 201  # Django's view answered it (CSRF does not apply to key auth)
    assert host.status_code == 400  # Django refuses the host
    assert nokey.status_code == 401 and "error" in nokey.json()


def test_concurrent_orders_are_batched_and_each_is_checked_against_what_the_earlier_ones_hold():
    """40 orders from 8 traders at once: each trader can afford 4 of its 5 (the funds check takes the
    batch's earlier orders into account), holds match the accounts, then 32 cancels at once put every
    account back; the ledger's invariants hold throughout."""
    make_market("vaix")
    traders = [client_for(make_trader(f"t{i}", funds={"USDC": 20})) for i in range(8)]

    async def go():
        for c in traders:
            await warm(c, "vaix")
        start_batches = gw.gateway().batches
        clients = [c.http() for c in traders]
        try:
            places = [
                clients[i].post(f"{BASE}/vaix/orders", json={"side": "buy", "quantity": "10", "price": "0.5000"})
                for _ in range(5)
                for i in range(8)
            ]
            placed = await asyncio.gather(*places)
            batches = gw.gateway().batches - start_batches
            ids = {i: [] for i in range(8)}
            for n, r in enumerate(placed):
                if r.status_code == 201:
                    ids[n % 8].append(r.json()["order_id"])
            cancels = [clients[i].delete(f"{BASE}/vaix/orders/{oid}") for i in range(8) for oid in ids[i]]
            cancelled = await asyncio.gather(*cancels)
        finally:
            for h in clients:
                await h.aclose()
        return placed, batches, ids, cancelled

    placed, batches, ids, cancelled = asyncio.run(go())
    codes = sorted(r.status_code for r in placed)
    assert codes == [201] * 32 + [400] * 8, codes
    assert all(r.json()["error"]["code"] == "insufficient_balance" for r in placed if r.status_code == 400)
    assert all(len(v) == 4 for v in ids.values())
    assert batches < 40  # batched: fewer transactions than orders
    assert all(r.status_code == 200 and r.json()["status"] == "cancelled" for r in cancelled)
    assert not Hold.objects.filter(status__in=OPEN_HOLD_STATUSES).exists()
    assert LedgerAccount.objects.filter(owner_type="trader").aggregate(h=Sum("held"))["h"] == 0
    assert ExchangeOrder.objects.filter(status="cancelled").count() == 32
    call_command("ledger_check")


def test_concurrent_batch_requests_share_book_transactions_and_each_order_is_checked_in_turn():
    """Six traders each send a batch of 5 orders (each can afford 4) and single orders at once: the gateway
    runs them in fewer transactions than requests, every batch's 5th order is refused for funds on its own,
    and a concurrent batch cancel of each trader's orders puts every account back."""
    make_market("vaix")
    traders = [client_for(make_trader(f"bt{i}", funds={"USDC": 20})) for i in range(6)]
    order = {"side": "buy", "quantity": "10", "price": "0.5000"}

    async def go():
        for c in traders:
            await warm(c, "vaix")
        start = gw.gateway().batches
        clients = [c.http() for c in traders]
        try:
            placed = await asyncio.gather(
                *[h.post(f"{BASE}/vaix/orders/batch", json={"orders": [order] * 5}) for h in clients]
            )
            batches = gw.gateway().batches - start
            ids = [[x["order"]["order_id"] for x in r.json()["results"] if x["success"]] for r in placed]
            cancelled = await asyncio.gather(
                *[
                    h.request("DELETE", f"{BASE}/vaix/orders/batch", json={"order_ids": mine})
                    for h, mine in zip(clients, ids, strict=True)
                ]
            )
        finally:
            for h in clients:
                await h.aclose()
        return placed, batches, ids, cancelled

    placed, batches, ids, cancelled = asyncio.run(go())
    assert all(r.status_code == 200 for r in placed + list(cancelled))
    for r in placed:
        body = r.json()
        assert (body["successful"], body["failed"]) == (4, 1)
        assert body["results"][4]["error"]["code"] == "insufficient_balance"
    assert 0 < batches < len(traders)  # served by the gateway, several batch requests per book transaction
    assert all(r.json()["successful"] == 4 for r in cancelled)
    assert not Hold.objects.filter(status__in=OPEN_HOLD_STATUSES).exists()
    assert LedgerAccount.objects.filter(owner_type="trader").aggregate(h=Sum("held"))["h"] == 0
    call_command("ledger_check")


def test_a_gateway_batch_is_bounded_by_orders_not_requests():
    """Batch requests count their orders against MAX_BATCH: 30 waiting requests of 10 orders are taken as
    26 (260 orders) and then 4, not all 300 in one transaction."""
    import queue

    q = queue.SimpleQueue()
    for _ in range(30):
        it = gw.Item(kind="batch_place", trader=None, symbol="vaix", loop=None, future=None)
        it.subs = [gw.Item(kind="place", trader=None, symbol="vaix", loop=None, future=None) for _ in range(10)]
        q.put(it)
    first = gw.Gateway._take(q)
    assert gw.MAX_BATCH == 256 and (len(first), q.qsize()) == (26, 4)
    assert len(gw.Gateway._take(q)) == 4


def test_a_batch_that_fails_as_a_whole_gives_each_command_its_own_answer():
    """Two orders whose holds together exceed the balance, with no balance read under the lock: the
    batch's hold statement fails, the transaction rolls back, and the two run one by one: the first is
    placed, the second refused with insufficient_balance; nothing else was written."""
    market = make_market("vaix")
    alice = make_trader("alice", funds={"USDC": 10})
    specs = [
        svc.place_prepare(trader=alice, symbol="vaix", side="buy", type="limit", quantity=D("15"), price=D("0.5"))
        for _ in range(2)
    ]
    results = matching.run_batch(market=market, mode="live", commands=[svc.place_command(s) for s in specs])
    assert results[0].status == "open"
    assert isinstance(results[1], ExchangeError) and results[1].code == "insufficient_balance"
    assert ExchangeOrder.objects.count() == 1
    assert Hold.objects.count() == 1
    assert LedgerAccount.objects.get(owner_id=str(alice.pk), asset="USDC", mode="live").held == D("7.5")
    call_command("ledger_check")


def test_a_batch_with_trades_settles_them_like_single_orders():
    """Resting asks, then a batch of crossing buys, resting buys and a cancel: trades settle (the generic
    persist path), rests rest, the cancel releases; the book and the ledger agree."""
    market = make_market("vaix")
    maker = make_trader("maker", funds={"VAIX": 1000})
    taker = make_trader("taker", funds={"USDC": 1000})
    asks = [
        svc.order_place(trader=maker, symbol="vaix", side="sell", type="limit", quantity=D("5"), price=D(p))
        for p in ("0.6000", "0.6100")
    ]
    specs = [
        svc.place_prepare(trader=taker, symbol="vaix", side="buy", type="limit", quantity=D("7"), price=D("0.6100")),
        svc.place_prepare(trader=taker, symbol="vaix", side="buy", type="limit", quantity=D("2"), price=D("0.5000")),
    ]
    acct = specs[0].hold_account.pk
    results = matching.run_batch(
        market=market,
        mode="live",
        commands=[svc.place_command(specs[0]), svc.place_command(specs[1]), svc.cancel_command(asks[1].order_id)],
        preload_orders=[[], [], [asks[1].order_id]],
        accounts=[acct],
    )
    crossing, resting, cancelled = results
    assert crossing.filled_quantity == D("7") and crossing.status == "filled"
    assert resting.status == "open"
    assert cancelled.status == "cancelled" and cancelled.filled_quantity == D("2")
    assert ExchangeOrder.objects.get(order_id=asks[0].order_id).status == "filled"
    call_command("ledger_check")


def test_the_raw_order_statements_know_every_order_column():
    """The batch writes name the order columns themselves: they must be the ORM's (a new field on the
    model fails here rather than being silently left out of an update)."""
    meta = ExchangeOrder._meta
    sql, params = matching._orders_update_sql([ExchangeOrder(pk=1, order_id="ord_x", quantity=1)])
    assert all(f'"{meta.get_field(f).column}" = v.' in sql for f in matching.ORDER_UPDATE_FIELDS)
    assert len(params) == 1 + len(matching.ORDER_UPDATE_FIELDS)  # the ids, then one array per field
    sql, params, n = matching._insert_orders_sql([ExchangeOrder(order_id="ord_x", quantity=1)], [1], ["order:x"])
    columns = {f.column for f in meta.local_concrete_fields if f is not meta.auto_field}
    assert all(c in sql for c in columns)
    assert len(params) == len(columns) - 1 + 2  # every column but hold_id (joined), plus account and reference


class _MatcherThread:
    """The matcher's socket server on its own event loop in a thread of this process (as
    ``run_order_matcher`` runs it in a process of its own)."""

    def __init__(self, path: str):
        import threading

        from exchanges.api.matcher import MatcherServer

        self.server = MatcherServer(path)
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self.started.set()
        self.loop.run_forever()

    def __enter__(self):
        self.thread.start()
        assert self.started.wait(10)
        return self.server

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_through_the_matcher_process_the_answers_are_the_same(settings, tmp_path):
    """Web side hands place and cancel to the matcher over its Unix socket: the same scenario gives the
    same answers as the regular views, and the matcher served them."""
    make_market("vaix")
    results = {}
    for name in ("matcher", "views"):
        settings.EXCHANGE_ORDER_GATEWAY = name == "matcher"
        maker = make_trader(f"maker-{name}", funds={"USDC": 1000, "VAIX": 100000})
        c = client_for(make_trader(f"a-{name}", funds={"USDC": 1000, "VAIX": 1000}, paper_funds={"USDC": 100}))
        other = client_for(make_trader(f"b-{name}", funds={"USDC": 1000, "VAIX": 1000}))
        svc.order_place(trader=maker, symbol="vaix", side="sell", type="limit", quantity=D("3"), price=D("0.6000"))
        asyncio.run(warm(c, "vaix"))
        asyncio.run(warm(other, "vaix"))
        if name == "matcher":
            settings.EXCHANGE_MATCHER_SOCKET = str(tmp_path / "matcher.sock")
            with _MatcherThread(settings.EXCHANGE_MATCHER_SOCKET) as server:
                results[name] = asyncio.run(scenario(c, other, "vaix"))
            assert server.served >= 28  # the batches too
            settings.EXCHANGE_MATCHER_SOCKET = ""
        else:
            results[name] = asyncio.run(scenario(c, other, "vaix"))
        svc.orders_cancel_all(trader=maker)
    assert results["matcher"] == results["views"]
    call_command("ledger_check")


def test_without_its_matcher_a_web_process_serves_orders_itself(settings, tmp_path):
    """The matcher's socket is configured but nothing listens: orders are still answered (here)."""
    make_market("vaix")
    settings.EXCHANGE_MATCHER_SOCKET = str(tmp_path / "nobody.sock")
    c = client_for(make_trader("alice", funds={"USDC": 100}))

    async def go():
        await warm(c, "vaix")
        before = handled()
        async with c.http() as http:
            placed = await http.post(f"{BASE}/vaix/orders", json={"side": "buy", "quantity": "1", "price": "0.5"})
            cancelled = await http.delete(f"{BASE}/vaix/orders/{placed.json()['order_id']}")
        return placed, cancelled, handled() - before

    placed, cancelled, served = asyncio.run(go())
    assert placed.status_code == 201 and cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert served == 2


def test_a_matcher_lost_after_the_request_was_sent_is_a_503_not_a_retry(settings, tmp_path):
    """The matcher takes the request and its connection drops before answering: the web side answers
    503 busy (the order may exist) and does not place it a second time itself."""
    import socket
    import threading

    make_market("vaix")
    path = str(tmp_path / "dropper.sock")
    settings.EXCHANGE_MATCHER_SOCKET = path
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def drop_after_first_frame():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    t = threading.Thread(target=drop_after_first_frame, daemon=True)
    t.start()
    c = client_for(make_trader("alice", funds={"USDC": 100}))

    async def go():
        await warm(c, "vaix")
        before = handled()
        async with c.http() as http:
            r = await http.post(f"{BASE}/vaix/orders", json={"side": "buy", "quantity": "1", "price": "0.5"})
        return r, handled() - before

    r, served = asyncio.run(go())
    t.join(5)
    listener.close()
    assert r.status_code == 503 and r.json()["error"]["code"] == "busy"
    assert served == 0 and not ExchangeOrder.objects.exists()


def test_the_matcher_command_needs_a_socket(settings):
    from django.core.management.base import CommandError

    settings.EXCHANGE_MATCHER_SOCKET = ""
    with pytest.raises(CommandError, match="socket"):
        call_command("run_order_matcher")


@pytest.mark.redis
def test_a_key_revoked_in_another_process_stops_working_here_within_a_second(settings):
    """This process has the key cached; another process revokes it (the row, and the generation bump in
    the shared cache): within about a second this process asks the database again and refuses it."""
    import time

    from django.core.cache import cache

    from exchanges.api import authentication as auth
    from exchanges.models import TraderApiKey

    alice = make_trader("alice", funds={"USDC": 10})
    row, raw = trader_key_create(trader=alice)
    assert auth.authenticate_api_key(raw) == alice  # cached now, and the watcher runs
    assert auth.cached_trader(api_key=raw) == alice
    # "another process": the revocation's two effects, without touching this process's memory
    TraderApiKey.objects.filter(pk=row.pk).update(revoked_at=timezone.now())
    if not cache.add(auth.GENERATION_KEY, 1, timeout=None):
        cache.incr(auth.GENERATION_KEY)
    assert auth.cached_trader(api_key=raw) == alice  # still trusted for now (the cache's whole point)
    deadline = time.monotonic() + 3
    while auth.cached_trader(api_key=raw) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert auth.cached_trader(api_key=raw) is None
    assert auth.authenticate_api_key(raw) is None


def test_deactivating_a_user_forgets_their_cached_credentials_at_once():
    from exchanges.api import authentication as auth

    alice = make_trader("alice", funds={"USDC": 10})
    _, raw = trader_key_create(trader=alice)
    assert auth.authenticate_api_key(raw) == alice
    alice.user.is_active = False
    alice.user.save()
    assert auth.cached_trader(api_key=raw) is None
    assert auth.authenticate_api_key(raw) is None
