"""Hedging a fill with a bookmaker bet (docs/hedging.md).

``hedge_fill`` is the only writer of ``HedgeBet``. The rules that keep money right:

* The bet row (``pending``, unique per fill through the one-to-one ``fill`` and under the
  deterministic key ``hedge-<fill id>``) is **committed before** any bookmaker call; every call
  carries an idempotency key derived from it (``hedge-<fill id>`` for the first bet,
  ``hedge-<fill id>-r<n>`` for the n-th retry after a decline), so calling twice can never make two
  bookmaker bets for one key.
* No transaction and no row lock is held across a bookmaker call. Two workers hedging the same
  fill at once call with the same key (the bookmaker returns one bet) and record the answer under
  ``SELECT ... FOR UPDATE`` of the bet row, compare-and-set on ``(bet_status, attempts)``: an
  answer for an attempt the row has already moved past is dropped.
* A timeout (``BookmakerUnknownOutcome``) is resolved by asking (``bet_status`` by key), never by
  placing blindly; a row found ``pending`` by a later run is asked about first, too.
* Hedging never reads the trading controls: fills that already happened are hedged under pause,
  stop, system stop and emergency alike.

``hedging`` imports nothing from ``trading``: the fill and order are read through
``apps.get_model``, and bet events go through the function named by ``settings.HEDGE_BET_PUBLISHER``
(default ``trading.events.publish_bet``). A hedge left unhedged sends the ``hedge_left_unhedged``
signal after commit and logs an error (the operator alert).
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import ROUND_CEILING, Decimal

from django.apps import apps
from django.conf import settings
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone
from django.utils.module_loading import import_string

from .choices import BetStatus
from .connectors.base import BetResult, BookmakerConnector, BookmakerError, BookmakerUnknownOutcome
from .connectors.registry import get_bookmaker_connector
from .models import Bookmaker, HedgeBet

log = logging.getLogger(__name__)

#: Sent (after commit) when a fill is left unhedged: ``sender=HedgeBet, bet=<HedgeBet>, reason=str``.
hedge_left_unhedged = Signal()

CENT = Decimal("0.01")


def _setting(name: str, default):
    return getattr(settings, name, default)


def max_price_drift() -> Decimal:
    """Largest adverse relative move of the odds (vs the order's bookmaker price) a retry accepts."""
    return Decimal(str(_setting("HEDGE_MAX_PRICE_DRIFT", "0.05")))


def max_attempts() -> int:
    """Bookmaker bets tried per fill (the first one included) before a fill is left unhedged."""
    return int(_setting("HEDGE_MAX_ATTEMPTS", 3))


def accept_price_drift() -> Decimal:
    """Relative slippage the bookmaker may take between our price read and its acceptance."""
    return Decimal(str(_setting("HEDGE_ACCEPT_PRICE_DRIFT", "0.01")))


def hedge_stake(*, contracts: Decimal, odds: Decimal) -> Decimal:
    """``B = s / o`` rounded **up** to the cent: covers the whole exchange liability (docs/engine-pricing.md)."""
    return (contracts / odds).quantize(CENT, rounding=ROUND_CEILING)


def hedge_selection(*, fixture_id: str, outcome_id: int, player_id: int, back: bool) -> str:
    """What the hedge backs: outcome X after a sell (``back=False``), not-X after a buy."""
    base = f"{fixture_id}:{outcome_id}:{player_id}"
    return f"{base}:not" if back else base


def attempt_key(bet: HedgeBet) -> str:
    """The idempotency key of the bookmaker bet the row is currently trying."""
    return bet.idempotency_key if bet.attempts == 0 else f"{bet.idempotency_key}-r{bet.attempts}"


def drift(*, reference: Decimal | None, price: Decimal) -> Decimal:
    """Adverse relative drift of ``price`` from ``reference`` (positive = worse odds for us)."""
    if not reference:
        return Decimal("0")
    return (reference - price) / reference


def _publish(bet: HedgeBet) -> None:
    dotted = _setting("HEDGE_BET_PUBLISHER", "trading.events.publish_bet")
    if dotted:
        import_string(dotted)(bet)


def _fill_model():
    return apps.get_model("trading", "Fill")


def _bookmaker_for(client) -> Bookmaker | None:
    """The client's hedge bookmaker, else the one its name names (``demo:vertex`` -> ``vertex``)."""
    if client.hedge_bookmaker_id:
        return client.hedge_bookmaker
    code = client.name.split(":", 1)[1] if ":" in client.name else client.name
    return Bookmaker.objects.filter(name=code).first()


def _context(bet: HedgeBet) -> tuple[BookmakerConnector, str, Decimal | None]:
    """(connector, selection, reference price) of a bet."""
    order = bet.order
    selection = hedge_selection(
        fixture_id=order.fixture.fixture_id, outcome_id=order.outcome_id, player_id=order.player_id, back=order.back
    )
    connector = get_bookmaker_connector(bet.bookmaker.name, simulated=bet.bookmaker.simulated)
    return connector, selection, order.bookmaker_outcome_price


def _load(bet_id: int, *, lock: bool = False) -> HedgeBet:
    qs = HedgeBet.objects.select_related("order__fixture", "fill", "client", "bookmaker")
    if lock:
        qs = qs.select_for_update(of=("self",))
    return qs.get(pk=bet_id)


def hedge_bet_open(*, fill_id: int, publish: bool = True) -> tuple[HedgeBet | None, bool]:
    """The fill's bet row, written ``pending`` and committed if absent: ``(bet, created)``.

    Requested price: the bookmaker's current odds for the selection, else the order's
    ``bookmaker_outcome_price``; stake ``hedge_stake``. ``(None, False)`` when the fill cannot be
    hedged at all (no bookmaker, no price): it stays naked and counts in ``unhedgedStake``.
    ``publish=False`` leaves the ``pending`` bet event to the caller (``hedge_fill`` sends it
    after the bookmaker call, off the fill-to-bookmaker path)."""
    # one read for the fill, its order, fixture, client and bookmaker, and any bet it already has
    fill = (
        _fill_model().objects.select_related("order__fixture", "client__hedge_bookmaker", "hedge_bet").get(pk=fill_id)
    )
    existing = getattr(fill, "hedge_bet", None)
    if existing is not None:
        return _load(existing.pk), False
    order = fill.order
    bookmaker = _bookmaker_for(fill.client)
    if bookmaker is None:
        log.error("fill %s left unhedged: client %s has no bookmaker", fill_id, fill.client.name)
        return None, False
    selection = hedge_selection(
        fixture_id=order.fixture.fixture_id, outcome_id=order.outcome_id, player_id=order.player_id, back=order.back
    )
    connector = get_bookmaker_connector(bookmaker.name, simulated=bookmaker.simulated)
    price = connector.current_price(bookmaker=bookmaker.name, selection=selection) or order.bookmaker_outcome_price
    if price is None or price <= 1:
        log.error("fill %s left unhedged: no bookmaker price for %s", fill_id, selection)
        return None, False
    try:
        with transaction.atomic():
            bet = HedgeBet.objects.create(
                client_id=fill.client_id,
                order_id=fill.order_id,
                fill_id=fill.pk,
                bookmaker=bookmaker,
                idempotency_key=f"hedge-{fill.pk}",
                placed_price=price,
                placed_stake=hedge_stake(contracts=fill.stake, odds=price),
                bet_status=BetStatus.PENDING,
            )
            # the relations are loaded already (fill -> order -> fixture, client): no re-read
            bet.fill, bet.order, bet.client = fill, order, fill.client
            if publish:
                _publish(bet)
    except IntegrityError:  # a concurrent hedger wrote it first; its row is the row
        return _load(HedgeBet.objects.get(fill_id=fill_id).pk), False
    return bet, True


def _record(*, bet_id: int, attempts: int, answer: BetResult, next_price: Decimal | None) -> HedgeBet:
    """Record ``answer`` for the attempt ``attempts`` under the bet row lock (compare-and-set)."""
    with transaction.atomic():
        bet = _load(bet_id, lock=True)
        if bet.bet_status != BetStatus.PENDING or bet.attempts != attempts:
            return bet  # another worker recorded this attempt already
        now = timezone.now()
        if answer.status == "placed":
            bet.bet_status = BetStatus.PLACED
            bet.bookmaker_bet_id = answer.bookmaker_bet_id
            bet.placed_price = answer.price or bet.placed_price
            bet.placed_stake = answer.stake or bet.placed_stake
            bet.placed_at = now
            bet.attempts = attempts + 1
        elif answer.status == "pending":
            if bet.bookmaker_bet_id == answer.bookmaker_bet_id:
                return bet
            bet.bookmaker_bet_id = answer.bookmaker_bet_id
        else:
            bet.attempts = attempts + 1
            bet.decline_reason = answer.reason or "declined"
            _, _, reference = _context(bet)
            within = next_price is not None and drift(reference=reference, price=next_price) <= max_price_drift()
            if bet.attempts < max_attempts() and within:
                assert next_price is not None
                bet.placed_price = next_price
                bet.placed_stake = hedge_stake(contracts=bet.fill.stake, odds=next_price)
            else:
                bet.bet_status = BetStatus.DECLINED
                reason = bet.decline_reason if within else f"{bet.decline_reason}; price drift beyond limit"
                bet.decline_reason = reason[:255]
                log.error(
                    "hedge alert: fill %s left unhedged after %s attempts (%s)", bet.fill_id, bet.attempts, reason
                )
                transaction.on_commit(lambda b=bet: hedge_left_unhedged.send(sender=HedgeBet, bet=b, reason=reason))
        bet.updated_at = now
        bet.save()
        _publish(bet)
        return bet


def hedge_fill(*, fill_id: int) -> HedgeBet | None:
    """Hedge one fill: placed, declined (left unhedged, alert sent) or still pending (call again).

    Safe to call any number of times, concurrently too: one bet row, and one bookmaker bet per
    attempt key. Call it outside a transaction, so the row is committed before the bookmaker call.
    Returns None when the fill cannot be hedged at all (no bookmaker or no price)."""
    bet, fresh = hedge_bet_open(fill_id=fill_id, publish=False)
    if bet is None:
        return None
    unannounced = fresh  # the pending event of a new row is sent after the first bookmaker call
    for _ in range(2 * max_attempts() + 2):  # bounded: each pass records an answer or returns
        if bet.bet_status != BetStatus.PENDING:
            return bet
        connector, selection, _ = _context(bet)
        key, attempts, name = attempt_key(bet), bet.attempts, bet.bookmaker.name
        answer: BetResult | None = None
        try:
            if not fresh:  # a call may have been made before (crash, timeout, pending): ask first
                answer = connector.bet_status(idempotency_key=key, bookmaker=name)
            if answer is None:
                try:
                    answer = connector.place_bet(
                        idempotency_key=key,
                        bookmaker=name,
                        selection=selection,
                        price=bet.placed_price,
                        stake=bet.placed_stake,
                        accept_price_drift=accept_price_drift(),
                    )
                except BookmakerUnknownOutcome:
                    log.warning("bookmaker outcome unknown for %s; asking by key", key)
                    answer = connector.bet_status(idempotency_key=key, bookmaker=name)
                except BookmakerError as exc:  # a definite refusal: nothing was placed, a decline
                    log.warning("bookmaker refused %s: %s", key, exc)
                    answer = BetResult(status="declined", idempotency_key=key, reason=f"refused: {exc}"[:200])
        except BookmakerUnknownOutcome:
            answer = None
        if unannounced:
            _publish(bet)
            unannounced = False
        if answer is None:
            log.warning("hedge %s still unresolved; left pending for a retry", key)
            return bet
        fresh = False
        next_price = None
        if answer.status == "declined":
            next_price = connector.current_price(bookmaker=name, selection=selection) or bet.placed_price
        bet = _record(bet_id=bet.pk, attempts=attempts, answer=answer, next_price=next_price)
        if answer.status == "pending" and bet.bet_status == BetStatus.PENDING:
            return bet
    return bet


def hedge_pending_ids(*, older_than_seconds: int = 30, limit: int = 500) -> list[int]:
    """Fills to (re)hedge: bets still pending, and fills with no bet at all (a lost task message),
    both older than ``older_than_seconds`` so that the first run of their task is left alone.
    Fills without a bet are looked for only among those of the last ``HEDGE_SWEEP_NAKED_WINDOW``
    seconds (default 3600): older ones are history (imported or demo data), not lost messages."""
    now = timezone.now()
    cutoff = now - dt.timedelta(seconds=older_than_seconds)
    window = now - dt.timedelta(seconds=int(_setting("HEDGE_SWEEP_NAKED_WINDOW", 3600)))
    pending = HedgeBet.objects.filter(bet_status=BetStatus.PENDING, updated_at__lt=cutoff, fill__isnull=False)
    ids = list(pending.order_by("id").values_list("fill_id", flat=True)[:limit])
    naked = _fill_model().objects.filter(hedge_bet__isnull=True, created_at__lt=cutoff, created_at__gte=window)
    ids += list(naked.order_by("id").values_list("id", flat=True)[: max(0, limit - len(ids))])
    return ids
