"""The one interface every bookmaker connector implements (the simulated bookmaker, real books later).

Connectors speak plain values (``Decimal`` decimal odds and stakes, string ids and selections) and
never see a Django model of ``trading``. Every bet carries an idempotency key: placing the same key
twice returns the first bet, never a second one. A call that times out, disconnects or returns
something unparseable raises ``BookmakerUnknownOutcome``: the bet may or may not exist, and the
caller resolves it with ``bet_status(key)``, never by placing blindly again.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

BetState = Literal["placed", "declined", "pending"]


class BookmakerError(Exception):
    """The bookmaker refused the request outright (nothing happened)."""


class BookmakerUnknownOutcome(Exception):
    """Timeout, disconnect or unparseable answer: the bet may or may not have been taken."""


@dataclass(frozen=True)
class BetResult:
    """The bookmaker's answer. ``price``/``stake`` are what it accepted (for ``placed``) or what
    was requested (otherwise). ``reason`` explains a decline (``price_moved``, ``declined``...)."""

    status: BetState
    idempotency_key: str
    bookmaker_bet_id: str = ""
    price: Decimal | None = None
    stake: Decimal | None = None
    reason: str = ""


class BookmakerConnector(abc.ABC):
    """One bookmaker. ``selection`` is our reference to what is backed (see docs/hedging.md)."""

    @abc.abstractmethod
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
        """Back ``selection`` at decimal odds ``price`` (or better, or worse by at most the
        relative ``accept_price_drift``) with ``stake``. Idempotent on ``idempotency_key``."""

    @abc.abstractmethod
    def bet_status(self, *, idempotency_key: str, bookmaker: str) -> BetResult | None:
        """The bet placed under ``idempotency_key``, or None if the bookmaker never saw it."""

    @abc.abstractmethod
    def current_price(self, *, bookmaker: str, selection: str) -> Decimal | None:
        """The bookmaker's decimal odds for ``selection`` now, None when it does not know them."""
