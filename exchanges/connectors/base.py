"""The one interface every venue connector implements (Polymarket, Kalshi, Betfair, ..., simulated).

Connectors speak plain values (``Decimal`` prices and sizes, string ids), never Django models, so
that ``exchanges`` knows nothing of ``trading``. A call that times out or returns something that
does not parse raises ``VenueUnknownOutcome``: the caller resolves it by asking the venue
(``order_status`` by client order id), never by sending again.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

Side = Literal["buy", "sell"]
VenueOrderState = Literal["open", "filled", "cancelled", "rejected", "expired", "unknown"]


class VenueError(Exception):
    """The venue refused the request (a definite answer: nothing happened)."""


class VenueUnknownOutcome(Exception):
    """Timeout, disconnect or unparseable answer: the request may or may not have taken effect."""


class VenueOrderNotFound(VenueError):
    pass


class VenueStreamDisconnected(VenueUnknownOutcome):
    """The venue's user stream dropped. Events after the last cursor the consumer saw may have been
    missed: reconnect from that cursor and reconcile before quoting again."""


@dataclass(frozen=True)
class PlaceRequest:
    client_order_id: str  # deterministic; the venue's idempotency key where it has one
    account: str
    market: str  # the venue's outcome/market id (exchangeOutcomeId)
    side: Side
    price: Decimal
    size: Decimal


@dataclass(frozen=True)
class VenueOrder:
    venue_order_id: str
    client_order_id: str
    market: str
    side: Side
    price: Decimal
    size: Decimal
    filled: Decimal
    state: VenueOrderState


@dataclass(frozen=True)
class VenueFill:
    trade_id: str  # unique per venue: what fills are deduplicated on
    venue_order_id: str
    client_order_id: str
    price: Decimal
    size: Decimal
    at: dt.datetime


@dataclass(frozen=True)
class VenueEvent:
    """One event of a venue user stream. ``idle`` carries nothing: the stream is alive and had
    nothing to say for a while (consumers use it as a heartbeat). ``cursor`` resumes the stream
    just after this event."""

    kind: Literal["order", "fill", "idle"]
    order: VenueOrder | None = None
    fill: VenueFill | None = None
    cursor: str = ""


@dataclass
class FillPage:
    fills: list[VenueFill] = field(default_factory=list)
    cursor: str = ""


class VenueConnector(abc.ABC):
    """One venue account's view of a venue."""

    exchange: str

    @abc.abstractmethod
    def place(self, req: PlaceRequest) -> VenueOrder: ...

    @abc.abstractmethod
    def cancel(self, *, account: str, venue_order_id: str) -> VenueOrder:
        """Cancel; returns the order as the venue now knows it (already filled/cancelled is not an error)."""

    def replace(self, *, account: str, venue_order_id: str, new: PlaceRequest) -> VenueOrder:
        """Cancel then place; venues with a native replace override this."""
        self.cancel(account=account, venue_order_id=venue_order_id)
        return self.place(new)

    @abc.abstractmethod
    def open_orders(self, *, account: str) -> list[VenueOrder]: ...

    @abc.abstractmethod
    def order_status(self, *, account: str, client_order_id: str) -> VenueOrder | None:
        """Look an order up by our client order id; None if the venue never saw it."""

    @abc.abstractmethod
    def fills_since(self, *, account: str, cursor: str = "") -> FillPage: ...

    @abc.abstractmethod
    def balance(self, *, account: str) -> Decimal: ...

    #: Whether ``stream`` is implemented (venues without a user channel are polled only).
    has_stream: bool = False

    def stream(self, *, account: str, cursor: str = "") -> Iterator[VenueEvent]:  # pragma: no cover
        """Subscribe to the account's order and fill events. The subscription is made when this is
        called (not on the first ``next``), so events from then on are delivered; ``cursor`` (from
        an event) resumes after that event, ``""`` starts from now. Iterating yields events in
        venue order, ``idle`` events while nothing happens, and raises ``VenueStreamDisconnected``
        when the connection drops."""
        raise NotImplementedError(f"{self.exchange} has no event stream; poll fills_since")
