"""The engine's loop in-process, through the real feed client and the local protocol server:
feed frames -> quotes on the simulated venue -> the seeded taker fills them -> hedge bets on the
simulated bookmaker -> the fixture finishes -> settlement; and the reliability case of issue 3:
a feed disconnect soft-pauses within the threshold, and after the resubscribe the engine resumes
and requotes."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal

import pytest

from exchanges.connectors.registry import get_connector
from exchanges.connectors.sim_taker import SimTakerFlow
from exchanges.models import SimVenueOrder, SimVenueOrderStatus
from hedging.choices import BetStatus
from hedging.models import HedgeBet
from tests.factories import AccountFactory, ClientFactory, TournamentFactory
from tests.trading.test_commands_feed import GAME, ServerThread, one_game_replay, wait_until
from trading.choices import ControlAction, FixtureStatus, SettlementStatus
from trading.feed.client import Backoff
from trading.feed.server import make_snapshot_loader
from trading.management.commands.run_odds_feed import run_feed
from trading.management.commands.run_scheduler import Scheduler
from trading.models import Fill, Fixture, Order, TradingControlEvent
from trading.selectors.controls import trading_status
from trading.services.fills import fills_poll
from trading.services.health import last_beats

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]

FAST = Backoff(initial=0.05, maximum=0.2, factor=2.0, jitter=0.0)
FIX = "id1000000861624412"


@pytest.fixture
def demo(db):
    client = ClientFactory(name="demo:vertex", quote_all_fixtures=True)
    account = AccountFactory(client=client, exchange="simulated", username="demo-vertex-sim")
    TournamentFactory(tournament_id=132, name="NBA", sport_id=11, sport_name="Basketball", quote_in_play=True)
    return client, account


class FeedThread:
    """``run_feed`` (the run_odds_feed command's code) against a URL, in its own thread and loop."""

    def __init__(self, url: str, **kwargs) -> None:
        self.runner = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, kwargs), daemon=True)
        self.thread.start()
        assert self._ready.wait(10)

    def _run(self, url, kwargs) -> None:
        def ready(runner, _source) -> None:
            self.runner, self.loop = runner, asyncio.get_running_loop()
            self._ready.set()

        try:
            asyncio.run(run_feed(url=url, api_key="KEY", install_signals=False, on_ready=ready, backoff=FAST, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.stop(), self.loop).result(10)
        self.thread.join(15)
        assert self.error is None, self.error


def odds(price: float, outcome: int = 101) -> dict:
    return {
        "fixtureId": FIX,
        "odds": {
            "vertex": {
                f"{FIX}:vertex:{outcome}:0": {
                    "bookmaker": "vertex",
                    "marketId": 101,
                    "outcomeId": outcome,
                    "playerId": 0,
                    "price": price,
                    "limit": 5000.0,
                    "active": True,
                    "marketActive": True,
                }
            }
        },
    }


def fixture_payload(start_in: int = 3600) -> dict:
    return {
        "fixtureId": FIX,
        "status": {"live": False, "statusId": 0, "statusName": "Not started"},
        "sport": {"sportId": 10, "sportName": "Soccer"},
        "tournament": {"tournamentId": 17, "tournamentName": "Premier League"},
        "startTime": int(time.time()) + start_in,
        "participants": {"participant1Name": "Arsenal", "participant2Name": "Chelsea"},
    }


def venue_open(account) -> list[SimVenueOrder]:
    return list(SimVenueOrder.objects.filter(account=account.username, status=SimVenueOrderStatus.OPEN))


@pytest.mark.postgres  # two threads writing at once: SQLite's in-memory test database locks whole tables
def test_feed_to_quotes_to_taker_fills_to_hedges_to_settlement(demo, tmp_path, eager_hedging):
    client, account = demo
    _, events = one_game_replay(tmp_path / "game.jsonl")
    tip_off = next(i for i, e in enumerate(events) if e.channel == "fixtures" and e.payload["status"]["statusId"] == 1)
    srv = ServerThread(api_keys={"KEY"})
    feed = FeedThread(srv.server.url)
    try:
        wait_until(lambda: srv.server.connections == 1)
        # pre-game: the fixture and its prices -> quotes resting on the simulated venue
        srv.call(srv.server.play(events[:tip_off], speed=0))
        wait_until(lambda: len(venue_open(account)) >= 6)
        # the seeded taker flow trades against them; the fills are polled and hedged on vertex
        trades = SimTakerFlow(get_connector("simulated"), seed=7, rate=5.0, accounts=[account.username]).step(2.0)
        assert trades
        fills_poll(account=account)
        assert Fill.objects.filter(order__account=account).count() == len(trades)
        placed = HedgeBet.objects.filter(order__account=account, bet_status=BetStatus.PLACED)
        assert placed.count() == len(trades)
        # the game is played to its end and finishes: settlement runs on the feed's final score
        srv.call(srv.server.play(events[tip_off:], speed=0))
        wait_until(lambda: Fixture.objects.filter(fixture_id=GAME, status=FixtureStatus.FINISHED).exists())
        wait_until(lambda: not Order.objects.filter(account=account, matched_stake__gt=0, settled_at=None).exists())
    finally:
        feed.stop()
        srv.close()
    matched = Order.objects.filter(account=account, matched_stake__gt=0)
    assert matched.exists()
    assert not matched.filter(settlement_status=SettlementStatus.UNDECIDED).exists()
    assert not Order.objects.filter(account=account).open().exists()  # every quote came down at the end


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("gateway", ["resumes", "restarts"])
def test_a_feed_disconnect_soft_pauses_within_the_threshold_then_resubscribe_resumes_and_requotes(
    demo, settings, gateway
):
    """``resumes``: the gateway replays what the client missed. ``restarts``: the gateway lost its
    buffers (new epoch), refuses the resume, and the snapshot brings the missed price."""
    settings.FEED_STALE_SECONDS = 1.0
    client, account = demo
    srv = ServerThread(api_keys={"KEY"})
    feed = FeedThread(srv.server.url, snapshot_loader=make_snapshot_loader(srv.server))
    beat = Scheduler({"health": {"task": "trading.health.check", "schedule": 0.2}})
    stop_beat = threading.Event()
    beat_thread = threading.Thread(target=beat.run, args=(stop_beat,), daemon=True)
    beat_thread.start()
    try:
        wait_until(lambda: srv.server.connections == 1)
        srv.call(lambda: srv.server.publish("fixtures", fixture_payload()))
        srv.call(lambda: srv.server.publish("odds", odds(1.808)))
        wait_until(lambda: [o.price for o in venue_open(account)] == [Decimal("0.58")])
        assert trading_status(client=client)["status"] == "live"
        assert "feed" in last_beats()  # beating since its login

        # the feed goes away and stays away (logins refused): soft pause within the threshold
        srv.server.api_keys = frozenset()
        dropped_at = time.monotonic()
        srv.call(srv.server.drop_connections)
        wait_until(lambda: trading_status(client=client)["softPaused"], timeout=10)
        took = time.monotonic() - dropped_at
        # last beat <= 1 beat interval before the drop, then the threshold, then <= 1 check interval
        assert took <= settings.FEED_STALE_SECONDS + 1.0 + 0.2 + 1.0, took
        assert [o.price for o in venue_open(account)] == [Decimal("0.58")]  # a soft pause keeps resting orders

        # the price moves while we are away; the gateway keeps it for the resume (or its snapshot)
        if gateway == "restarts":
            srv.call(srv.server.restart)
        srv.call(lambda: srv.server.publish("odds", odds(1.6)))
        srv.server.api_keys = frozenset({"KEY"})

        # resubscribe: resume (or snapshot), the pause lifts, and the quote follows the price it missed
        metrics = feed.runner.client.metrics
        wait_until(lambda: (metrics.resumes if gateway == "resumes" else metrics.snapshots) >= 1, timeout=15)
        wait_until(lambda: not trading_status(client=client)["softPaused"], timeout=10)
        wait_until(lambda: [o.price for o in venue_open(account)] == [Decimal("0.65")], timeout=10)
    finally:
        stop_beat.set()
        beat_thread.join(5)
        feed.stop()
        srv.close()
    events = list(
        TradingControlEvent.objects.filter(client=client, actor="system:health").order_by("id").values_list("action")
    )
    assert events == [(ControlAction.SOFT_PAUSE,), (ControlAction.SOFT_RESUME,)]
    m = feed.runner.client.metrics
    assert (m.resumes, m.snapshots) == ((1, 0) if gateway == "resumes" else (0, 1))
    assert Order.objects.filter(account=account).open().count() == 1


async def test_the_live_loops_channel_layer_delivers_sends_from_worker_threads_on_the_servers_loop():
    from trading.management.commands.run_live import LoopSafeInMemoryChannelLayer

    layer = LoopSafeInMemoryChannelLayer()
    loop = asyncio.get_running_loop()
    LoopSafeInMemoryChannelLayer.home_loop = loop
    loop.set_debug(True)  # asyncio then refuses a waiter woken from another thread, as it should
    try:
        channel = await layer.new_channel()
        await layer.group_add("mm.client.1", channel)
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0)

        def from_a_worker_thread() -> None:  # what async_to_sync does in a thread: its own event loop
            asyncio.run(layer.group_send("mm.client.1", {"type": "mm.event", "n": 1}))

        await asyncio.get_running_loop().run_in_executor(None, from_a_worker_thread)
        assert await asyncio.wait_for(waiting, 2) == {"type": "mm.event", "n": 1}
    finally:
        loop.set_debug(False)
        LoopSafeInMemoryChannelLayer.home_loop = None


@pytest.mark.postgres
def test_without_replay_or_snapshot_of_odds_a_reconnect_takes_quotes_on_stale_prices_down(demo):
    client, account = demo
    srv = ServerThread(api_keys={"KEY"}, replay_channels=("fixtures", "scores"))
    feed = FeedThread(srv.server.url)  # no snapshot source, as against the live gateway today
    try:
        wait_until(lambda: srv.server.connections == 1)
        srv.call(lambda: srv.server.publish("fixtures", fixture_payload()))
        srv.call(lambda: srv.server.publish("odds", odds(1.808)))
        wait_until(lambda: len(venue_open(account)) == 1)

        srv.call(srv.server.drop_connections)
        wait_until(lambda: feed.runner.client.metrics.reconnects >= 1)
        wait_until(lambda: venue_open(account) == [])
    finally:
        feed.stop()
        srv.close()
    assert feed.runner.ingest.counters["odds_invalidated"] == 1
