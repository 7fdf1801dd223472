"""Odds-feed frames into the engine: fixtures, scores, settlement triggers and quoting.

The feed client (``trading.feed.client``, asyncio) hands every parsed frame to
:meth:`FeedIngest.handle`, which is synchronous and runs on one thread (``run_odds_feed`` bridges
with ``sync_to_async`` on a single-thread executor, so frames are applied in stream order):

* ``fixtures`` -> :func:`fixture_upsert` (fixture, tournament, participants, start time, status);
* ``scores`` -> :func:`fixture_scores_apply` (final score and period scores);
* a fixture that reaches a final status (finished, cancelled, abandoned) queues settlement, task
  ``trading.settlement.settle_fixture`` with the fixture's pk, after commit; so does a score change
  on a fixture already final (a late or corrected result: settlement is idempotent);
* ``odds`` -> for every entry, ``trading.services.quoting.quotes_on_price`` (one decision per
  quote key: place, replace, cancel, nothing).

Hot path (docs/engine.md, "Feed ingest"): entries of bookmakers no client hedges on are dropped
before any query; an entry whose price, limit and active flags equal the last one seen for its
``oddsId`` is not re-decided (the decision would be the same); fixture ids are resolved through an
in-memory map. Odds outside the sane bounds (``pricing.check_odds``) are counted and reach the
decision, which refuses to quote from them (and cancels what rests on the key).

Venue markets (``OutcomeMarket``) for the exchanges in ``settings.FEED_AUTO_MARKET_EXCHANGES``
(default: the simulated venue) are created on the first price of an outcome that an account on
that exchange would quote; the venue's market id is ``<fixtureId>:<outcomeId>:<playerId>``. Real
venues list their own markets; operators map them in the console.

Counters (frames by kind, odds entries, unknown fixtures, out-of-bounds odds, status regressions,
database errors, ...) are kept in memory and written to the cache by :meth:`FeedIngest.flush_metrics`
together with the client's ``FeedMetrics`` (``manage.py feed_status`` prints them).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from trading.choices import FixtureStatus
from trading.feed.protocol import (
    FeedMetrics,
    FixtureUpdate,
    OddsEntry,
    OddsUpdate,
    ResumeComplete,
    ScoreUpdate,
    SnapshotRequired,
)
from trading.models import Client, Fixture, OutcomeMarket, Tournament
from trading.pricing import check_odds

from .quoting import Action, Decision, quotes_cancel_not_quotable, quotes_on_price, quoting_accounts

log = logging.getLogger(__name__)

__all__ = [
    "FINAL_STATUSES",
    "SETTLE_TASK",
    "FeedIngest",
    "feed_metrics",
    "fixture_scores_apply",
    "fixture_status_from_feed",
    "fixture_upsert",
]

SETTLE_TASK = "trading.settlement.settle_fixture"
METRICS_KEY = "feed:metrics"

#: Statuses that settle a fixture. Postponed and interrupted fixtures may still be played.
FINAL_STATUSES = frozenset({FixtureStatus.FINISHED, FixtureStatus.CANCELLED, FixtureStatus.ABANDONED})

#: Decision reasons that depend on the fixture (or its configuration) only, not on the price.
NOT_QUOTABLE = frozenset({"fixture_over", "fixture_started", "no_tournament_config", "market_inactive"})

#: ``status.statusId`` of the fixtures channel (**assumed** values; the sample uses 0, 1 and 2).
STATUS_BY_ID = {
    0: FixtureStatus.NOT_STARTED,
    1: FixtureStatus.LIVE,
    2: FixtureStatus.FINISHED,
    3: FixtureStatus.CANCELLED,
    4: FixtureStatus.POSTPONED,
    5: FixtureStatus.INTERRUPTED,
    6: FixtureStatus.ABANDONED,
}
#: ``status.statusName`` words, read when the id is absent or unknown.
STATUS_BY_NAME = {
    "not started": FixtureStatus.NOT_STARTED,
    "finished": FixtureStatus.FINISHED,
    "ended": FixtureStatus.FINISHED,
    "ft": FixtureStatus.FINISHED,
    "cancelled": FixtureStatus.CANCELLED,
    "canceled": FixtureStatus.CANCELLED,
    "postponed": FixtureStatus.POSTPONED,
    "interrupted": FixtureStatus.INTERRUPTED,
    "suspended": FixtureStatus.INTERRUPTED,
    "abandoned": FixtureStatus.ABANDONED,
}


def fixture_status_from_feed(update: FixtureUpdate) -> FixtureStatus | None:
    """The fixture's status from a fixtures frame: ``statusId``, else ``statusName``, else the
    ``live`` flag; None when the frame says nothing about it."""
    if update.status_id is not None and update.status_id in STATUS_BY_ID:
        return STATUS_BY_ID[update.status_id]
    if update.status_name:
        named = STATUS_BY_NAME.get(update.status_name.strip().lower())
        if named is not None:
            return named
    if update.live is not None:
        return FixtureStatus.LIVE if update.live else FixtureStatus.NOT_STARTED
    return None


# --- settlement trigger ------------------------------------------------------------------------------------


def _send_settlement(fixture_pk: int) -> None:
    """Queue ``trading.settlement.settle_fixture`` for the fixture: the settlement service's own
    sender (in-process when eager, as the embedded default and tests run; a broker that cannot be
    reached is logged and the settlement sweep picks the fixture up)."""
    from trading.services.settlement import enqueue_settlement

    enqueue_settlement(fixture_pk)


def _settle_on_commit(fixture_pk: int) -> None:
    # robust: a broker that cannot be reached, or a settlement error in eager mode, is logged and
    # does not undo or stop the feed; the settlement sweep picks the fixture up.
    transaction.on_commit(lambda: _send_settlement(fixture_pk), robust=True)


# --- fixtures and scores -----------------------------------------------------------------------------------


def _tournament(update: FixtureUpdate) -> Tournament | None:
    if update.tournament_id is None:
        return None
    tournament, created = Tournament.objects.get_or_create(
        tournament_id=update.tournament_id,
        defaults={
            "name": (update.tournament_name or f"Tournament {update.tournament_id}")[:255],
            "sport_id": update.sport_id if update.sport_id is not None else 10,
            "sport_name": (update.sport_name or "")[:64],
        },
    )
    if created:
        log.info("feed: new tournament %s (%s), default quoting configuration", tournament.tournament_id, tournament)
    return tournament


def fixture_upsert(*, update: FixtureUpdate, counters: Counter | None = None) -> Fixture | None:
    """Create or update the fixture a fixtures frame describes. Returns None (and counts
    ``fixture_incomplete``) for a fixture we do not know whose frame lacks its start time or
    participants. A final status (finished, cancelled, abandoned) is kept: a later frame that would
    move the fixture out of it is ignored for the status (``status_regression``). Entering a final
    status queues settlement after commit. Locks the fixture row."""
    counters = counters if counters is not None else Counter()
    status = fixture_status_from_feed(update)
    start = dt.datetime.fromtimestamp(update.start_time, dt.UTC) if update.start_time is not None else None
    with transaction.atomic():
        tournament = _tournament(update)
        fixture = Fixture.objects.select_for_update().filter(fixture_id=update.fixture_id).first()
        if fixture is None:
            if start is None or not update.participant1_name or not update.participant2_name:
                counters["fixture_incomplete"] += 1
                return None
            fixture = Fixture.objects.create(
                fixture_id=update.fixture_id,
                tournament=tournament,
                sport_id=update.sport_id
                if update.sport_id is not None
                else (tournament.sport_id if tournament else 10),
                sport_name=(update.sport_name or "")[:64],
                participant1_name=update.participant1_name[:255],
                participant2_name=update.participant2_name[:255],
                start_time=start,
                status=status or FixtureStatus.NOT_STARTED,
            )
            counters["fixtures_created"] += 1
            if fixture.status in FINAL_STATUSES:
                _settle_on_commit(fixture.pk)
            return fixture
        changed: list[str] = []

        def put(name: str, value: Any) -> None:
            if value is not None and getattr(fixture, name) != value:
                setattr(fixture, name, value)
                changed.append(name)

        put("tournament", tournament)
        put("sport_id", update.sport_id)
        put("sport_name", update.sport_name[:64] if update.sport_name else None)
        put("participant1_name", update.participant1_name[:255] if update.participant1_name else None)
        put("participant2_name", update.participant2_name[:255] if update.participant2_name else None)
        put("start_time", start)
        was_final = fixture.status in FINAL_STATUSES
        if status is not None and status != fixture.status:
            if was_final:
                counters["status_regression"] += 1
                log.warning(
                    "feed: fixture %s is %s; status %s from the feed ignored",
                    fixture.fixture_id,
                    fixture.status,
                    status,
                )
            else:
                put("status", status)
        if changed:
            fixture.save(update_fields=[*changed, "updated_at"])
            counters["fixtures_updated"] += 1
        if not was_final and fixture.status in FINAL_STATUSES:
            counters["fixtures_final"] += 1
            _settle_on_commit(fixture.pk)
    return fixture


def _periods(scores: Mapping[str, Any]) -> dict[str, dict[str, int | None]]:
    return {
        name: {"participant1Score": s.participant1_score, "participant2Score": s.participant2_score}
        for name, s in scores.items()
        if name != "result"
    }


def fixture_scores_apply(*, update: ScoreUpdate, counters: Counter | None = None) -> Fixture | None:
    """Apply a scores frame: the ``result`` period is the fixture's score, the other periods are
    merged into ``period_scores``. Publishes a ``score`` event on change; on a fixture already
    final, a changed score queues settlement again. None for an unknown fixture. Locks the row."""
    counters = counters if counters is not None else Counter()
    from trading.events import publish_score

    with transaction.atomic():
        fixture = (
            Fixture.objects.select_for_update(of=("self",))
            .select_related("tournament")
            .filter(fixture_id=update.fixture_id)
            .first()
        )
        if fixture is None:
            counters["scores_unknown_fixture"] += 1
            return None
        changed: list[str] = []
        result = update.result
        if result is not None:
            for name, value in (
                ("participant1_score", result.participant1_score),
                ("participant2_score", result.participant2_score),
            ):
                if value is not None and getattr(fixture, name) != value:
                    setattr(fixture, name, value)
                    changed.append(name)
        periods = {**(fixture.period_scores or {}), **_periods(update.scores)}
        if periods != (fixture.period_scores or {}):
            fixture.period_scores = periods
            changed.append("period_scores")
        if not changed:
            return fixture
        fixture.save(update_fields=[*changed, "updated_at"])
        counters["scores_applied"] += 1
        publish_score(fixture)
        if fixture.status in FINAL_STATUSES and ("participant1_score" in changed or "participant2_score" in changed):
            _settle_on_commit(fixture.pk)
    return fixture


# --- the ingest --------------------------------------------------------------------------------------------


def feed_metrics() -> dict[str, Any]:
    """The counters the feed process last wrote to the cache (``{}`` if none)."""
    return cache.get(METRICS_KEY) or {}


class FeedIngest:
    """Applies feed frames in order. One instance per feed process, used from one thread."""

    BOOKMAKERS_TTL = 5.0  # seconds between reloads of the set of hedge bookmakers
    PARK_TTL = 30.0  # seconds an outcome of a fixture that may not be quoted is left alone
    MARKETS_TTL = 30.0  # seconds a negative "no account would quote this" answer is remembered

    def __init__(self, *, metrics: FeedMetrics | None = None, clock=time.monotonic) -> None:
        self.metrics = metrics
        self.counters: Counter[str] = Counter()
        self.latest: dict[str, OddsEntry] = {}  # oddsId -> the last entry seen
        self.blocked: set[str] = set()  # oddsIds whose last decision was "trading not allowed"
        self._clock = clock
        self._bookmakers: frozenset[str] = frozenset()
        self._bookmakers_at = -1e18
        self._markets_known: set[tuple[int, int, int, str]] = set()
        self._markets_miss: dict[tuple[int, str], float] = {}  # (fixture pk, bookmaker) -> when
        self._fixture_pk: dict[str, int] = {}
        self._fixture_status: dict[str, str] = {}
        # oddsId -> (fixture generation, when): its last decisions were "nothing, the fixture may not
        # be quoted" and nothing rests; its updates are skipped until the fixture changes (a
        # fixtures frame) or PARK_TTL passes (a console change, e.g. in-play quoting switched on).
        self._parked: dict[str, tuple[int, float]] = {}
        self._fixture_gen: Counter[str] = Counter()
        self.auto_exchanges = tuple(getattr(settings, "FEED_AUTO_MARKET_EXCHANGES", ()) or ())

    # --- dispatch ---------------------------------------------------------------------------------------
    def handle(self, frame: Any) -> list[Decision]:
        """Apply one parsed frame. Database connection errors are logged and counted and the frame
        is skipped (the connection is reset for the next one); anything else propagates."""
        try:
            return self._handle(frame)
        except (OperationalError, InterfaceError) as exc:
            from django.db import connection

            self.counters["db_errors"] += 1
            log.error("feed: database error on a %s frame, skipped: %s", getattr(frame, "kind", "?"), exc)
            connection.close()
            return []

    def _handle(self, frame: Any) -> list[Decision]:
        if isinstance(frame, OddsUpdate):
            self.counters["odds_frames"] += 1
            return self.on_odds(frame.entries)
        if isinstance(frame, FixtureUpdate):
            self.counters["fixtures_frames"] += 1
            before = self._fixture_status.get(frame.fixture_id)
            fixture = fixture_upsert(update=frame, counters=self.counters)
            self._fixture_gen[frame.fixture_id] += 1
            if fixture is not None:
                self._fixture_pk[fixture.fixture_id] = fixture.pk
                self._fixture_status[fixture.fixture_id] = fixture.status
                if before is not None and fixture.status != before:
                    # kick-off or the end: quotes that may no longer rest come down now, not at the
                    # next price update or the next sweep (resting in play is where a quote is picked off)
                    self.counters["quotes_cancelled_on_status"] += quotes_cancel_not_quotable(fixture_pk=fixture.pk)
                if fixture.status in FINAL_STATUSES:
                    self._forget_fixture(fixture.fixture_id)
            return []
        if isinstance(frame, ScoreUpdate):
            self.counters["scores_frames"] += 1
            fixture_scores_apply(update=frame, counters=self.counters)
            return []
        if isinstance(frame, SnapshotRequired):
            self.counters["snapshot_required"] += 1
        elif isinstance(frame, ResumeComplete):
            self.counters["resume_complete"] += 1
        return []

    def _forget_fixture(self, fixture_id: str) -> None:
        """A fixture that is over needs none of its prices any more (a long-running or looping feed
        would otherwise keep every price it ever saw)."""
        prefix = fixture_id + ":"
        for odds_id in [k for k in self.latest if k.startswith(prefix)]:
            del self.latest[odds_id]
            self.blocked.discard(odds_id)
            self._parked.pop(odds_id, None)

    # --- odds -------------------------------------------------------------------------------------------
    def _hedge_bookmakers(self) -> frozenset[str]:
        now = self._clock()
        if now - self._bookmakers_at > self.BOOKMAKERS_TTL:
            self._bookmakers = frozenset(
                Client.objects.filter(hedge_bookmaker__isnull=False).values_list("hedge_bookmaker__name", flat=True)
            )
            self._bookmakers_at = now
        return self._bookmakers

    def _fixture_known(self, fixture_id: str) -> int | None:
        pk = self._fixture_pk.get(fixture_id)
        if pk is None:
            pk = Fixture.objects.filter(fixture_id=fixture_id).values_list("pk", flat=True).first()
            if pk is not None:
                self._fixture_pk[fixture_id] = pk
        return pk

    def _ensure_markets(self, fixture_pk: int, entry: OddsEntry) -> None:
        """Map the outcome onto the auto-mapped exchanges where an account would quote it."""
        for exchange in self.auto_exchanges:
            key = (fixture_pk, entry.outcome_id, entry.player_id, exchange)
            if key in self._markets_known:
                continue
            miss = (fixture_pk, entry.bookmaker)
            if self._clock() - self._markets_miss.get(miss, -1e18) < self.MARKETS_TTL:
                continue
            fixture = Fixture.objects.filter(pk=fixture_pk).first()
            if (
                fixture is None
                or not quoting_accounts(fixture=fixture, bookmaker=entry.bookmaker, exchanges=[exchange]).exists()
            ):
                self._markets_miss[miss] = self._clock()
                continue
            OutcomeMarket.objects.get_or_create(
                fixture_id=fixture_pk,
                outcome_id=entry.outcome_id,
                player_id=entry.player_id,
                exchange=exchange,
                defaults={"exchange_outcome_id": f"{fixture.fixture_id}:{entry.outcome_id}:{entry.player_id}"},
            )
            self._markets_known.add(key)

    def on_odds(self, entries: Iterable[OddsEntry], *, force: bool = False) -> list[Decision]:
        """Decide every entry (see the module docstring). ``force`` re-decides unchanged entries."""
        decisions: list[Decision] = []
        bookmakers = self._hedge_bookmakers()
        for entry in entries:
            self.counters["odds_entries"] += 1
            previous = self.latest.get(entry.odds_id)
            self.latest[entry.odds_id] = entry
            if entry.bookmaker not in bookmakers:
                self.counters["odds_unhedged_bookmaker"] += 1
                continue
            if (
                not force
                and previous is not None
                and entry.odds_id not in self.blocked
                and (previous.price, previous.limit, previous.active, previous.market_active)
                == (entry.price, entry.limit, entry.active, entry.market_active)
            ):
                self.counters["odds_unchanged"] += 1
                continue
            parked = self._parked.get(entry.odds_id)
            if (
                not force
                and parked is not None
                and parked[0] == self._fixture_gen[entry.fixture_id]
                and self._clock() - parked[1] < self.PARK_TTL
            ):
                self.counters["odds_parked"] += 1
                continue
            if check_odds(entry.price) is not None:
                self.counters["odds_out_of_bounds"] += 1
            fixture_pk = self._fixture_known(entry.fixture_id)
            if fixture_pk is None:
                self.counters["odds_unknown_fixture"] += 1
                continue
            if self.auto_exchanges:
                self._ensure_markets(fixture_pk, entry)
            made = quotes_on_price(
                fixture_id=entry.fixture_id,
                bookmaker=entry.bookmaker,
                outcome_id=entry.outcome_id,
                player_id=entry.player_id,
                price=entry.price,
                limit=entry.limit,
                active=entry.active and entry.market_active is not False,
            )
            if any(d.reason == "trading_not_allowed" for d in made):
                self.blocked.add(entry.odds_id)
            else:
                self.blocked.discard(entry.odds_id)
            if made and all(d.action == Action.NONE and d.reason in NOT_QUOTABLE for d in made):
                self._parked[entry.odds_id] = (self._fixture_gen[entry.fixture_id], self._clock())
            else:
                self._parked.pop(entry.odds_id, None)
            for d in made:
                self.counters[f"decision_{d.action.value}"] += 1
            decisions.extend(made)
        return decisions

    def requote(self, *, blocked_only: bool = False) -> list[Decision]:
        """Decide again from the latest prices: every key (after a resync), or only those whose last
        decision was held back by the controls (after a pause, stop or soft pause lifts)."""
        ids = sorted(self.blocked) if blocked_only else sorted(self.latest)
        entries = [self.latest[i] for i in ids if i in self.latest]
        if not entries:
            return []
        self.counters["requotes"] += 1
        return self.on_odds(entries, force=True)

    def invalidate_odds(self) -> list[Decision]:
        """The odds stream lost updates we cannot recover (resume refused, no snapshot): every
        resting quote priced from our latest prices is cancelled (decided as an inactive side),
        and those prices are forgotten; the next update of each outcome quotes it afresh."""
        entries = [e._replace(active=False) for e in self.latest.values()]
        self.counters["odds_invalidated"] += 1
        decisions = self.on_odds(entries, force=True)
        self.latest.clear()
        self.blocked.clear()
        return decisions

    # --- metrics ----------------------------------------------------------------------------------------
    def flush_metrics(self, **extra: Any) -> dict[str, Any]:
        """Write the counters (and the client's ``FeedMetrics``) to the cache for ``feed_status``."""
        data: dict[str, Any] = {
            "updatedAt": timezone.now().isoformat(),
            "ingest": dict(self.counters),
            "latestPrices": len(self.latest),
            "blockedKeys": len(self.blocked),
            **extra,
        }
        if self.metrics is not None:
            data["client"] = self.metrics.as_dict()
        cache.set(METRICS_KEY, data, timeout=None)
        return data
