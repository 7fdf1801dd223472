"""The simulated bookmaker: a real ``BookmakerConnector`` whose bets live in the database
(``SimBookmakerBet``), so the web process, the workers and the tests see the same bookmaker.

Idempotent on the key, like the bookmakers we connect to: placing a key twice returns the first
bet. Its writes are autocommits of their own when the caller holds no transaction (the hedge
service never does around a bookmaker call), so a caller killed mid-call leaves the bet behind,
as a real bookmaker would.

Behaviour is configured per process for tests and demos (``SimulatedBookmaker.configure``):

* ``mode``: what a new bet gets: ``accept`` (placed), ``decline``, ``pending`` (placed after
  ``pending_polls`` calls of ``bet_status``), ``timeout`` (recorded as placed, then the answer is
  lost: ``BookmakerUnknownOutcome``);
* ``script``: modes consumed one per new bet before falling back to ``mode``
  (``["decline", "accept"]`` declines the first bet and accepts the next);
* ``prices``: the book's current odds per selection. A bet whose requested odds are more than
  ``accept_price_drift`` (relative) above the book's is declined with reason ``price_moved``;
  otherwise it is placed at the requested odds or the book's, whichever is lower;
* ``latency`` seconds and a ``before_answer(bet)`` hook, run after the bet is recorded and before
  the answer returns (the crash tests kill the process there).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from hedging.models import SimBookmakerBet, SimBookmakerBetStatus

from .base import BetResult, BookmakerConnector, BookmakerUnknownOutcome

MODES = ("accept", "decline", "pending", "timeout")


@dataclass
class SimBehaviour:
    mode: str = "accept"
    script: list[str] = field(default_factory=list)
    prices: dict[str, Decimal] = field(default_factory=dict)
    pending_polls: int = 1
    latency: float = 0.0
    before_answer: Callable[[SimBookmakerBet], None] | None = None


def _result(bet: SimBookmakerBet) -> BetResult:
    return BetResult(
        status=bet.status,  # type: ignore[arg-type]
        idempotency_key=bet.idempotency_key,
        bookmaker_bet_id=bet.bet_id,
        price=bet.price,
        stake=bet.stake,
        reason=bet.reason,
    )


class SimulatedBookmaker(BookmakerConnector):
    behaviour = SimBehaviour()
    _lock = threading.Lock()

    @classmethod
    def configure(cls, **changes) -> SimBehaviour:
        """Replace the behaviour (unspecified fields take their defaults)."""
        mode = changes.get("mode", "accept")
        for m in [mode, *changes.get("script", [])]:
            if m not in MODES:
                raise ValueError(f"unknown simulated bookmaker mode {m!r}")
        cls.behaviour = SimBehaviour(**changes)
        return cls.behaviour

    @classmethod
    def reset(cls) -> None:
        cls.behaviour = SimBehaviour()

    def place_bet(
        self,
        *,
        idempotency_key: str,
        bookmaker: str,
        selection: str,
        price: Decimal,
        stake: Decimal,
        accept_price_drift: Decimal,
    ) -> BetResult:
        received = timezone.now()
        # In-process, the key check, the scripted decision and the insert are one step (so that a
        # script entry is consumed by the bet that is actually recorded); across processes the
        # unique key decides.
        with self._lock:
            existing = SimBookmakerBet.objects.filter(idempotency_key=idempotency_key).first()
            if existing is not None:
                return _result(existing)
            b = self.behaviour
            mode = b.script.pop(0) if b.script else b.mode
            status, reason, placed_price = SimBookmakerBetStatus.PLACED, "", price
            book_price = b.prices.get(selection)
            if book_price is not None and book_price < price * (1 - accept_price_drift):
                status, reason = SimBookmakerBetStatus.DECLINED, "price_moved"
            elif mode == "decline":
                status, reason = SimBookmakerBetStatus.DECLINED, "declined"
            else:
                if book_price is not None:
                    placed_price = min(price, book_price)
                if mode == "pending":
                    status = SimBookmakerBetStatus.PENDING
            try:
                with transaction.atomic():
                    bet = SimBookmakerBet.objects.create(
                        idempotency_key=idempotency_key,
                        bet_id=f"simbk-{uuid.uuid4().hex[:16]}",
                        bookmaker=bookmaker,
                        selection=selection,
                        requested_price=price,
                        requested_stake=stake,
                        price=placed_price,
                        stake=stake,
                        status=status,
                        reason=reason,
                        received_at=received,
                    )
            except IntegrityError:  # another process placed the same key first: its bet is the bet
                return _result(SimBookmakerBet.objects.get(idempotency_key=idempotency_key))
        if b.latency:
            time.sleep(b.latency)
        if b.before_answer is not None:
            b.before_answer(bet)
        if mode == "timeout":
            raise BookmakerUnknownOutcome(f"simulated timeout for {idempotency_key}")
        return _result(bet)

    def bet_status(self, *, idempotency_key: str, bookmaker: str) -> BetResult | None:
        with transaction.atomic():
            bet = SimBookmakerBet.objects.select_for_update().filter(idempotency_key=idempotency_key).first()
            if bet is None:
                return None
            if bet.status == SimBookmakerBetStatus.PENDING:
                bet.status_polls += 1
                if bet.status_polls >= self.behaviour.pending_polls:
                    bet.status = SimBookmakerBetStatus.PLACED
                bet.save(update_fields=["status_polls", "status", "updated_at"])
        return _result(bet)

    def current_price(self, *, bookmaker: str, selection: str) -> Decimal | None:
        return self.behaviour.prices.get(selection)
