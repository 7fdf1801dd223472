"""The OddsPapi v5 feed: frame parsing, the replay format and sample, and the client against the
local gateway over real WebSockets on loopback (drops, resume, snapshots, reconnects)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.feed.client import Backoff, FeedClient, SnapshotUnavailable, connect
from trading.feed.protocol import (
    FeedError,
    FeedMetrics,
    FixtureUpdate,
    LoginOk,
    OddsUpdate,
    Reconnect,
    ResumeComplete,
    ScoreUpdate,
    SnapshotRequired,
    build_login,
    encode_json,
    parse_entry_id,
    parse_frame,
)
from trading.feed.replay import ReplayHeader, ReplayWriter, read_replay, rebase_payload
from trading.feed.samples import make_sample
from trading.feed.server import FeedServer, make_snapshot_loader
from trading.pricing import PricingConfig, Reason, quote_sell

SAMPLE = Path(make_sample.__file__).with_name("sample_replay.jsonl")
FIX = "id1000000861624412"


def odds_payload(price: float, *, outcome: int = 101, bookmaker: str = "vertex", fixture: str = FIX, **extra) -> dict:
    entry = {
        "bookmaker": bookmaker,
        "marketId": 101,
        "outcomeId": outcome,
        "playerId": 0,
        "price": price,
        "limit": 5000.0,
        "active": True,
        "marketActive": True,
        "mainLine": True,
        "changedAt": 1772366401000,
        **extra,
    }
    return {"fixtureId": fixture, "odds": {bookmaker: {f"{fixture}:{bookmaker}:{outcome}:0": entry}}}


def stream(channel: str, payload: dict, entry_id: str = "1772366401000-7") -> dict:
    return {"channel": channel, "type": "UPDATE", "payload": payload, "ts": 1772366401000, "entryId": entry_id}


# --- parsing ------------------------------------------------------------------------------------


def test_odds_frame_in_json_is_parsed_with_exact_decimals():
    metrics = FeedMetrics()
    frame = parse_frame(json.dumps(stream("odds", odds_payload(1.808))), metrics)
    assert isinstance(frame, OddsUpdate)
    assert (frame.entry_id, frame.ts, frame.fixture_id) == ("1772366401000-7", 1772366401000, FIX)
    (entry,) = frame.entries
    assert entry.price == D("1.808") and entry.limit == D("5000.0")
    assert (entry.bookmaker, entry.market_id, entry.outcome_id, entry.player_id) == ("vertex", 101, 101, 0)
    assert (entry.active, entry.market_active, entry.main_line, entry.changed_at) == (True, True, True, 1772366401000)
    assert entry.odds_id == f"{FIX}:vertex:101:0"
    assert metrics.frames == 1 and metrics.by_kind["odds"] == 1


def test_odds_frame_in_msgpack_parses_to_the_same_values():
    raw = msgpack.packb(stream("odds", odds_payload(1.808)), use_bin_type=True)
    frame = parse_frame(raw)
    assert isinstance(frame, OddsUpdate)
    assert frame.entries[0].price == D("1.808")  # float 1.808 read through its shortest repr
    assert parse_frame(json.dumps(stream("odds", odds_payload(1.808))).encode()).entries == frame.entries


def test_flat_odds_map_and_bookmakers_key_are_read_too():
    payload = odds_payload(2.5)
    flat = {"fixtureId": FIX, "odds": payload["odds"]["vertex"]}
    assert parse_frame(encode_json(stream("odds", flat))).entries[0].price == D("2.5")
    keyed = {"fixtureId": FIX, "bookmakers": payload["odds"]}
    assert parse_frame(encode_json(stream("odds", keyed))).entries[0].bookmaker == "vertex"


def test_fixture_and_score_frames():
    fixture = parse_frame(
        encode_json(
            stream(
                "fixtures",
                {
                    "fixtureId": FIX,
                    "status": {"live": True, "statusId": 1, "statusName": "Live"},
                    "sport": {"sportId": 10, "sportName": "Soccer"},
                    "tournament": {"tournamentId": 17, "tournamentName": "Premier League", "categoryName": "England"},
                    "startTime": 1772366420,
                    "participants": {"participant1Name": "Arsenal", "participant2Name": "Chelsea"},
                },
            )
        )
    )
    assert isinstance(fixture, FixtureUpdate)
    assert (fixture.sport_id, fixture.tournament_id, fixture.live, fixture.status_id) == (10, 17, True, 1)
    assert (fixture.participant1_name, fixture.participant2_name, fixture.start_time) == (
        "Arsenal",
        "Chelsea",
        1772366420,
    )
    scores = parse_frame(
        encode_json(
            stream(
                "scores",
                {
                    "fixtureId": FIX,
                    "scores": {
                        "result": {"period": "result", "participant1Score": 2, "participant2Score": 1, "updatedAt": "x"}
                    },
                },
            )
        )
    )
    assert isinstance(scores, ScoreUpdate)
    assert (scores.result.participant1_score, scores.result.participant2_score) == (2, 1)


def test_control_frames():
    login_ok = parse_frame(
        json.dumps(
            {
                "type": "login_ok",
                "receiveType": "binary",
                "access": {"live": True, "pregame": False},
                "resume": {
                    "serverEpoch": "0804ab61513c4681a3afd8afc1fb2f75",
                    "resumeWindowMs": 60000,
                    "replayChannels": ["fixtures", "scores"],
                    "serverEntryIds": {"fixtures": "1766414833582-2542", "scores": "1766418736962-198"},
                },
            }
        )
    )
    assert isinstance(login_ok, LoginOk)
    assert login_ok.receive_type == "binary" and login_ok.access == {"live": True, "pregame": False}
    assert login_ok.resume.server_epoch == "0804ab61513c4681a3afd8afc1fb2f75"
    assert login_ok.resume.resume_window_ms == 60000
    assert login_ok.resume.replay_channels == ("fixtures", "scores")
    assert login_ok.resume.server_entry_ids["scores"] == "1766418736962-198"
    snap = parse_frame(
        '{"type":"snapshot_required","reason":"resume_window_exceeded","channels":["scores"],'
        '"serverEpoch":"e1","resumeWindowMs":60000,"serverEntryIds":{"scores":"1766418738000-220"}}'
    )
    assert snap == SnapshotRequired("resume_window_exceeded", ("scores",), "e1", 60000, {"scores": "1766418738000-220"})
    assert parse_frame('{"type":"resume_complete","serverEpoch":"e1"}') == ResumeComplete("e1")
    assert parse_frame('{"type":"reconnect","reason":"server_upgrade"}') == Reconnect("server_upgrade")
    assert parse_frame('{"type":"error","code":"invalid_api_key","message":"no"}') == FeedError("invalid_api_key", "no")


MALFORMED = [
    b"\xff\x00\x13",  # not msgpack, not JSON
    "{not json",
    "[1, 2]",  # not an object
    "42",
    msgpack.packb([1, 2, 3]),
    json.dumps({"channel": "odds", "type": "UPDATE"}),  # no payload
    json.dumps(stream("odds", {"odds": {}})),  # no fixtureId
    json.dumps(stream("odds", {"fixtureId": FIX, "odds": [1]})),  # odds not an object
    json.dumps({**stream("odds", odds_payload(2.0)), "entryId": "not-an-id"}),
    json.dumps(stream("scores", {"fixtureId": FIX, "scores": {"result": {"participant1Score": "two"}}})),
    json.dumps(stream("fixtures", {"fixtureId": FIX, "status": "live"})),
]
UNKNOWN = [
    json.dumps({"type": "pong"}),
    json.dumps(stream("currencies", {"fixtureId": FIX})),
    json.dumps({"channel": "odds", "type": "DELETE", "payload": {}}),
    json.dumps({"hello": "world"}),
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_frames_are_skipped_and_counted(raw):
    metrics = FeedMetrics()
    assert parse_frame(raw, metrics) is None
    assert (metrics.malformed, metrics.unknown, metrics.frames) == (1, 0, 0)


@pytest.mark.parametrize("raw", UNKNOWN)
def test_unknown_frames_are_skipped_and_counted(raw):
    metrics = FeedMetrics()
    assert parse_frame(raw, metrics) is None
    assert (metrics.malformed, metrics.unknown, metrics.frames) == (0, 1, 0)


def test_a_bad_entry_is_skipped_without_losing_the_rest_of_the_frame():
    payload = odds_payload(1.9)
    group = payload["odds"]["vertex"]
    good = next(iter(group.values()))
    group["bad-price"] = {**good, "outcomeId": 102, "price": "1.9"}
    group["bad-active"] = {**good, "outcomeId": 103, "active": None}
    group["bad-outcome"] = {**good, "outcomeId": True}
    group["not-an-object"] = 7
    payload["odds"]["pinnacle"] = "nope"
    metrics = FeedMetrics()
    frame = parse_frame(encode_json(stream("odds", payload)), metrics)
    assert [e.outcome_id for e in frame.entries] == [101]
    assert metrics.bad_entries == 5 and metrics.malformed == 0


def test_non_finite_odds_reach_pricing_which_refuses_them():
    raw = json.dumps(stream("odds", odds_payload(2.0))).replace("2.0", "NaN", 1)
    frame = parse_frame(raw)
    assert not frame.entries[0].price.is_finite()
    assert quote_sell(frame.entries[0].price, None, PricingConfig()).reason is Reason.ODDS_NOT_FINITE


# One metrics object across examples: after the first few, bad frames are logged one in a thousand
# (as in production), which keeps the fuzzing fast under pytest's log capture.
FUZZ_METRICS = FeedMetrics()


def _total(m: FeedMetrics) -> int:
    return m.frames + m.malformed + m.unknown


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_parse_never_raises_on_garbage(raw):
    before = _total(FUZZ_METRICS)
    parse_frame(raw, FUZZ_METRICS)
    assert _total(FUZZ_METRICS) == before + 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    channel=st.sampled_from(["odds", "fixtures", "scores", "x"]),
    payload=st.dictionaries(
        st.sampled_from(["fixtureId", "odds", "scores", "status", "sport", "participants", "startTime"]),
        json_values,
    ),
    as_msgpack=st.booleans(),
)
def test_parse_never_raises_on_frames_of_the_right_outline_with_wrong_insides(channel, payload, as_msgpack):
    obj = {"channel": channel, "type": "UPDATE", "payload": payload, "entryId": "1-1"}
    raw = msgpack.packb(obj) if as_msgpack else json.dumps(obj)
    before = _total(FUZZ_METRICS)
    parse_frame(raw, FUZZ_METRICS)
    assert _total(FUZZ_METRICS) == before + 1


def test_entry_ids():
    assert parse_entry_id("1766418736962-198") == (1766418736962, 198)
    assert parse_entry_id("1766418736962-198") < parse_entry_id("1766418736962-1000")
    for bad in ("", "12", "a-1", "1-", "-1", None, 5):
        assert parse_entry_id(bad) is None


def test_login_message():
    msg = json.loads(
        build_login(
            "KEY",
            channels=["fixtures", "scores", "odds"],
            sport_ids=[10, 11],
            tournament_ids=[17],
            fixture_ids=[FIX],
            bookmakers=["vertex"],
            receive_type="binary",
            server_epoch="e1",
            last_seen_id={"odds": "1-5"},
        )
    )
    assert msg == {
        "type": "login",
        "apiKey": "KEY",
        "receiveType": "binary",
        "channels": ["fixtures", "scores", "odds"],
        "sportIds": [10, 11],
        "tournamentIds": [17],
        "fixtureIds": [FIX],
        "bookmakers": ["vertex"],
        "serverEpoch": "e1",
        "lastSeenId": {"odds": "1-5"},
    }
    fresh = json.loads(build_login("KEY", channels=None, last_seen_id={"odds": "1-5"}))
    assert fresh == {"type": "login", "apiKey": "KEY", "receiveType": "json"}  # no cursors without an epoch
    with pytest.raises(ValueError):
        build_login("KEY", receive_type="zstd")
    with pytest.raises(ValueError):
        build_login("")


# --- replay format and the shipped sample --------------------------------------------------------


def test_replay_round_trip(tmp_path):
    path = tmp_path / "r.jsonl"
    with ReplayWriter(path, ReplayHeader(base_time_ms=1000, description="d")) as writer:
        writer.write("odds", {"fixtureId": FIX, "odds": {}}, t_ms=5)
        writer.write("scores", {"fixtureId": FIX, "scores": {}}, t_ms=3, source_entry_id="9-9")  # clamped to 5
    header, events = read_replay(path)
    assert header.base_time_ms == 1000 and header.description == "d"
    assert [(e.t_ms, e.channel) for e in events] == [(5, "odds"), (5, "scores")]


@pytest.mark.parametrize(
    "line",
    ['{"t": -1, "channel": "odds", "payload": {"fixtureId": "x"}}', '{"t": 1, "channel": "odds", "payload": {}}', "{"],
)
def test_a_bad_replay_line_is_an_error_with_its_line_number(tmp_path, line):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(ReplayHeader(base_time_ms=0).to_obj()) + "\n" + line + "\n")
    with pytest.raises(ValueError, match="line 2"):
        read_replay(path)


def test_rebase_moves_payload_timestamps():
    moved = rebase_payload("odds", odds_payload(2.0), 1000)
    assert next(iter(moved["odds"]["vertex"].values()))["changedAt"] == 1772366402000
    assert rebase_payload("fixtures", {"fixtureId": FIX, "startTime": 100}, 5000)["startTime"] == 105


def test_the_sample_is_what_the_generator_makes(tmp_path):
    out = tmp_path / "sample.jsonl"
    make_sample.write(out)
    assert out.read_bytes() == SAMPLE.read_bytes(), "regenerate: python -m trading.feed.samples.make_sample"


def test_the_sample_covers_what_the_engine_must_handle():
    header, events = read_replay(SAMPLE)
    metrics = FeedMetrics()
    frames = [
        parse_frame(encode_json({"channel": e.channel, "type": "UPDATE", "payload": e.payload}), metrics)
        for e in events
    ]
    assert metrics.malformed == metrics.unknown == metrics.bad_entries == 0
    fixtures = [f for f in frames if isinstance(f, FixtureUpdate)]
    odds = [e for f in frames if isinstance(f, OddsUpdate) for e in f.entries]
    scores = [f for f in frames if isinstance(f, ScoreUpdate)]
    assert {f.sport_id for f in fixtures} == {10, 11}
    assert len({f.fixture_id for f in fixtures}) == 5
    markets = {e.market_id for e in odds}
    assert {101, 104, 1010, 10170, 10172, 1070, 1100, 111, 121, 131} <= markets
    assert {e.outcome_id for e in odds if e.market_id == 101} == {101, 102, 103}
    assert {e.bookmaker for e in odds} == {"vertex", "pinnacle"}
    assert any(e.player_id for e in odds)  # a player market
    assert any(not e.active and e.market_active is False for e in odds)  # suspensions
    assert len({e.price for e in odds if e.outcome_id == 101}) > 10  # prices move
    assert any(e.price >= 1000 for e in odds) and any(e.price <= D("1.01") for e in odds)  # outside sane bounds
    finished = {f.fixture_id for f in fixtures if f.status_id == 2 and f.live is False}
    assert len(finished) == 5  # final results
    results = {s.fixture_id: s.result for s in scores if s.result}
    assert (results[FIX].participant1_score, results[FIX].participant2_score) == (2, 1)
    goals = [s for s in scores if s.fixture_id == FIX and s.result and s.result.participant1_score > 0]
    assert len(goals) >= 3  # goals with score updates
    assert [m["marketId"] for m in header.markets][:3] == [101, 104, 1010]


# --- client against the local gateway ------------------------------------------------------------


class Collector:
    def __init__(self) -> None:
        self.frames: list = []

    def __call__(self, frame) -> None:
        self.frames.append(frame)

    def stream(self, channel: str = "odds") -> list:
        return [f for f in self.frames if getattr(f, "channel", None) == channel and f.entry_id]

    def seqs(self, channel: str = "odds") -> list[int]:
        return [parse_entry_id(f.entry_id)[1] for f in self.stream(channel)]

    def of(self, kind: type) -> list:
        return [f for f in self.frames if isinstance(f, kind)]


FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.1)


async def wait_for(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


class Running:
    """Start a client, stop it at the end of the block."""

    def __init__(self, client: FeedClient) -> None:
        self.client = client

    async def __aenter__(self) -> FeedClient:
        self.task = asyncio.create_task(self.client.run())
        return self.client

    async def __aexit__(self, *exc) -> None:
        await self.client.stop()
        await asyncio.wait_for(self.task, 5)


def client_for(server: FeedServer, sink: Collector, **kwargs) -> FeedClient:
    kwargs.setdefault("backoff", FAST)
    kwargs.setdefault("snapshot_loader", make_snapshot_loader(server))
    kwargs.setdefault("rng", random.Random(1))
    return FeedClient(server.url, "KEY", sink, **kwargs)


def publish_odds(server: FeedServer, prices) -> list[str]:
    return [server.publish("odds", odds_payload(p)) for p in prices]


async def test_client_logs_in_and_receives_odds():
    sink = Collector()
    async with FeedServer() as server, Running(client_for(server, sink)) as client:
        await client.live.wait()
        publish_odds(server, [1.80, 1.85])
        await wait_for(lambda: len(sink.stream()) == 2)
    assert isinstance(sink.frames[0], LoginOk)
    assert [f.entries[0].price for f in sink.stream()] == [D("1.80"), D("1.85")]
    assert client.server_epoch == server.epoch
    assert client.last_seen["odds"] == sink.stream()[-1].entry_id


async def test_dropped_connection_resumes_from_last_seen_id_without_duplicates_or_gaps():
    sink = Collector()
    async with FeedServer() as server, Running(client_for(server, sink)) as client:
        await client.live.wait()
        publish_odds(server, [1.5 + i / 100 for i in range(10)])
        await wait_for(lambda: len(sink.stream()) == 10)
        # when the connection drops and ten more updates are published before the client is back
        server.drop_connections()
        publish_odds(server, [2.5 + i / 100 for i in range(10)])
        # then the client reconnects, resumes, gets the ten it missed replayed, then goes live
        await wait_for(lambda: client.metrics.resumes == 1)
        publish_odds(server, [3.5 + i / 100 for i in range(10)])
        await wait_for(lambda: len(sink.stream()) == 30)
    assert sink.seqs() == list(range(1, 31))  # no duplicates, no gaps
    second_login = [i for i, f in enumerate(sink.frames) if isinstance(f, LoginOk)][1]
    resumed = [i for i, f in enumerate(sink.frames) if isinstance(f, ResumeComplete)][0]
    replayed = [f for f in sink.frames[second_login:resumed] if isinstance(f, OddsUpdate)]
    assert [parse_entry_id(f.entry_id)[1] for f in replayed] == list(range(11, 21))
    m = client.metrics
    assert (m.connects, m.reconnects, m.resumes, m.snapshots, m.duplicates) == (2, 1, 1, 0, 0)


async def test_a_frame_sent_twice_is_delivered_once():
    sink = Collector()
    async with FeedServer() as server, Running(client_for(server, sink)) as client:
        await client.live.wait()
        publish_odds(server, [1.5, 1.6])
        await wait_for(lambda: len(sink.stream()) == 2)
        server.send_raw(encode_json(stream("odds", odds_payload(1.5), sink.stream()[0].entry_id)))
        publish_odds(server, [1.7])
        await wait_for(lambda: len(sink.stream()) == 3)
    assert sink.seqs() == [1, 2, 3]
    assert client.metrics.duplicates == 1


async def test_resume_refused_after_a_server_restart_loads_a_snapshot():
    sink = Collector()
    async with FeedServer() as server, Running(client_for(server, sink)) as client:
        await client.live.wait()
        server.publish(
            "scores", {"fixtureId": FIX, "scores": {"result": {"participant1Score": 1, "participant2Score": 0}}}
        )
        publish_odds(server, [1.5, 1.6])
        await wait_for(lambda: len(sink.stream()) == 2)
        old_epoch = server.epoch
        # when the gateway restarts (new epoch, no replay buffer) and prices move meanwhile
        server.restart()
        publish_odds(server, [1.7])
        # then the client's resume is refused and it loads the current state instead
        await wait_for(lambda: client.metrics.snapshots == 1 and client.live.is_set())
        await wait_for(lambda: any(f.entry_id is None for f in sink.of(OddsUpdate)))
        publish_odds(server, [1.8])
        await wait_for(lambda: sink.stream()[-1].entries[0].price == D("1.8"))
    (refusal,) = sink.of(SnapshotRequired)
    assert refusal.reason == "server_restarted" and refusal.server_epoch != old_epoch
    assert client.server_epoch == server.epoch
    snapshot = [f for f in sink.frames if getattr(f, "entry_id", "x") is None]
    assert [f.entries[0].price for f in snapshot if isinstance(f, OddsUpdate)] == [D("1.7")]
    assert [f.result.participant1_score for f in snapshot if isinstance(f, ScoreUpdate)] == [1]
    assert client.metrics.resumes == 0


async def test_resume_refused_when_the_cursor_is_older_than_the_resume_window():
    now = [1_000.0]
    sink = Collector()
    server = FeedServer(resume_window_ms=500, clock=lambda: now[0])
    async with server, Running(client_for(server, sink)) as client:
        await client.live.wait()
        publish_odds(server, [1.5])
        await wait_for(lambda: len(sink.stream()) == 1)
        # while the client is away, more than the window passes: the entries after its cursor expire
        server.drop_connections()
        publish_odds(server, [1.6, 1.7])
        now[0] += 1.0
        publish_odds(server, [1.8])
        await wait_for(lambda: client.metrics.snapshots == 1)
        await wait_for(lambda: any(f.entry_id is None for f in sink.of(OddsUpdate)))
        publish_odds(server, [1.9])
        await wait_for(lambda: sink.stream()[-1].entries[0].price == D("1.9"))
    (refusal,) = sink.of(SnapshotRequired)
    assert refusal.reason == "resume_window_exceeded" and refusal.channels == ("odds",)
    snapshot_prices = [f.entries[0].price for f in sink.of(OddsUpdate) if f.entry_id is None]
    assert snapshot_prices == [D("1.8")]  # the latest state, not the expired history
    assert sink.seqs() == [1, 5]  # nothing replayed twice; the gap is covered by the snapshot


async def test_a_failed_snapshot_is_retried_after_the_next_login():
    sink = Collector()
    calls = []
    server = FeedServer()
    real_loader = make_snapshot_loader(server)

    async def flaky_loader(channels):
        calls.append(channels)
        if len(calls) == 1:
            raise SnapshotUnavailable("REST snapshot timed out")
        return await real_loader(channels)

    async with server, Running(client_for(server, sink, snapshot_loader=flaky_loader)) as client:
        await client.live.wait()
        publish_odds(server, [1.5])
        await wait_for(lambda: len(sink.stream()) == 1)
        server.restart()
        publish_odds(server, [1.6])
        await wait_for(lambda: any(f.entry_id is None for f in sink.of(OddsUpdate)))
    assert len(calls) == 2 and len(client.delays) >= 1  # backed off, then loaded on the next login
    assert [f.entries[0].price for f in sink.of(OddsUpdate) if f.entry_id is None] == [D("1.6")]


async def test_channels_the_server_does_not_replay_are_reloaded_from_a_snapshot():
    sink = Collector()
    async with (
        FeedServer(replay_channels=("fixtures", "scores")) as server,
        Running(client_for(server, sink)) as client,
    ):
        await client.live.wait()
        publish_odds(server, [1.5])
        await wait_for(lambda: len(sink.stream()) == 1)
        server.drop_connections()
        publish_odds(server, [1.6])
        await wait_for(lambda: any(f.entry_id is None for f in sink.of(OddsUpdate)))
    assert [f.entries[0].price for f in sink.of(OddsUpdate) if f.entry_id is None] == [D("1.6")]


async def test_binary_receive_type_delivers_msgpack_odds():
    sink = Collector()
    async with FeedServer() as server, Running(client_for(server, sink, receive_type="binary")) as client:
        await client.live.wait()
        publish_odds(server, [1.808])
        await wait_for(lambda: len(sink.stream()) == 1)
    assert sink.frames[0].receive_type == "binary"
    assert sink.stream()[0].entries[0].price == D("1.808")


async def test_malformed_and_unknown_frames_do_not_stop_the_feed():
    sink = Collector()
    async with FeedServer() as server, Running(client_for(server, sink)) as client:
        await client.live.wait()
        for raw in [*MALFORMED, *UNKNOWN]:
            server.send_raw(raw)
        publish_odds(server, [1.5])
        await wait_for(lambda: len(sink.stream()) == 1)
    assert client.metrics.malformed == len(MALFORMED)
    assert client.metrics.unknown == len(UNKNOWN)
    assert client.metrics.connects == 1  # the connection survived


async def test_filters_of_the_login_are_applied():
    sink = Collector()
    server = FeedServer()
    async with server, Running(client_for(server, sink, bookmakers=["pinnacle"], fixture_ids=[FIX])) as client:
        await client.live.wait()
        server.publish("odds", odds_payload(1.5, bookmaker="vertex"))
        server.publish("odds", odds_payload(1.6, bookmaker="pinnacle", fixture="id-other"))
        server.publish("odds", odds_payload(1.7, bookmaker="pinnacle"))
        await wait_for(lambda: len(sink.stream()) == 1)
        await asyncio.sleep(0.05)
    assert [(f.fixture_id, f.entries[0].bookmaker, f.entries[0].price) for f in sink.stream()] == [
        (FIX, "pinnacle", D("1.7"))
    ]


async def test_refused_login_backs_off_and_keeps_trying():
    sink = Collector()
    async with FeedServer(api_keys={"right"}) as server, Running(client_for(server, sink)) as client:
        await wait_for(lambda: client.metrics.login_errors >= 3)
    assert sink.frames == []
    assert client.delays[:3] == sorted(client.delays[:3])  # growing delays
    assert server.logins == 0


async def test_unreachable_gateway_is_retried_with_backoff():
    sink = Collector()
    attempts = []
    async with FeedServer() as server:

        async def flaky(url):
            attempts.append(url)
            if len(attempts) <= 3:
                raise ConnectionRefusedError("not yet")
            return await connect(url)

        async with Running(client_for(server, sink, connect=flaky)) as client:
            await client.live.wait()
    assert len(attempts) == 4 and len(client.delays) == 3
    assert client.metrics.connects == 1


async def test_alive_is_false_when_the_gateway_stops_answering_without_closing():
    sink = Collector()
    async with FeedServer() as server, Running(client_for(server, sink)) as client:
        assert not await client.alive(0.2)  # not logged in yet
        await client.live.wait()
        assert await client.alive(1.0)
        for session in list(server._sessions):  # a silent network fault: no FIN, no RST, no pong
            session.conn.transport.pause_reading()
        assert not await client.alive(0.3)


async def test_server_reconnect_notice_makes_the_client_resume_at_once():
    sink = Collector()
    async with FeedServer() as server, Running(client_for(server, sink, backoff=Backoff(initial=5.0))) as client:
        await client.live.wait()
        publish_odds(server, [1.5])
        await wait_for(lambda: len(sink.stream()) == 1)
        await server.announce_reconnect(grace=0.01)
        publish_odds(server, [1.6])
        # no 5 s backoff: the notice means reconnect now, and resume fills the gap
        await wait_for(lambda: len(sink.stream()) == 2, timeout=2.0)
    assert sink.of(Reconnect) and client.delays == []
    assert sink.seqs() == [1, 2]


async def test_the_whole_sample_replays_through_a_dropped_connection_and_can_be_recorded(tmp_path):
    header, events = read_replay(SAMPLE)
    sink = Collector()
    recording = tmp_path / "rec.jsonl"
    with ReplayWriter(recording, ReplayHeader(base_time_ms=header.base_time_ms)) as recorder:
        async with (
            FeedServer() as server,
            Running(client_for(server, sink, receive_type="binary", recorder=recorder)) as client,
        ):
            await client.live.wait()
            half = len(events) // 2
            await server.play(events[:half], speed=0)
            await wait_for(lambda: sum(len(sink.stream(c)) for c in ("odds", "fixtures", "scores")) == half)
            server.drop_connections()
            await server.play(events[half:], speed=0)
            await wait_for(lambda: sum(len(sink.stream(c)) for c in ("odds", "fixtures", "scores")) == len(events))
    m = client.metrics
    assert (m.malformed, m.unknown, m.bad_entries, m.duplicates, m.resumes) == (0, 0, 0, 0, 1)
    for channel in ("odds", "fixtures", "scores"):
        assert sink.seqs(channel) == list(range(1, len(sink.seqs(channel)) + 1))
    _, recorded = read_replay(recording)
    assert [(e.channel, e.payload["fixtureId"]) for e in recorded] == [
        (e.channel, e.payload["fixtureId"]) for e in events
    ]


def test_backoff_grows_exponentially_with_bounded_jitter():
    backoff = Backoff(initial=0.5, maximum=30.0, factor=2.0, jitter=0.2)
    rng = random.Random(7)
    for attempt, base in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]):
        delay = backoff.delay(attempt, rng)
        assert base * 0.8 <= delay <= min(30.0, base * 1.2)
    assert backoff.delay(10_000, rng) <= 30.0
    assert Backoff(jitter=0).delay(3, rng) == 4.0


# --- the WebSocket layer (the websockets library) ------------------------------------------------

INTEROP = """
import asyncio
import json
import msgpack
import txaio
txaio.use_asyncio()
from autobahn.asyncio.websocket import (WebSocketClientFactory, WebSocketClientProtocol,
                                        WebSocketServerFactory, WebSocketServerProtocol)
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from trading.feed.client import FeedClient, run_until
from trading.feed.protocol import LoginOk, OddsUpdate, parse_frame
from trading.feed.server import FeedServer

ODDS = {"channel": "odds", "type": "UPDATE", "ts": 1, "payload": {"fixtureId": "f1", "odds": {"vertex": {
    f"f1:vertex:{o}:0": {"marketId": 101, "outcomeId": o, "price": 1.5, "active": True} for o in range(1, 60)}}}}

class Gateway(WebSocketServerProtocol):  # just enough of the gateway: login_ok, then two frames
    def onMessage(self, payload, isBinary):
        assert json.loads(payload)["type"] == "login" and not isBinary
        self.sendMessage(json.dumps({"type": "login_ok", "receiveType": "binary"}).encode(), False)
        self.sendMessage(msgpack.packb({**ODDS, "entryId": "1-1"}), True)
        self.sendMessage(json.dumps({**ODDS, "entryId": "1-2"}).encode(), False)

def accept_deflate(offers):
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)

async def main():
    loop = asyncio.get_running_loop()
    # our client against autobahn's server (fragmented messages, permessage-deflate)
    factory = WebSocketServerFactory()
    factory.protocol = Gateway
    factory.setProtocolOptions(autoFragmentSize=1000, perMessageCompressionAccept=accept_deflate)
    srv = await loop.create_server(factory, "127.0.0.1", 0)
    frames = []
    client = FeedClient(f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/ws?x=1", "KEY", frames.append)
    await run_until(client, lambda: len(frames) == 3, timeout=5)
    assert isinstance(frames[0], LoginOk), frames
    assert [len(f.entries) for f in frames[1:] if isinstance(f, OddsUpdate)] == [59, 59], frames
    srv.close()

    # autobahn's client against our server
    server = await FeedServer().start()
    done = loop.create_future()
    got = []
    class Client(WebSocketClientProtocol):
        def onOpen(self):
            self.sendMessage(json.dumps({"type": "login", "apiKey": "K", "receiveType": "binary"}).encode(), False)
        def onMessage(self, payload, isBinary):
            got.append((isBinary, parse_frame(payload)))
            if len(got) == 1:
                server.publish("odds", ODDS["payload"])
            else:
                self.sendClose(1000)
        def onClose(self, wasClean, code, reason):
            done.set_result((wasClean, code))
    cf = WebSocketClientFactory(server.url)
    cf.protocol = Client
    cf.setProtocolOptions(autoFragmentSize=4096)
    await loop.create_connection(cf, "127.0.0.1", server.port)
    assert await asyncio.wait_for(done, 5) == (True, 1000)
    assert [b for b, _ in got] == [False, True], got
    assert isinstance(got[0][1], LoginOk) and isinstance(got[1][1], OddsUpdate), got
    await server.close()
    print("interop ok")

asyncio.run(main())
"""


def test_feed_client_and_server_interoperate_with_autobahn():
    # autobahn's asyncio flavour cannot be imported once Django has loaded daphne: a fresh process
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", INTEROP], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and "interop ok" in result.stdout, result.stdout + result.stderr


async def test_the_feed_runs_in_a_django_process_that_loaded_daphne():
    # given what the run_odds_feed command has: Django set up, daphne's Twisted reactor installed
    import daphne.server  # noqa: F401
    import django
    import txaio

    django.setup()
    assert txaio.using_twisted
    # then the feed still connects, logs in and streams
    sink = Collector()
    async with FeedServer() as server, Running(client_for(server, sink)) as client:
        await client.live.wait()
        publish_odds(server, [1.9])
        await wait_for(lambda: len(sink.stream()) == 1)
    assert sink.stream()[0].entries[0].price == D("1.9")
