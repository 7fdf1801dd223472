"""The seeded taker flow of the simulated venue: the other side of our quotes, so a demo trades.

Deterministic for a seed: the same seed over the same book (the same open orders, in the same
order of arrival) makes the same trades. Each :meth:`SimTakerFlow.step` covering ``dt`` seconds
draws how many takers arrive (Poisson with mean ``rate * dt``), and for each picks a resting
order of the exchange uniformly (ordered by arrival) and a size: with probability
``partial_ratio`` a whole-contract part of the rest (10 % to 90 %), else the whole rest. It also
expires resting orders past their ``expires_at`` (``SimVenueAccount.expire_after_seconds``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from exchanges.models.venue import SimVenueOrder, SimVenueOrderStatus

from .base import VenueError, VenueFill
from .simulated import SimulatedVenueConnector


@dataclass(frozen=True)
class TakerTrade:
    client_order_id: str
    size: Decimal
    fill: VenueFill


class SimTakerFlow:
    def __init__(
        self,
        venue: SimulatedVenueConnector,
        *,
        seed: int = 0,
        rate: float = 0.5,
        partial_ratio: float = 0.5,
        accounts: list[str] | None = None,
    ):
        self.venue = venue
        self.rate = rate
        self.partial_ratio = partial_ratio
        self.accounts = accounts
        self.rng = random.Random(seed)  # noqa: S311 - simulation, not crypto

    def _poisson(self, mean: float) -> int:
        # Knuth's method: fine for the small means of a taker flow.
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def _book(self) -> list[SimVenueOrder]:
        qs = SimVenueOrder.objects.filter(exchange=self.venue.exchange, status=SimVenueOrderStatus.OPEN)
        if self.accounts is not None:
            qs = qs.filter(account__in=self.accounts)
        return list(qs.order_by("id"))

    def size_for(self, rest: Decimal) -> Decimal:
        if rest >= 2 and self.rng.random() < self.partial_ratio:
            part = (rest * Decimal(self.rng.randint(1, 9)) / 10).quantize(Decimal(1), rounding=ROUND_DOWN)
            return max(Decimal(1), part)
        return rest

    def step(self, dt: float) -> list[TakerTrade]:
        """Expire what is due, then trade the takers arriving in ``dt`` seconds."""
        self.venue.expire_due()
        arrivals = self._poisson(self.rate * dt) if self.rate > 0 else 0
        trades: list[TakerTrade] = []
        for _ in range(arrivals):
            book = self._book()
            if not book:
                break
            order = book[self.rng.randrange(len(book))]
            size = self.size_for(order.size - order.filled)
            try:
                fill = self.venue.match(venue_order_id=order.venue_order_id, size=size)
            except VenueError:  # cancelled or filled meanwhile by someone else
                continue
            trades.append(TakerTrade(order.client_order_id, fill.size, fill))
        return trades
