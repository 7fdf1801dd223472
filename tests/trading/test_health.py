"""Soft pause on stale inputs (trading.services.health): a source that stops beating soft-pauses the
clients it concerns through the controls, and its recovery lifts that pause (and only that one)."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.core.cache import cache

from tests.factories import AccountFactory, ClientFactory
from trading.choices import ControlAction
from trading.models import ClientTradingState, TradingControlEvent
from trading.selectors.controls import trading_status
from trading.services import controls
from trading.services.health import BEAT_KEY, forget, health_check, heartbeat, last_beats, stale_sources
from trading.tasks.health import health_check_task

pytestmark = pytest.mark.django_db

STALE = settings.FEED_STALE_SECONDS + 1


@pytest.fixture
def clients(db):
    on_kalshi = ClientFactory(name="k:vertex")
    AccountFactory(client=on_kalshi, exchange="kalshi")
    on_poly = ClientFactory(name="p:vertex")
    AccountFactory(client=on_poly, exchange="polymarket")
    return on_kalshi, on_poly


def status(client) -> str:
    return trading_status(client=client)["status"]


def test_sources_that_never_beat_do_not_pause_anyone(clients):
    report = health_check(now=time.time() + 3600)
    assert report.stale == {} and report.paused == []
    assert all(status(c) == "live" for c in clients)


def test_a_stale_feed_soft_pauses_every_client_and_its_recovery_lifts_it(clients, django_capture_on_commit_callbacks):
    heartbeat("feed")
    assert health_check().paused == []  # fresh

    with django_capture_on_commit_callbacks() as published:
        report = health_check(now=time.time() + STALE)

    assert set(report.stale) == {"feed"}
    assert sorted(report.paused) == sorted(c.name for c in clients)
    for client in clients:
        body = trading_status(client=client)
        assert (body["status"], body["softPaused"], body["tradingActive"]) == ("soft_paused", True, False)
        event = TradingControlEvent.objects.filter(client=client).latest("id")
        assert (event.action, event.actor, event.reason) == (ControlAction.SOFT_PAUSE, "system:health", "stale: feed")
    assert len(published) == len(clients)  # each client's new status goes to /ws/subscribe after commit

    # a second check while still stale changes nothing
    assert health_check(now=time.time() + STALE).paused == []

    heartbeat("feed")
    report = health_check()
    assert sorted(report.resumed) == sorted(c.name for c in clients)
    assert all(status(c) == "live" for c in clients)
    assert TradingControlEvent.objects.filter(action=ControlAction.SOFT_RESUME, actor="system:health").count() == 2


def test_a_stale_venue_stream_pauses_only_clients_with_an_account_there(clients):
    on_kalshi, on_poly = clients
    heartbeat("venue:kalshi")
    heartbeat("venue:polymarket")
    cache.set(BEAT_KEY + "venue:kalshi", time.time() - settings.VENUE_STREAM_STALE_SECONDS - 1)  # kalshi went quiet

    report = health_check()

    assert report.paused == ["k:vertex"]
    assert ClientTradingState.objects.get(client=on_kalshi).soft_pause_reason == "stale: venue:kalshi"
    assert status(on_poly) == "live"


def test_a_soft_pause_for_another_reason_is_not_lifted_by_recovery(clients):
    client = clients[0]
    controls.soft_pause(client=client, reason="risk: exposure cap", actor="system:risk")
    heartbeat("feed")

    report = health_check()

    assert report.resumed == [] and status(client) == "soft_paused"


def test_manual_controls_are_independent_of_the_stale_soft_pause(clients):
    client = clients[0]
    heartbeat("feed")
    health_check(now=time.time() + STALE)
    controls.client_pause(client=client, actor="api:test")
    heartbeat("feed")

    health_check()

    body = trading_status(client=client)
    assert (body["status"], body["softPaused"], body["manualPaused"]) == ("manual_paused", False, True)


def test_forgotten_sources_no_longer_count(clients):
    heartbeat("venue:kalshi")
    assert "venue:kalshi" in last_beats()
    forget("venue:kalshi")
    assert "venue:kalshi" not in last_beats()
    assert stale_sources(now=time.time() + 3600) == {}


def test_any_named_source_counts_once_it_has_beaten(clients):
    heartbeat("venue:custom-stream")
    assert "venue:custom-stream" in stale_sources(now=time.time() + settings.VENUE_STREAM_STALE_SECONDS + 1)


def test_the_beat_task_runs_the_check(clients):
    heartbeat("feed")
    result = health_check_task.apply(kwargs={}).get()
    assert result == {"stale": [], "paused": [], "resumed": []}


def test_the_check_is_on_beat_often_enough_for_the_threshold():
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "trading.health.check")
    assert entry["schedule"] <= 5
    assert settings.FEED_STALE_SECONDS == 10 and settings.VENUE_STREAM_STALE_SECONDS == 10
