"""Feed ingest: fixtures and scores frames into the database, final statuses into settlement, odds
frames into quotes on the simulated venue for clients that quote everything (docs/engine.md,
"Feed ingest")."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.utils import timezone

from exchanges.connectors.registry import get_connector
from exchanges.models import SimVenueOrder, SimVenueOrderStatus
from hedging.choices import BetSettlementStatus, BetStatus
from hedging.models import HedgeBet
from tests.factories import AccountFactory, ClientFactory, FixtureFactory, TournamentFactory
from trading.choices import FixtureStatus, OrderStatus, SettlementStatus
from trading.feed.protocol import parse_frame
from trading.models import Fixture, LiveQuote, Order, OutcomeMarket, Tournament
from trading.services import controls
from trading.services.feed_ingest import FeedIngest, feed_metrics, fixture_upsert
from trading.services.fills import fills_poll

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

FIX = "id1000000861624412"
_seq = iter(range(1, 10**6))


def frame(channel: str, payload: dict):
    n = next(_seq)
    raw = json.dumps({"channel": channel, "type": "UPDATE", "payload": payload, "ts": 1772366400000 + n})
    parsed = parse_frame(raw)
    assert parsed is not None
    return parsed


def fixture_frame(fid=FIX, *, status_id=0, status_name="Not started", start_in=3600, tournament=(17, "Premier League")):
    start = int((timezone.now() + dt.timedelta(seconds=start_in)).timestamp())
    return frame(
        "fixtures",
        {
            "fixtureId": fid,
            "status": {"live": status_id == 1, "statusId": status_id, "statusName": status_name},
            "sport": {"sportId": 10, "sportName": "Soccer"},
            "tournament": {"tournamentId": tournament[0], "tournamentName": tournament[1], "categoryName": "England"},
            "startTime": start,
            "participants": {
                "participant1Id": 1,
                "participant1Name": "Arsenal",
                "participant2Id": 2,
                "participant2Name": "Chelsea",
            },
        },
    )


def scores_frame(fid=FIX, result=(1, 0), **periods):
    scores = {"result": {"participant1Score": result[0], "participant2Score": result[1]}}
    for name, (h, a) in periods.items():
        scores[name] = {"participant1Score": h, "participant2Score": a}
    return frame("scores", {"fixtureId": fid, "scores": scores})


def odds_frame(fid=FIX, *, bookmaker="vertex", prices=None, active=True, market_active=True):
    prices = prices or {101: 1.808}
    group = {
        f"{fid}:{bookmaker}:{outcome}:0": {
            "bookmaker": bookmaker,
            "marketId": 101,
            "outcomeId": outcome,
            "playerId": 0,
            "price": price,
            "limit": 5000.0,
            "active": active,
            "marketActive": market_active,
        }
        for outcome, price in prices.items()
    }
    return frame("odds", {"fixtureId": fid, "odds": {bookmaker: group}})


@pytest.fixture
def sim_client(db):
    """demo:vertex quoting every fixture on the simulated venue, as seed_demo sets it up."""
    client = ClientFactory(name="demo:vertex", quote_all_fixtures=True)
    account = AccountFactory(client=client, exchange="simulated", username="demo-vertex-sim")
    TournamentFactory(tournament_id=17, name="Premier League")
    return client, account


@pytest.fixture
def feed(django_capture_on_commit_callbacks):
    """A FeedIngest whose frames commit as in production: after-commit work (placement tasks,
    hedges, settlement, events) runs when each frame has been applied."""

    class Committing(FeedIngest):
        def handle(self, frame):
            with django_capture_on_commit_callbacks(execute=True):
                return super().handle(frame)

        def requote(self, **kw):
            with django_capture_on_commit_callbacks(execute=True):
                return super().requote(**kw)

        def invalidate_odds(self):
            with django_capture_on_commit_callbacks(execute=True):
                return super().invalidate_odds()

    return Committing()


def sim_open(account) -> list[SimVenueOrder]:
    return list(SimVenueOrder.objects.filter(account=account.username, status=SimVenueOrderStatus.OPEN))


# --- fixtures and scores -----------------------------------------------------------------------------------------


def test_fixtures_frame_creates_the_fixture_and_an_unknown_tournament():
    ingest = FeedIngest()
    ingest.handle(fixture_frame(tournament=(8, "LaLiga")))

    fixture = Fixture.objects.get(fixture_id=FIX)
    assert (fixture.participant1_name, fixture.participant2_name) == ("Arsenal", "Chelsea")
    assert fixture.status == FixtureStatus.NOT_STARTED and fixture.start_time > timezone.now()
    assert fixture.tournament.tournament_id == 8 and fixture.tournament.name == "LaLiga"
    assert Tournament.objects.get(tournament_id=8).quote_in_play is False  # default config: pre-match only
    assert ingest.counters["fixtures_created"] == 1


def test_status_follows_the_feed_and_a_final_status_is_kept():
    ingest = FeedIngest()
    ingest.handle(fixture_frame())
    ingest.handle(fixture_frame(status_id=1, status_name="1st half"))
    assert Fixture.objects.get(fixture_id=FIX).status == FixtureStatus.LIVE
    ingest.handle(fixture_frame(status_id=2, status_name="Finished"))
    assert Fixture.objects.get(fixture_id=FIX).status == FixtureStatus.FINISHED

    ingest.handle(fixture_frame(status_id=0, status_name="Not started"))  # a replayed lap, a confused feed

    assert Fixture.objects.get(fixture_id=FIX).status == FixtureStatus.FINISHED
    assert ingest.counters["status_regression"] == 1


@pytest.mark.parametrize(
    ("status_id", "name", "expected"),
    [
        (3, "Cancelled", FixtureStatus.CANCELLED),
        (6, "Abandoned", FixtureStatus.ABANDONED),
        (4, "Postponed", FixtureStatus.POSTPONED),
        (None, "Abandoned", FixtureStatus.ABANDONED),
        (99, "Finished", FixtureStatus.FINISHED),
    ],
)
def test_status_ids_and_names_map_to_fixture_statuses(status_id, name, expected):
    FeedIngest().handle(fixture_frame(status_id=status_id, status_name=name))
    assert Fixture.objects.get(fixture_id=FIX).status == expected


def test_a_new_fixture_without_start_time_or_participants_is_skipped_and_counted():
    ingest = FeedIngest()
    ingest.handle(frame("fixtures", {"fixtureId": FIX, "status": {"statusId": 0}}))
    assert not Fixture.objects.filter(fixture_id=FIX).exists()
    assert ingest.counters["fixture_incomplete"] == 1


def test_scores_set_the_result_and_merge_periods_and_publish_a_score_event(django_capture_on_commit_callbacks):
    ingest = FeedIngest()
    ingest.handle(fixture_frame(status_id=1, status_name="1st half"))
    with django_capture_on_commit_callbacks() as callbacks:
        ingest.handle(scores_frame(result=(1, 0), **{"1stHalf": (1, 0)}))
    ingest.handle(scores_frame(result=(1, 1), **{"2ndHalf": (0, 1)}))

    fixture = Fixture.objects.get(fixture_id=FIX)
    assert (fixture.participant1_score, fixture.participant2_score) == (1, 1)
    assert fixture.period_scores == {
        "1stHalf": {"participant1Score": 1, "participant2Score": 0},
        "2ndHalf": {"participant1Score": 0, "participant2Score": 1},
    }
    assert len(callbacks) == 1  # the score event, after commit


def test_scores_for_an_unknown_fixture_are_counted_not_raised():
    ingest = FeedIngest()
    ingest.handle(scores_frame(fid="id-nope"))
    assert ingest.counters["scores_unknown_fixture"] == 1


def test_a_filled_quote_is_hedged_and_settled_when_the_feed_finishes_the_fixture(
    sim_client, feed, eager_hedging, django_capture_on_commit_callbacks
):
    client, account = sim_client
    ingest = feed
    ingest.handle(fixture_frame())
    ingest.handle(odds_frame(prices={101: 1.808}))
    (venue_order,) = sim_open(account)
    get_connector("simulated").match(venue_order_id=venue_order.venue_order_id, size=Decimal("40"))
    with django_capture_on_commit_callbacks(execute=True):
        fills_poll(account=account)  # the fill, and its hedge on vertex (simulated bookmaker)
    ingest.handle(fixture_frame(status_id=1, status_name="1st half"))
    ingest.handle(scores_frame(result=(2, 0)))
    ingest.handle(fixture_frame(status_id=2, status_name="Finished"))

    order = Order.objects.get(account=account, outcome_id=101, matched_stake__gt=0)
    assert order.matched_stake == Decimal("40")
    bet = HedgeBet.objects.get(order=order)
    assert bet.bet_status == BetStatus.PLACED
    # we sold "home wins" and home won 2-0: the order lost, the hedge (backing home) won
    assert order.settlement_status == SettlementStatus.LOST and order.settled_at is not None
    bet.refresh_from_db()
    assert bet.settlement_status == BetSettlementStatus.WON
    assert ingest.counters["fixtures_final"] == 1


def test_fixture_upsert_queues_settlement_once_per_final_transition(django_capture_on_commit_callbacks):
    FeedIngest().handle(fixture_frame(status_id=1))
    with django_capture_on_commit_callbacks() as callbacks:
        fixture_upsert(update=fixture_frame(status_id=2, status_name="Finished"))
        fixture_upsert(update=fixture_frame(status_id=2, status_name="Finished"))
    assert len(callbacks) == 1


# --- odds -> quotes --------------------------------------------------------------------------------------------


def test_odds_quote_on_the_simulated_venue_through_an_auto_mapped_market(sim_client, feed):
    client, account = sim_client
    ingest = feed
    ingest.handle(fixture_frame())

    decisions = ingest.handle(odds_frame(prices={101: 1.808, 102: 3.6}))

    assert [d.action.value for d in decisions] == ["place", "place"]
    market = OutcomeMarket.objects.get(fixture__fixture_id=FIX, outcome_id=101, exchange="simulated")
    assert market.exchange_outcome_id == f"{FIX}:101:0"
    orders = Order.objects.filter(account=account).order_by("outcome_id")
    assert [(o.outcome_id, o.order_status, o.order_cents, o.back) for o in orders] == [
        (101, OrderStatus.PLACED, Decimal("0.58"), False),
        (102, OrderStatus.PLACED, Decimal("0.30"), False),
    ]
    assert {v.market for v in sim_open(account)} == {f"{FIX}:101:0", f"{FIX}:102:0"}


def test_a_price_move_replaces_and_a_suspension_cancels(sim_client, feed):
    client, account = sim_client
    ingest = feed
    ingest.handle(fixture_frame())
    ingest.handle(odds_frame(prices={101: 1.808}))
    ingest.handle(odds_frame(prices={101: 1.6}))
    assert [v.price for v in sim_open(account)] == [Decimal("0.65")]

    ingest.handle(odds_frame(prices={101: 1.6}, active=False, market_active=False))

    assert sim_open(account) == []
    assert not Order.objects.filter(account=account).open().exists()


def test_unchanged_prices_and_bookmakers_nobody_hedges_on_are_not_decided(sim_client, feed):
    client, account = sim_client
    ingest = feed
    ingest.handle(fixture_frame())
    ingest.handle(odds_frame(prices={101: 1.808}))
    assert ingest.handle(odds_frame(prices={101: 1.808})) == []
    assert ingest.handle(odds_frame(bookmaker="pinnacle", prices={101: 1.7})) == []
    assert ingest.counters["odds_unchanged"] == 1 and ingest.counters["odds_unhedged_bookmaker"] == 1
    assert Order.objects.filter(account=account).count() == 1


def test_odds_outside_sane_bounds_are_counted_and_not_quoted(sim_client, feed):
    client, account = sim_client
    ingest = feed
    ingest.handle(fixture_frame())
    ingest.handle(odds_frame(prices={101: 1.808}))

    decisions = ingest.handle(odds_frame(prices={101: 1001.0}))

    assert [(d.action.value, d.reason) for d in decisions] == [("cancel", "odds_too_high")]
    assert ingest.counters["odds_out_of_bounds"] == 1
    assert sim_open(account) == []


def test_odds_for_a_fixture_we_do_not_know_are_skipped():
    ingest = FeedIngest()
    assert ingest.handle(odds_frame(fid="id-unknown")) == []


def test_an_unquotable_fixture_is_decided_once_then_parked_until_it_changes(sim_client, feed):
    client, account = sim_client
    ingest = feed
    ingest.handle(fixture_frame(status_id=1, status_name="1st half"))  # pre-match only and live

    first = ingest.handle(odds_frame(prices={101: 1.808}))
    second = ingest.handle(odds_frame(prices={101: 1.7}))

    assert [(d.action.value, d.reason) for d in first] == [("none", "fixture_started")]
    assert second == [] and ingest.counters["odds_parked"] == 1
    Tournament.objects.filter(tournament_id=17).update(quote_in_play=True)
    ingest.handle(fixture_frame(status_id=1, status_name="2nd half"))  # the fixture changed: decide again
    assert [d.action.value for d in ingest.handle(odds_frame(prices={101: 1.6}))] == ["place"]


def test_quotes_held_back_by_a_pause_are_placed_when_it_lifts(sim_client, feed):
    client, account = sim_client
    ingest = feed
    ingest.handle(fixture_frame())
    controls.soft_pause(client=client, reason="stale: feed")
    ingest.handle(odds_frame(prices={101: 1.808}))
    assert not Order.objects.filter(account=account).exists()
    assert ingest.requote(blocked_only=True) and not Order.objects.filter(account=account).exists()

    controls.soft_resume(client=client)
    decisions = ingest.requote(blocked_only=True)

    assert [d.action.value for d in decisions] == ["place"]
    assert len(sim_open(account)) == 1 and not ingest.blocked


def test_invalidating_odds_cancels_quotes_priced_from_them(sim_client, feed):
    client, account = sim_client
    ingest = feed
    ingest.handle(fixture_frame())
    ingest.handle(odds_frame(prices={101: 1.808, 102: 3.6}))
    assert len(sim_open(account)) == 2

    ingest.invalidate_odds()

    assert sim_open(account) == [] and ingest.latest == {}
    assert {q.last_reason for q in LiveQuote.objects.filter(account=account)} == {"outcome_inactive"}


def test_metrics_are_flushed_to_the_cache():
    ingest = FeedIngest()
    ingest.handle(fixture_frame())
    ingest.flush_metrics()
    data = feed_metrics()
    assert data["ingest"]["fixtures_created"] == 1 and "updatedAt" in data


def test_accounts_without_quote_all_or_a_rule_get_no_market(db):
    client = ClientFactory(name="acme:vertex")
    account = AccountFactory(client=client, exchange="simulated", username="acme-sim")
    FixtureFactory(fixture_id=FIX)
    ingest = FeedIngest()
    assert ingest.handle(odds_frame(prices={101: 1.808})) == []
    assert not OutcomeMarket.objects.exists()
    assert not Order.objects.filter(account=account).exists()


def test_prices_of_a_finished_fixture_are_forgotten(sim_client, feed):
    feed.handle(fixture_frame())
    feed.handle(odds_frame(prices={101: 1.808, 102: 3.6}))
    assert len(feed.latest) == 2
    feed.handle(fixture_frame(status_id=2, status_name="Finished"))
    assert feed.latest == {}


def test_kick_off_takes_pre_match_quotes_down_at_once(sim_client, feed):
    client, account = sim_client
    feed.handle(fixture_frame())
    feed.handle(odds_frame(prices={101: 1.808, 102: 3.6}))
    assert len(sim_open(account)) == 2

    feed.handle(fixture_frame(status_id=1, status_name="1st half"))  # no price update needed

    assert sim_open(account) == [] and feed.counters["quotes_cancelled_on_status"] == 2
