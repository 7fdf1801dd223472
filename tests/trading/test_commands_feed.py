"""The feed's management commands against the local protocol server on loopback: run_odds_feed
(replay and live, with a dropped connection and a resume), record_odds_feed, run_scheduler."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.factories import AccountFactory, ClientFactory, TournamentFactory
from trading.choices import FixtureStatus
from trading.feed.replay import ReplayHeader, ReplayWriter, read_replay
from trading.feed.server import FeedServer
from trading.management.commands.run_odds_feed import SAMPLE
from trading.management.commands.run_scheduler import Scheduler
from trading.models import Fixture, Order
from trading.services.feed_ingest import feed_metrics

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]

GAME = "id1100000861700021"  # a basketball game of the sample (NBA, quoted in play)


class ServerThread:
    """A FeedServer on its own event loop in a thread, driven from the test's thread."""

    def __init__(self, **kwargs) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: FeedServer = self.call(FeedServer(**kwargs).start())

    def call(self, what):
        if asyncio.iscoroutine(what):
            return asyncio.run_coroutine_threadsafe(what, self.loop).result(30)

        async def run():
            return what()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def close(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def one_game_replay(path: Path) -> tuple[ReplayHeader, list]:
    """The sample, cut down to one basketball game (quick, and quoted in play)."""
    header, events = read_replay(SAMPLE)
    mine = [e for e in events if e.payload["fixtureId"] == GAME]
    with ReplayWriter(path, header) as writer:
        for e in mine:
            writer.write(e.channel, e.payload, t_ms=e.t_ms)
    return header, mine


@pytest.fixture
def demo(db):
    client = ClientFactory(name="demo:vertex", quote_all_fixtures=True)
    account = AccountFactory(client=client, exchange="simulated", username="demo-vertex-sim")
    TournamentFactory(tournament_id=132, name="NBA", sport_id=11, sport_name="Basketball", quote_in_play=True)
    return client, account


def test_replay_drives_fixtures_scores_and_quotes_through_the_real_client(demo, tmp_path):
    client, account = demo
    path = tmp_path / "game.jsonl"
    _, events = one_game_replay(path)
    out = io.StringIO()

    call_command("run_odds_feed", "--replay", str(path), "--speed", "0", stdout=out)

    fixture = Fixture.objects.get(fixture_id=GAME)
    final = [e for e in events if e.channel == "scores"][-1].payload["scores"]["result"]
    assert fixture.status == FixtureStatus.FINISHED
    assert (fixture.participant1_score, fixture.participant2_score) == (
        final["participant1Score"],
        final["participant2Score"],
    )
    assert set(fixture.period_scores) == {"p1", "p2", "p3", "p4"}
    orders = Order.objects.filter(account=account)
    assert orders.exists() and not orders.open().exists()  # quoted, then cancelled when the game ended
    assert f"{len(events)} stream frames applied" in out.getvalue()
    assert feed_metrics()["ingest"]["fixtures_final"] == 1


def test_live_mode_survives_a_dropped_connection_and_resumes_without_losing_frames(demo, tmp_path):
    _, events = one_game_replay(tmp_path / "game.jsonl")
    srv = ServerThread(api_keys={"KEY"})
    half = len(events) // 2
    done = threading.Event()
    result: dict = {}

    def run() -> None:
        out = io.StringIO()
        try:
            call_command("run_odds_feed", "--url", srv.server.url, "--api-key", "KEY", "--duration", "15", stdout=out)
        finally:
            result["out"] = out.getvalue()
            done.set()

    feed = threading.Thread(target=run, daemon=True)
    feed.start()
    try:
        wait_until(lambda: srv.server.connections == 1)
        srv.call(srv.server.play(events[:half], speed=0))
        wait_until(lambda: Fixture.objects.filter(fixture_id=GAME, status=FixtureStatus.LIVE).exists())
        srv.call(srv.server.drop_connections)
        srv.call(srv.server.play(events[half:], speed=0))  # published while the client is away
        wait_until(lambda: Fixture.objects.filter(fixture_id=GAME, status=FixtureStatus.FINISHED).exists())
        assert srv.server.logins >= 2
    finally:
        done.wait(40)
        srv.close()
    assert "reconnects 1, resumes 1, snapshots 0" in result["out"]
    assert f"{len(events)} stream frames applied" in result["out"]


def test_record_odds_feed_writes_a_replay_file_that_plays_back(tmp_path):
    _, events = one_game_replay(tmp_path / "game.jsonl")
    srv = ServerThread(api_keys={"KEY"})
    out_file = tmp_path / "recorded.jsonl"
    out = io.StringIO()

    def publish_when_connected() -> None:
        wait_until(lambda: srv.server.connections == 1)
        srv.call(srv.server.play(events[:40], speed=0))

    t = threading.Thread(target=publish_when_connected, daemon=True)
    t.start()
    try:
        call_command(
            "record_odds_feed", "--url", srv.server.url, "--api-key", "KEY", "--out", str(out_file),
            "--duration", "3", stdout=out,
        )  # fmt: skip
    finally:
        t.join(10)
        srv.close()
    header, recorded = read_replay(out_file)
    assert [(e.channel, e.payload) for e in recorded] == [(e.channel, e.payload) for e in events[:40]]
    assert json.loads(out_file.read_text().splitlines()[1])["sourceEntryId"]
    assert "recorded 40 stream frames" in out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --url"),
        (["--url", "ws://127.0.0.1:1"], "--api-key"),
        (["--replay", "/nonexistent.jsonl"], "replay file not found"),
        (["--replay", str(SAMPLE), "--speed", "-1"], "--speed"),
        (["--url", "ws://x", "--api-key", "k", "--sport-ids", "ten"], "integers"),
    ],
)
def test_run_odds_feed_refuses_bad_arguments_with_a_clear_error(args, message, monkeypatch):
    monkeypatch.delenv("ODDS_FEED_URL", raising=False)
    monkeypatch.delenv("ODDS_FEED_API_KEY", raising=False)
    with pytest.raises(CommandError, match=message):
        call_command("run_odds_feed", *args)


def test_record_odds_feed_needs_url_key_and_an_existing_directory(tmp_path):
    with pytest.raises(CommandError, match="required"):
        call_command("record_odds_feed", "--url", "", "--api-key", "", "--out", str(tmp_path / "x.jsonl"))
    with pytest.raises(CommandError, match="directory"):
        call_command("record_odds_feed", "--url", "ws://x", "--api-key", "k", "--out", "/no/such/dir/x.jsonl")


def test_run_scheduler_runs_every_beat_entry_in_process():
    out = io.StringIO()
    call_command("run_scheduler", "--once", "--only", "health-check", "--only", "trading.fills_poll_all", stdout=out)
    assert "runs: health-check 1, fills-poll-all 1" in out.getvalue()


def test_the_scheduler_runs_entries_on_their_interval_and_survives_a_failing_task():
    schedule = {
        "fast": {"task": "trading.health.check", "schedule": 0.2},
        "missing": {"task": "no.such.task", "schedule": 0.2},
    }
    scheduler = Scheduler(schedule)
    stop = threading.Event()
    t = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    t.start()
    time.sleep(1.1)
    stop.set()
    t.join(5)
    fast = next(e for e in scheduler.entries if e.name == "fast")
    assert 3 <= fast.runs <= 7 and fast.failures == 0
    assert not t.is_alive()


def test_feed_status_shows_heartbeats_and_the_feed_counters():
    from trading.services.feed_ingest import FeedIngest
    from trading.services.health import heartbeat

    heartbeat("feed")
    ingest = FeedIngest()
    ingest.counters["odds_out_of_bounds"] = 3
    ingest.flush_metrics()
    out = io.StringIO()
    call_command("feed_status", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["sources"]["feed"]["stale"] is False
    assert data["feed"]["ingest"]["odds_out_of_bounds"] == 3
    out = io.StringIO()
    call_command("feed_status", stdout=out)
    assert "ingest.odds_out_of_bounds: 3" in out.getvalue()
