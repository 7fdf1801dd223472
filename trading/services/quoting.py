"""Quoting: from one bookmaker price to at most one live order per quote key.

A quote key is (client, exchange account, fixture, outcome, player); its ``LiveQuote`` row is
unique and points at the key's live order. For each price update the engine:

1. finds where the outcome trades (``OutcomeMarket`` per exchange) and which accounts quote the
   fixture (accounts of clients hedging on that bookmaker, with ``Client.quote_all_fixtures`` or
   a matching ``QuotingRule``);
2. per key, under the ``LiveQuote`` row lock, decides with :func:`quote_decide` (pure): place,
   replace (cancel then place), cancel, or nothing;
3. cancels through ``trading.services.orders.order_cancel`` (the venue's answer is recorded; a
   cancel the venue does not confirm leaves the order live and nothing new is written), and
   writes a new order ``PENDING_PLACEMENT`` with a deterministic client order id, in a
   transaction that first locks the client's trading state (``lock_client_state``) and checks
   ``trading_allowed``; the placement task is queued after commit.

Rules (docs/engine.md): requote when the target price moves by a tick or more or the size by more
than 10 % (``pricing.requote_needed``); cancel when the bookmaker side goes inactive or stops
being quotable (pricing refuses it), when the fixture has started and its tournament is not quoted
in play, when it is over, or when its market is switched off. While trading is not allowed (pause,
stop, system block, emergency) nothing new is written and resting orders are left as they are
(a stop or an emergency cancels them itself); risk-reducing cancels still happen.

Locks, in this order: the ``LiveQuote`` row (engine only), then the order row being cancelled
(``lock_order``, across the venue's cancel), then the client's trading-state row. Nothing that
holds a trading-state or order lock ever waits for a ``LiveQuote`` row, so this cannot deadlock
with the controls.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from trading.choices import OPEN_ORDER_STATUSES, FixtureStatus, OrderStatus
from trading.events import publish_order
from trading.feed.protocol import OddsUpdate
from trading.models import ExchangeAccount, Fixture, LiveQuote, Order, OutcomeMarket, Tournament
from trading.pricing import NoQuote, PricingConfig, Quote, quote_sell, requote_needed
from trading.selectors.controls import trading_allowed
from trading.services.controls import lock_client_state
from trading.services.orders import CancelFailed, OrderNotOpen, order_cancel

log = logging.getLogger(__name__)

__all__ = [
    "Action",
    "Decision",
    "LiveOrder",
    "client_order_id_for",
    "fixture_quotable",
    "quote_decide",
    "quote_refresh",
    "quotes_on_odds_update",
    "quote_update",
    "quotes_cancel_not_quotable",
    "quotes_on_price",
]

ENGINE_ACTOR = "engine"
_ODDS_Q = Decimal("0.0001")
_OVER = {
    FixtureStatus.FINISHED,
    FixtureStatus.CANCELLED,
    FixtureStatus.POSTPONED,
    FixtureStatus.INTERRUPTED,
    FixtureStatus.ABANDONED,
}


class Action(enum.StrEnum):
    PLACE = "place"
    REPLACE = "replace"
    CANCEL = "cancel"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class LiveOrder:
    """The live quote of a key as plain values: its price and the size still open."""

    price: Decimal
    open_size: Decimal


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    quote: Quote | None = None
    order_id: int | None = None  # the order written (place/replace), once applied


# --- the pure decision -----------------------------------------------------------------------------------------


def quote_decide(
    *,
    odds: Decimal,
    limit: Decimal | None,
    active: bool,
    cfg: PricingConfig | None,
    quotable: bool,
    not_quotable_reason: str = "fixture_not_quotable",
    allowed: bool,
    current: LiveOrder | None,
    existing_stake: Decimal = Decimal(0),
) -> Decision:
    """What to do with one key on one price update. Pure: plain values in, a decision out.

    Order of the rules: a fixture that may not be quoted, an inactive side, or a price the pricing
    refuses -> cancel whatever rests (``none`` if nothing does). Trading not allowed -> nothing
    (resting orders stay, as a pause keeps them). Nothing resting -> place. Resting, and the target
    moved by a tick or more or the size by more than 10 % -> replace; else nothing.
    """
    stop_reason: str | None = None
    target: Quote | NoQuote | None = None
    if not quotable or cfg is None:
        stop_reason = not_quotable_reason
    elif not active:
        stop_reason = "outcome_inactive"
    else:
        target = quote_sell(odds, limit, cfg, active=active, existing_stake=existing_stake)
        if isinstance(target, NoQuote):
            stop_reason = target.reason.value
    if stop_reason is not None:
        return Decision(Action.CANCEL if current else Action.NONE, stop_reason)
    assert isinstance(target, Quote) and cfg is not None
    if not allowed:
        return Decision(Action.NONE, "trading_not_allowed", target)
    if current is None:
        return Decision(Action.PLACE, "new_quote", target)
    if requote_needed(current.price, current.open_size, target.price, target.size, cfg.tick):
        return Decision(Action.REPLACE, "target_moved", target)
    return Decision(Action.NONE, "unchanged", target)


def fixture_quotable(*, fixture: Fixture, tournament: Tournament | None, now: dt.datetime) -> tuple[bool, str]:
    """May the engine quote ``fixture`` now? Not without a tournament (no configuration), not once
    it is over, and once started (live, or past its start time) only if the tournament quotes in
    play."""
    if tournament is None:
        return False, "no_tournament_config"
    if fixture.status in _OVER:
        return False, "fixture_over"
    started = fixture.status == FixtureStatus.LIVE or fixture.start_time <= now
    if started and not tournament.quote_in_play:
        return False, "fixture_started"
    return True, ""


def pricing_config(*, tournament: Tournament, account: ExchangeAccount) -> PricingConfig:
    return PricingConfig(
        edge=tournament.edge,
        tick=tournament.price_tick,
        min_price=tournament.min_price,
        max_price=tournament.max_price,
        sizing_mode=tournament.sizing_mode,
        fixed_stake=tournament.fixed_stake,
        limit_fraction=tournament.limit_fraction,
        max_outcome_stake=account.max_outcome_stake,
    )


def client_order_id_for(
    *, account: ExchangeAccount, fixture: Fixture, outcome_id: int, player_id: int, seq: int
) -> str:
    """``mm-<20 hex>-<seq>``: a hash of (client, account, fixture, outcome, player) and the key's
    order number. The same key and number always give the same id, on every process."""
    key = f"{account.client_id}:{account.pk}:{fixture.fixture_id}:{outcome_id}:{player_id}"
    return f"mm-{hashlib.sha256(key.encode()).hexdigest()[:20]}-{seq}"


# --- applying decisions --------------------------------------------------------------------------------------


def _lock_live_quote(*, account: ExchangeAccount, fixture_pk: int, outcome_id: int, player_id: int) -> LiveQuote:
    """``SELECT ... FOR UPDATE OF`` the key's ``LiveQuote`` row (with its client), creating the row
    first if it does not exist yet. Call inside ``transaction.atomic()``. The order is read after the
    lock (``_open_order``), never joined here: when the lock waits for a concurrent decision,
    PostgreSQL re-checks the locked row but not the joined one, which would be the old order."""
    locked = LiveQuote.objects.select_for_update(of=("self",)).select_related("client")
    key = {"account": account, "fixture_id": fixture_pk, "outcome_id": outcome_id, "player_id": player_id}
    lq = locked.filter(**key).first()
    if lq is None:
        lq, _ = LiveQuote.objects.get_or_create(**key, defaults={"client_id": account.client_id})
        lq = locked.get(pk=lq.pk)
    return lq


def _open_order(lq: LiveQuote) -> Order | None:
    if lq.order_id is None:
        return None
    return Order.objects.filter(pk=lq.order_id, order_status__in=OPEN_ORDER_STATUSES).first()


def _cancel_current(lq: LiveQuote, order: Order, reason: str) -> bool:
    """Cancel the key's live order at its venue (nested transaction). True when it is no longer
    open (cancelled, or the venue reports it filled or rejected); False when the venue did not
    confirm, and the order stays the key's live quote."""
    try:
        order_cancel(client=lq.client, order_id=order.pk, actor=f"{ENGINE_ACTOR}:{reason}")
    except OrderNotOpen:
        pass
    except CancelFailed as exc:
        log.warning("quote %s: cancel of order %s failed: %s %s", lq.pk, order.pk, exc.code, exc.message)
        return False
    lq.order = None
    return True


def _matched_on_key(*, account: ExchangeAccount, fixture: Fixture, outcome_id: int, player_id: int) -> Decimal:
    total = Order.objects.filter(
        account=account, fixture=fixture, outcome_id=outcome_id, player_id=player_id, matched_stake__gt=0
    ).aggregate(s=Sum("matched_stake"))["s"]
    return total or Decimal(0)


def _write_order(
    *,
    lq: LiveQuote,
    account: ExchangeAccount,
    market: OutcomeMarket,
    fixture: Fixture,
    quote: Quote,
    odds: Decimal,
    limit: Decimal | None,
    active: bool,
) -> Order:
    def coid(n: int) -> str:
        return client_order_id_for(
            account=account, fixture=fixture, outcome_id=market.outcome_id, player_id=market.player_id, seq=n
        )

    seq = lq.seq + 1
    while Order.objects.filter(client_order_id=coid(seq)).exists():  # only if the key row was ever recreated
        seq += 1
    now = timezone.now()
    order = Order.objects.create(
        client_id=account.client_id,
        account=account,
        fixture=fixture,
        exchange=account.exchange,
        outcome_id=market.outcome_id,
        player_id=market.player_id,
        client_order_id=coid(seq),
        exchange_outcome_id=market.exchange_outcome_id,
        order_status=OrderStatus.PENDING_PLACEMENT,
        order_cents=quote.price,
        order_stake=quote.size,
        back=quote.back,
        bookmaker_outcome_price=odds.quantize(_ODDS_Q),
        bookmaker_outcome_limit=limit.quantize(_ODDS_Q) if limit is not None and limit.is_finite() else None,
        bookmaker_outcome_active=active,
        created_at=now,
        updated_at=now,
    )
    lq.seq = seq
    lq.order = order
    publish_order(order)
    order_id = order.pk
    transaction.on_commit(lambda: _enqueue_placement(order_id))
    return order


def _enqueue_placement(order_id: int) -> None:
    from trading.tasks.placement import order_place_task

    order_place_task.delay(order_id)


def quote_update(
    *,
    account: ExchangeAccount,
    market: OutcomeMarket,
    odds: Decimal,
    limit: Decimal | None,
    active: bool,
    now: dt.datetime | None = None,
) -> Decision:
    """Apply one bookmaker price to one quote key (``account`` x ``market``'s fixture, outcome,
    player). Locks the ``LiveQuote`` row for the whole decision; see the module docstring for the
    other locks. Returns the decision taken (``order_id`` set when an order was written)."""
    now = now or timezone.now()
    with transaction.atomic():
        lq = _lock_live_quote(
            account=account, fixture_pk=market.fixture_id, outcome_id=market.outcome_id, player_id=market.player_id
        )
        fixture = Fixture.objects.select_related("tournament").get(pk=market.fixture_id)
        current = _open_order(lq)
        order_before = lq.order_id
        quotable, why = fixture_quotable(fixture=fixture, tournament=fixture.tournament, now=now)
        if not market.active:
            quotable, why = False, "market_inactive"
        cfg = pricing_config(tournament=fixture.tournament, account=account) if fixture.tournament else None
        decision = quote_decide(
            odds=odds,
            limit=limit,
            active=active,
            cfg=cfg,
            quotable=quotable,
            not_quotable_reason=why,
            allowed=trading_allowed(client=lq.client),
            current=LiveOrder(current.order_cents, current.open_stake) if current else None,
            existing_stake=_matched_on_key(
                account=account, fixture=fixture, outcome_id=market.outcome_id, player_id=market.player_id
            ),
        )
        if current is None and lq.order_id is not None:
            lq.order = None  # the last live order was closed (filled, cancelled, failed)
        if decision.action in (Action.CANCEL, Action.REPLACE) and current is not None:
            if not _cancel_current(lq, current, decision.reason):
                decision = Decision(Action.NONE, "cancel_failed", decision.quote)
        if decision.action in (Action.PLACE, Action.REPLACE):
            # The gate of docs/api/mm-controls.md: lock the client's state, then check the controls.
            lock_client_state(client=lq.client)
            if not trading_allowed(client=lq.client):
                decision = Decision(Action.NONE, "trading_not_allowed", decision.quote)
            else:
                assert decision.quote is not None
                order = _write_order(
                    lq=lq,
                    account=account,
                    market=market,
                    fixture=fixture,
                    quote=decision.quote,
                    odds=odds,
                    limit=limit,
                    active=active,
                )
                decision = Decision(decision.action, decision.reason, decision.quote, order.pk)
        before = (lq.last_action, lq.last_reason, order_before)
        lq.last_action = decision.action.value
        lq.last_reason = decision.reason[:64]
        if (lq.last_action, lq.last_reason, lq.order_id) != before:  # no write for an unchanged tick
            lq.save(update_fields=["order", "seq", "last_action", "last_reason", "updated_at"])
    return decision


def quoting_accounts(*, fixture: Fixture, bookmaker: str, exchanges: list[str]):
    """Active accounts on ``exchanges`` of clients hedging on ``bookmaker`` that quote ``fixture``."""
    rule = Q(quoting_rules__enabled=True) & (
        Q(quoting_rules__tournament__isnull=True, quoting_rules__fixture__isnull=True)
        | Q(quoting_rules__fixture=fixture)
        | (Q(quoting_rules__tournament_id=fixture.tournament_id) if fixture.tournament_id else Q(pk__in=[]))
    )
    return (
        ExchangeAccount.objects.filter(active=True, exchange__in=exchanges, client__hedge_bookmaker__name=bookmaker)
        .filter(Q(client__quote_all_fixtures=True) | rule)
        .distinct()
        .select_related("client")
        .order_by("id")
    )


def quotes_on_price(
    *,
    fixture_id: str,
    bookmaker: str,
    outcome_id: int,
    player_id: int,
    price: Decimal,
    limit: Decimal | None,
    active: bool,
    now: dt.datetime | None = None,
) -> list[Decision]:
    """One bookmaker price from the feed (plain values, as ``OddsEntry`` carries them) applied to
    every quote key it concerns. Unknown fixtures and outcomes without a market are ignored."""
    fixture = Fixture.objects.filter(fixture_id=fixture_id).first()
    if fixture is None:
        return []
    markets = {
        m.exchange: m
        for m in OutcomeMarket.objects.filter(
            fixture=fixture, outcome_id=outcome_id, player_id=player_id
        ).select_related("fixture")
    }
    if not markets:
        return []
    decisions = []
    for account in quoting_accounts(fixture=fixture, bookmaker=bookmaker, exchanges=list(markets)):
        decisions.append(
            quote_update(
                account=account, market=markets[account.exchange], odds=price, limit=limit, active=active, now=now
            )
        )
    return decisions


def quotes_on_odds_update(update: OddsUpdate, *, now: dt.datetime | None = None) -> list[Decision]:
    """Every entry of one parsed ``odds`` frame of the feed through :func:`quotes_on_price`. A
    suspended market (``marketActive`` false) counts as an inactive side."""
    decisions: list[Decision] = []
    for entry in update.entries:
        decisions.extend(
            quotes_on_price(
                fixture_id=entry.fixture_id,
                bookmaker=entry.bookmaker,
                outcome_id=entry.outcome_id,
                player_id=entry.player_id,
                price=entry.price,
                limit=entry.limit,
                active=entry.active and entry.market_active is not False,
                now=now,
            )
        )
    return decisions


def quote_refresh(*, order_id: int, now: dt.datetime | None = None) -> Decision | None:
    """Decide again for the key of order ``order_id`` with the bookmaker values recorded on it (the
    price that triggered it): how a fill is reposted. After a fill the order is FILLED (a new
    order is placed for the room left under ``max_outcome_stake``) or its open size shrank
    (replaced when it moved by more than 10 %). Gated like any placement. None when the order's
    outcome has no market on its exchange or no recorded price."""
    order = Order.objects.select_related("account", "fixture").get(pk=order_id)
    market = (
        OutcomeMarket.objects.filter(
            fixture=order.fixture, outcome_id=order.outcome_id, player_id=order.player_id, exchange=order.exchange
        )
        .select_related("fixture")
        .first()
    )
    if market is None or order.bookmaker_outcome_price is None:
        return None
    return quote_update(
        account=order.account,
        market=market,
        odds=order.bookmaker_outcome_price,
        limit=order.bookmaker_outcome_limit,
        active=order.bookmaker_outcome_active,
        now=now,
    )


def quotes_cancel_not_quotable(*, now: dt.datetime | None = None, fixture_pk: int | None = None) -> int:
    """Cancel the live quotes of fixtures that may no longer be quoted (kicked off and not quoted
    in play, or over) without waiting for a price update; only ``fixture_pk``'s when given (the
    feed calls it when a fixture's status changes). Returns how many were cancelled."""
    now = now or timezone.now()
    scope = LiveQuote.objects.filter(fixture_id=fixture_pk) if fixture_pk is not None else LiveQuote.objects.all()
    candidates = (
        scope.filter(order__order_status__in=OPEN_ORDER_STATUSES)
        .filter(
            Q(fixture__status__in=list(_OVER))
            | Q(fixture__tournament__isnull=True)
            | (
                (Q(fixture__status=FixtureStatus.LIVE) | Q(fixture__start_time__lte=now))
                & Q(fixture__tournament__quote_in_play=False)
            )
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    done = 0
    for lq_id in list(candidates):
        with transaction.atomic():
            lq = LiveQuote.objects.select_for_update(of=("self",)).select_related("client").get(pk=lq_id)
            fixture = Fixture.objects.select_related("tournament").get(pk=lq.fixture_id)
            quotable, why = fixture_quotable(fixture=fixture, tournament=fixture.tournament, now=now)
            current = _open_order(lq)
            if quotable or current is None:
                continue
            if _cancel_current(lq, current, why):
                done += 1
                lq.last_action, lq.last_reason = Action.CANCEL.value, why
                lq.save(update_fields=["order", "last_action", "last_reason", "updated_at"])
    return done
