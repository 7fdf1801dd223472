"""Settlement of MM orders and their hedge bets once a fixture's result is known.

Entry points:

* :func:`settle_fixture` — settle every order of a fixture and every placed hedge bet of those
  orders (the Celery task ``trading.settlement.settle_fixture`` and the sweep call it; the feed
  sends that task when a fixture finishes; the console calls it through the operator actions).
* :func:`fixture_result_set` and :func:`fixture_void` — the operator's result and void.

Guarantees (docs/settlement.md):

* **Idempotent.** Only ``UNDECIDED`` orders and ``UNDECIDED`` placed bets are written; a second run,
  or a concurrent one, finds nothing left and changes nothing.
* **One transaction per order**, holding, in this order: the fixture row ``FOR SHARE`` (so the
  operator cannot change a result while orders are being settled with it), the order row
  ``FOR NO KEY UPDATE`` (as the fill service does), then the order's undecided placed bets
  ``FOR UPDATE`` in id order, and only then any write. Writes fire the PnL dirty-day triggers
  (trading/0003), which lock the marker of the order's (client, day); one transaction touches one
  such marker, so settlement cannot deadlock with another settlement, the fill service
  (order -> marker) or the hedge service (bet -> marker).
* **Nothing guessed.** An outcome id not in the catalog (``trading.markets``), or one the rules
  cannot decide (``Unsettleable``), leaves the order and its bets ``UNDECIDED`` and is reported in
  the summary and the log. A voided fixture (``cancelled``, ``abandoned``) voids every order.
* **Events** for every order and bet written, on ``/ws/subscribe`` after commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from hedging.choices import BetSettlementStatus, BetStatus
from hedging.models import HedgeBet
from trading.choices import OPEN_ORDER_STATUSES, FixtureStatus, SettlementStatus
from trading.events import publish_bet, publish_order, publish_score
from trading.markets import CATALOG, MarketType, lookup
from trading.models import Client, Fixture, Order
from trading.settlement_rules import (
    FINAL_STATUSES,
    SETTLE_BY_SCORE,
    VOID_STATUSES,
    FinalResult,
    Result,
    Unsettleable,
    bet_result,
    order_result,
)

from .orders import orders_cancel_all

log = logging.getLogger(__name__)

SETTLEMENT_ACTOR = "settlement"
#: Fixtures the sweep hands to the settlement task per run.
SWEEP_LIMIT = 200


def _score_settled_outcomes() -> dict[int | None, list[int]]:
    """sport id -> outcome ids a final score settles (player props need scorer data the feed does
    not carry); key None: markets of any sport."""
    by_sport: dict[int | None, list[int]] = {}
    for oid, outcome in sorted(CATALOG.items()):
        if outcome.market_type != MarketType.GOALSCORER:
            by_sport.setdefault(outcome.market.sport_id, []).append(oid)
    return by_sport


SCORE_SETTLED_OUTCOMES = _score_settled_outcomes()


class SettlementError(Exception):
    """An operator request that cannot be applied; ``code`` and ``message`` name the problem."""

    code = "invalid_result"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidResult(SettlementError):
    code = "invalid_result"


class ResultConflict(SettlementError):
    """The fixture already has settled orders under a different result: re-settlement (undoing
    and redoing a settlement) is not supported."""

    code = "already_settled"


@dataclass(frozen=True)
class Unsettled:
    order_id: int
    outcome_id: int
    player_id: int
    reason: str


@dataclass
class SettlementSummary:
    fixture_id: str
    status: str
    final: bool
    orders_settled: list[int] = field(default_factory=list)
    bets_settled: list[int] = field(default_factory=list)
    unsettled: list[Unsettled] = field(default_factory=list)
    #: Orders still open at their venue when settled (the cancel was not confirmed).
    still_open: list[int] = field(default_factory=list)
    #: Orders settled earlier whose result differs from what the fixture's result gives now (the
    #: result was corrected after settlement): reported, never re-settled (not supported).
    mismatched: list[int] = field(default_factory=list)
    #: Set when the fixture became final too recently (SETTLEMENT_GRACE_SECONDS): nothing was done.
    waiting_until: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if not self.final:
            return f"fixture {self.fixture_id} is {self.status}: nothing to settle"
        if self.waiting_until is not None:
            return f"fixture {self.fixture_id} ({self.status}): settles after {self.waiting_until:%H:%M:%S} UTC"
        text = f"fixture {self.fixture_id} ({self.status}): {len(self.orders_settled)} order(s) and " + (
            f"{len(self.bets_settled)} bet(s) settled"
        )
        if self.unsettled:
            reasons = ", ".join(sorted({u.reason for u in self.unsettled}))
            text += f"; {len(self.unsettled)} order(s) left undecided ({reasons})"
        if self.still_open:
            text += f"; {len(self.still_open)} order(s) still open at the venue"
        if self.mismatched:
            text += f"; {len(self.mismatched)} order(s) settled earlier disagree with the result now"
        return text


def settlement_grace() -> dt.timedelta:
    """How long a final fixture must stay unchanged before it is settled (0: at once)."""
    return dt.timedelta(seconds=float(getattr(settings, "SETTLEMENT_GRACE_SECONDS", 0) or 0))


def final_result_of(fixture: Fixture, *, scorers: frozenset[int] | None = None) -> FinalResult:
    return FinalResult(
        status=fixture.status, home=fixture.participant1_score, away=fixture.participant2_score, scorers=scorers
    )


# --- locks ----------------------------------------------------------------------------------------------------


def lock_fixture_shared(*, fixture_pk: int) -> Fixture:
    """``SELECT ... FOR SHARE`` the fixture row: settlement transactions hold it together, and it
    keeps the operator's result change (``FOR UPDATE``) out until they commit. First lock of a
    settlement transaction. On SQLite (one writer at a time) a plain read."""
    if settings.IS_POSTGRES:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM trading_fixture WHERE id = %s FOR SHARE", [fixture_pk])
    return Fixture.objects.get(pk=fixture_pk)


def lock_order_for_settlement(*, order_id: int) -> Order:
    """``SELECT ... FOR NO KEY UPDATE OF`` the order (as ``fills.lock_order_for_fill``: concurrent
    hedge-bet inserts' foreign-key checks pass). After :func:`lock_fixture_shared`."""
    return (
        Order.objects.select_related("account", "fixture", "client")
        .select_for_update(of=("self",), no_key=True)
        .get(pk=order_id)
    )


def lock_bets_for_settlement(*, order_id: int) -> list[HedgeBet]:
    """``SELECT ... FOR UPDATE OF`` the order's placed, undecided bets in id order. After
    :func:`lock_order_for_settlement` and before any write (a write takes the PnL marker, which
    the hedge service takes after its bet lock)."""
    return list(
        HedgeBet.objects.select_related("client", "bookmaker")
        .select_for_update(of=("self",))
        .filter(order_id=order_id, bet_status=BetStatus.PLACED, settlement_status=BetSettlementStatus.UNDECIDED)
        .order_by("id")
    )


# --- settling -------------------------------------------------------------------------------------------------


def _decide(order: Order, fixture: Fixture, scorers: frozenset[int] | None = None) -> Result | Unsettled:
    final = final_result_of(fixture, scorers=scorers)
    if final.status in VOID_STATUSES:
        return Result.VOID  # the whole event is void: every order, whatever its market
    outcome = lookup(order.outcome_id, sport_id=fixture.sport_id)
    if outcome is None:
        return Unsettled(order.pk, order.outcome_id, order.player_id, "unknown_outcome")
    try:
        return order_result(outcome, final, back=order.back, player_id=order.player_id)
    except Unsettleable as exc:
        return Unsettled(order.pk, order.outcome_id, order.player_id, exc.reason)


def _settle_order(
    *, order_id: int, fixture_pk: int, summary: SettlementSummary, scorers: frozenset[int] | None = None
) -> None:
    """Settle one order and its placed bets in one transaction (lock order: module docstring)."""
    with transaction.atomic():
        fixture = lock_fixture_shared(fixture_pk=fixture_pk)
        if fixture.status not in FINAL_STATUSES:
            return  # the result was withdrawn meanwhile
        order = lock_order_for_settlement(order_id=order_id)
        bets = lock_bets_for_settlement(order_id=order_id)
        now = timezone.now()
        if order.settlement_status == SettlementStatus.UNDECIDED:
            decided = _decide(order, fixture, scorers)
            if isinstance(decided, Unsettled):
                summary.unsettled.append(decided)
                return
            order.settlement_status = decided.value
            order.settled_at = now
            order.updated_at = now
            order.save(update_fields=["settlement_status", "settled_at", "updated_at"])
            publish_order(order)
            summary.orders_settled.append(order.pk)
            if order.order_status in OPEN_ORDER_STATUSES:
                summary.still_open.append(order.pk)
        bet_status = BetSettlementStatus(bet_result(Result(order.settlement_status)).value.lower())
        for bet in bets:
            bet.settlement_status = bet_status
            bet.settled_at = now
            bet.save(update_fields=["settlement_status", "settled_at", "updated_at"])
            publish_bet(bet)
            summary.bets_settled.append(bet.pk)


def _cancel_open_orders(fixture: Fixture, *, actor: str) -> None:
    """Ask the venues to cancel the fixture's open orders first (each under its row lock, no other
    lock held). Best effort: an order whose cancel is not confirmed is settled all the same."""
    client_ids = (
        Order.objects.filter(fixture=fixture, order_status__in=OPEN_ORDER_STATUSES)
        .order_by("client_id")
        .values_list("client_id", flat=True)
        .distinct()
    )
    for client in Client.objects.filter(pk__in=list(client_ids)).order_by("pk"):
        report = orders_cancel_all(client=client, actor=actor, fixture_id=fixture.fixture_id)
        for failure in report.failed:
            log.warning(
                "settlement of %s: order %s not cancelled: %s", fixture.fixture_id, failure.order_id, failure.message
            )


def _mismatched(*, fixture_pk: int) -> list[int]:
    """Settled orders of the fixture whose stored result is not what its current result gives."""
    fixture = Fixture.objects.get(pk=fixture_pk)
    if fixture.status not in FINAL_STATUSES:
        return []
    rows = (
        Order.objects.filter(fixture_id=fixture_pk)
        .exclude(settlement_status=SettlementStatus.UNDECIDED)
        .only("id", "outcome_id", "player_id", "back", "settlement_status")
        .order_by("id")
    )
    out = []
    for order in rows:
        decided = _decide(order, fixture)
        if isinstance(decided, Result) and decided.value != order.settlement_status:
            out.append(order.pk)
    return out


def settle_fixture(
    *,
    fixture_id: int,
    actor: str = SETTLEMENT_ACTOR,
    wait_for_grace: bool = True,
    scorers: Iterable[int] | None = None,
) -> SettlementSummary:
    """Settle fixture ``fixture_id`` (the row's pk) if its status is final: every ``UNDECIDED``
    order gets its result (open orders are asked to cancel first), and every placed
    ``undecided`` bet of the fixture's orders the mirror of its order's result.

    With ``wait_for_grace`` (the feed's and the sweep's runs), a fixture written less than
    ``SETTLEMENT_GRACE_SECONDS`` ago is left for the sweep (``waiting_until`` in the summary); the
    operator's actions settle at once.

    ``scorers``: the player ids who scored, when the operator knows them (the feed does not say):
    anytime-goalscorer orders then settle too; None leaves them undecided (``no_scorer_data``).
    They are not stored: a later run without them leaves any goalscorer order still undecided.

    Safe to run twice and concurrently: see the module docstring. Raises ``Fixture.DoesNotExist``.
    Orders are settled whether or not they matched (a late fill on a cancelled order still takes
    the order's result); bets still ``pending`` are settled by a later run once placed.
    """
    fixture = Fixture.objects.get(pk=fixture_id)
    summary = SettlementSummary(fixture_id=fixture.fixture_id, status=fixture.status, final=False)
    if fixture.status not in FINAL_STATUSES:
        return summary
    summary.final = True
    scorer_set = None if scorers is None else frozenset(int(p) for p in scorers)
    grace = settlement_grace()
    if wait_for_grace and grace and fixture.updated_at > timezone.now() - grace:
        summary.waiting_until = fixture.updated_at + grace
        log.info("%s", summary)
        return summary
    _cancel_open_orders(fixture, actor=actor)
    undecided_bets = Q(bets__bet_status=BetStatus.PLACED, bets__settlement_status=BetSettlementStatus.UNDECIDED)
    order_ids = list(
        Order.objects.filter(fixture_id=fixture.pk)
        .filter(Q(settlement_status=SettlementStatus.UNDECIDED) | undecided_bets)
        .order_by("id")
        .values_list("id", flat=True)
        .distinct()
    )
    for order_id in order_ids:
        _settle_order(order_id=order_id, fixture_pk=fixture.pk, summary=summary, scorers=scorer_set)
    summary.mismatched = _mismatched(fixture_pk=fixture.pk)
    if summary.mismatched:
        log.error(
            "fixture %s: orders %s were settled on another result than the fixture's now (%s %s-%s); "
            "re-settlement is not supported: resolve by hand",
            fixture.fixture_id,
            summary.mismatched,
            fixture.status,
            fixture.participant1_score,
            fixture.participant2_score,
        )
    if summary.unsettled:
        log.warning(
            "settlement of %s by %s left %d order(s) undecided: %s",
            fixture.fixture_id,
            actor,
            len(summary.unsettled),
            [(u.order_id, u.outcome_id, u.player_id, u.reason) for u in summary.unsettled],
        )
    log.info("%s (by %s)", summary, actor)
    return summary


def fixtures_needing_settlement(*, limit: int = SWEEP_LIMIT) -> list[int]:
    """Pks of fixtures in a final status with something settlement could still write: undecided
    orders it can decide, or placed undecided bets of settled orders (bets placed after their
    order was settled). Orders the rules cannot decide are left out, so they are not retried
    every minute."""
    decidable = Q(pk__in=[])
    for sport_id, outcome_ids in SCORE_SETTLED_OUTCOMES.items():
        sport = Q() if sport_id is None else Q(fixture__sport_id=sport_id)
        decidable |= sport & Q(outcome_id__in=outcome_ids)
    by_score = decidable & Q(
        fixture__status__in=list(SETTLE_BY_SCORE),
        fixture__participant1_score__isnull=False,
        fixture__participant2_score__isnull=False,
    )
    voided = Q(fixture__status__in=list(VOID_STATUSES))
    quiet = Q(fixture__updated_at__lte=timezone.now() - settlement_grace())
    orders = (
        Order.objects.filter(settlement_status=SettlementStatus.UNDECIDED)
        .filter(by_score | voided)
        .filter(quiet)
        .values_list("fixture_id", flat=True)
        .distinct()[:limit]
    )
    bets = (
        HedgeBet.objects.filter(bet_status=BetStatus.PLACED, settlement_status=BetSettlementStatus.UNDECIDED)
        .filter(order__fixture__status__in=list(FINAL_STATUSES))
        .filter(order__fixture__updated_at__lte=timezone.now() - settlement_grace())
        .exclude(order__settlement_status=SettlementStatus.UNDECIDED)
        .values_list("order__fixture_id", flat=True)
        .distinct()[:limit]
    )
    return sorted(set(orders) | set(bets))[:limit]


def enqueue_settlement(fixture_pk: int) -> None:
    """Send ``trading.settlement.settle_fixture`` for ``fixture_pk`` (in-process when eager). A broker
    that cannot be reached is logged: the sweep settles the fixture on its next run."""
    from trading.tasks.settlement import settle_fixture_task

    try:
        settle_fixture_task.delay(fixture_pk)
    except BrokerUnavailable:
        log.exception("could not send the settlement of fixture %s; the sweep will pick it up", fixture_pk)


# --- the operator's result ------------------------------------------------------------------------------------


def _score(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidResult(f"{name} must be a whole number, got {value!r}")
    if value < 0:
        raise InvalidResult(f"{name} must not be negative, got {value}")
    return value


_KEEP = object()


def _set_final(*, fixture: Fixture, status: str, home: Any, away: Any, actor: str, why: str) -> Fixture:
    """Write the final status and scores (``_KEEP``: the stored score) under the fixture's row lock."""
    with transaction.atomic():
        locked = Fixture.objects.select_related("tournament").select_for_update(of=("self",)).get(pk=fixture.pk)
        home = locked.participant1_score if home is _KEEP else home
        away = locked.participant2_score if away is _KEEP else away
        settled = Order.objects.filter(fixture_id=locked.pk).exclude(settlement_status=SettlementStatus.UNDECIDED)
        unchanged = (locked.status, locked.participant1_score, locked.participant2_score) == (status, home, away)
        if not unchanged and settled.exists():
            raise ResultConflict(
                f"fixture {locked.fixture_id} already has orders settled on {locked.status} "
                f"{locked.participant1_score}-{locked.participant2_score}; re-settlement is not supported"
            )
        if not unchanged:
            locked.status = status
            locked.participant1_score = home
            locked.participant2_score = away
            locked.save(update_fields=["status", "participant1_score", "participant2_score", "updated_at"])
            publish_score(locked)
        log.info("fixture %s set to %s %s-%s by %s%s", locked.fixture_id, status, home, away, actor, why)
        pk = locked.pk
        transaction.on_commit(lambda: enqueue_settlement(pk))
    return locked


def fixture_result_set(
    *, fixture: Fixture, participant1_score: Any, participant2_score: Any, status: str, actor: str
) -> Fixture:
    """The operator's final result: ``status`` ``finished`` with both scores (whole numbers >= 0), or
    ``cancelled``/``abandoned`` (scores optional: everything is void). Writes the fixture under its
    row lock and sends the settlement task after commit. Raises :class:`InvalidResult` for bad input
    and :class:`ResultConflict` when orders are already settled under another result; in both
    cases nothing is written. Setting the same result again only re-sends the settlement."""
    if status not in FINAL_STATUSES:
        raise InvalidResult(f"status must be one of {', '.join(sorted(FINAL_STATUSES))}, got {status!r}")
    if status in SETTLE_BY_SCORE:
        if participant1_score is None or participant2_score is None:
            raise InvalidResult("a finished fixture needs both participant1_score and participant2_score")
        home, away = _score(participant1_score, "participant1_score"), _score(participant2_score, "participant2_score")
    else:
        home = None if participant1_score is None else _score(participant1_score, "participant1_score")
        away = None if participant2_score is None else _score(participant2_score, "participant2_score")
    return _set_final(fixture=fixture, status=status, home=home, away=away, actor=actor, why="")


def fixture_void(*, fixture: Fixture, actor: str, reason: str) -> Fixture:
    """Void ``fixture``: status ``cancelled`` (scores kept), every order and bet settles ``VOID``.
    ``reason`` is required (logged with the actor). Raises like :func:`fixture_result_set`."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidResult("a reason is required to void a fixture")
    return _set_final(
        fixture=fixture, status=FixtureStatus.CANCELLED.value, home=_KEEP, away=_KEEP, actor=actor, why=f": {reason}"
    )
