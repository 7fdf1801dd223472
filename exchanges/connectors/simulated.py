"""The simulated venue: a real implementation of ``VenueConnector`` whose truth lives in the database.

Every process (web, workers, the stream runner, the taker flow) sees the same venue, as with a real
one. It is idempotent on the client order id, as the venues we connect to are: placing the same
client order id twice returns the first order. Books are per (exchange, account).

Misbehaviour is configured per venue account (``SimVenueAccount`` rows, set with
:meth:`SimulatedVenueConnector.configure`) over the defaults in ``settings.SIM_VENUE``:

* ``latency_ms``: every call takes this long (half before the venue acts, half after);
* ``reject_rate``: a new order is refused (``VenueError``, nothing recorded);
* ``timeout_rate``: a call raises ``VenueUnknownOutcome``. For ``place`` of a new order and for
  ``cancel`` it is, with equal odds, a lost request (nothing happened) or a lost answer (the venue
  acted, the caller does not know); reads simply time out;
* ``disconnect_rate``: per stream poll, the stream drops (``VenueStreamDisconnected``);
  :meth:`SimulatedVenueConnector.inject_disconnect` drops every open stream of an account now;
* ``expire_after_seconds``: resting orders expire at the venue (``expired`` order events), applied
  by :meth:`expire_due` (the taker flow calls it).

The draws come from a ``random.Random`` seeded with ``SIM_VENUE['seed']`` and the exchange, one
per connector instance (per process): a process making the same calls sees the same faults.

``match`` is the taker side (tests, the seeded taker flow of ``exchanges.connectors.sim_taker``).
Every change writes a ``SimVenueEvent`` in its transaction: that table is the user channel that
:meth:`stream` serves, with the event id as the resumable cursor.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from exchanges.models.venue import (
    SimVenueAccount,
    SimVenueEvent,
    SimVenueEventKind,
    SimVenueOrder,
    SimVenueOrderStatus,
    SimVenueTrade,
)

from .base import (
    FillPage,
    PlaceRequest,
    VenueConnector,
    VenueError,
    VenueEvent,
    VenueFill,
    VenueOrder,
    VenueOrderNotFound,
    VenueStreamDisconnected,
    VenueUnknownOutcome,
)

_STATE = {
    SimVenueOrderStatus.OPEN: "open",
    SimVenueOrderStatus.FILLED: "filled",
    SimVenueOrderStatus.CANCELLED: "cancelled",
    SimVenueOrderStatus.REJECTED: "rejected",
    SimVenueOrderStatus.EXPIRED: "expired",
}

SIM_BALANCE = Decimal("1000000")

DEFAULTS: dict[str, object] = {
    "seed": 0,
    "latency_ms": 0,
    "reject_rate": "0",
    "timeout_rate": "0",
    "disconnect_rate": "0",
    "expire_after_seconds": None,
    "stream_poll_seconds": 0.1,
    "stream_idle_seconds": 1.0,
}
#: How long a process trusts its copy of an account's fault settings.
CONFIG_TTL = 1.0
#: Trades per ``fills_since`` page.
PAGE = 500


@dataclass(frozen=True)
class SimConfig:
    latency_ms: int = 0
    reject_rate: Decimal = Decimal(0)
    timeout_rate: Decimal = Decimal(0)
    disconnect_rate: Decimal = Decimal(0)
    expire_after_seconds: int | None = None


def sim_setting(name: str):
    return {**DEFAULTS, **getattr(settings, "SIM_VENUE", {})}[name]


def _to_venue_order(o: SimVenueOrder) -> VenueOrder:
    return VenueOrder(
        venue_order_id=o.venue_order_id,
        client_order_id=o.client_order_id,
        market=o.market,
        side=o.side,  # type: ignore[arg-type]
        price=o.price,
        size=o.size,
        filled=o.filled,
        state=_STATE[SimVenueOrderStatus(o.status)],  # type: ignore[arg-type]
    )


def _to_fill(t: SimVenueTrade, order: SimVenueOrder | None = None) -> VenueFill:
    order = order or t.order
    return VenueFill(
        trade_id=t.trade_id,
        venue_order_id=order.venue_order_id,
        client_order_id=order.client_order_id,
        price=t.price,
        size=t.size,
        at=t.created_at,
    )


def _event(order: SimVenueOrder, kind: str, trade: SimVenueTrade | None = None) -> None:
    SimVenueEvent.objects.create(exchange=order.exchange, account=order.account, kind=kind, order=order, trade=trade)


class SimulatedVenueConnector(VenueConnector):
    exchange = "simulated"
    has_stream = True

    _config_cache: dict[tuple[str, str], tuple[float, SimConfig]] = {}

    def __init__(self, exchange: str = "simulated"):
        self.exchange = exchange
        self._rng = random.Random(f"{sim_setting('seed')}:{exchange}")  # noqa: S311 - simulation, not crypto
        self._rng_lock = threading.Lock()

    # --- configuration and fault injection -------------------------------------------------------

    @classmethod
    def configure(cls, *, exchange: str, account: str, **fields) -> SimVenueAccount:
        """Set an account's fault settings (``latency_ms``, ``reject_rate``, ``timeout_rate``,
        ``disconnect_rate``, ``expire_after_seconds``; None = the settings default)."""
        row, _ = SimVenueAccount.objects.update_or_create(exchange=exchange, account=account, defaults=fields)
        cls._config_cache.clear()
        return row

    @classmethod
    def inject_disconnect(cls, *, exchange: str, account: str) -> None:
        """Drop every open stream of the account on its next poll (any process)."""
        row, _ = SimVenueAccount.objects.get_or_create(exchange=exchange, account=account)
        SimVenueAccount.objects.filter(pk=row.pk).update(disconnect_seq=row.disconnect_seq + 1)

    def config(self, account: str) -> SimConfig:
        key = (self.exchange, account)
        hit = self._config_cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CONFIG_TTL:
            return hit[1]
        row = SimVenueAccount.objects.filter(exchange=self.exchange, account=account).first()

        def pick(name: str, cast):
            value = getattr(row, name) if row is not None else None
            value = sim_setting(name) if value is None else value
            return None if value is None else cast(str(value) if cast is Decimal else value)

        cfg = SimConfig(
            latency_ms=pick("latency_ms", int) or 0,
            reject_rate=pick("reject_rate", Decimal),
            timeout_rate=pick("timeout_rate", Decimal),
            disconnect_rate=pick("disconnect_rate", Decimal),
            expire_after_seconds=pick("expire_after_seconds", int),
        )
        self._config_cache[key] = (now, cfg)
        return cfg

    def _roll(self, rate: Decimal) -> bool:
        if rate <= 0:
            return False
        with self._rng_lock:
            return Decimal(str(self._rng.random())) < rate

    def _coin(self) -> bool:
        with self._rng_lock:
            return self._rng.random() < 0.5

    @staticmethod
    def _sleep(cfg: SimConfig) -> None:
        if cfg.latency_ms:
            time.sleep(cfg.latency_ms / 2000)

    def _read_fault(self, cfg: SimConfig, what: str) -> None:
        """A read's round trip (the whole latency) and its chance of timing out."""
        self._sleep(cfg)
        self._sleep(cfg)
        if self._roll(cfg.timeout_rate):
            raise VenueUnknownOutcome(f"simulated timeout: {what}")

    # --- the interface ---------------------------------------------------------------------------

    def place(self, req: PlaceRequest) -> VenueOrder:
        if not (Decimal("0.01") <= req.price <= Decimal("0.99")):
            raise VenueError(f"price {req.price} outside 0.01-0.99")
        if req.size <= 0:
            raise VenueError("size must be positive")
        cfg = self.config(req.account)
        self._sleep(cfg)
        existing = SimVenueOrder.objects.filter(client_order_id=req.client_order_id).first()
        lost_answer = False
        if existing is None:
            if self._roll(cfg.reject_rate):
                raise VenueError("simulated rejection: order refused by the venue")
            if self._roll(cfg.timeout_rate):
                lost_answer = self._coin()
                if not lost_answer:
                    raise VenueUnknownOutcome(f"simulated timeout before {req.client_order_id} reached the venue")
            expires = cfg.expire_after_seconds
            with transaction.atomic():
                order, created = SimVenueOrder.objects.get_or_create(
                    client_order_id=req.client_order_id,
                    defaults={
                        "venue_order_id": f"sim-{uuid.uuid4().hex[:20]}",
                        "exchange": self.exchange,
                        "account": req.account,
                        "market": req.market,
                        "side": req.side,
                        "price": req.price,
                        "size": req.size,
                        "expires_at": timezone.now() + dt.timedelta(seconds=expires) if expires else None,
                    },
                )
                if created:
                    _event(order, SimVenueEventKind.ORDER)
        else:
            order = existing
        self._sleep(cfg)
        if lost_answer:
            raise VenueUnknownOutcome(f"simulated timeout: the answer for {req.client_order_id} was lost")
        return _to_venue_order(order)

    def cancel(self, *, account: str, venue_order_id: str) -> VenueOrder:
        cfg = self.config(account)
        self._sleep(cfg)
        lost_answer = False
        if self._roll(cfg.timeout_rate):
            lost_answer = self._coin()
            if not lost_answer:
                raise VenueUnknownOutcome(f"simulated timeout before the cancel of {venue_order_id} reached the venue")
        with transaction.atomic():
            order = (
                SimVenueOrder.objects.select_for_update()
                .filter(venue_order_id=venue_order_id, exchange=self.exchange, account=account)
                .first()
            )
            if order is None:
                raise VenueOrderNotFound(venue_order_id)
            if order.status == SimVenueOrderStatus.OPEN:
                order.status = SimVenueOrderStatus.CANCELLED
                order.save(update_fields=["status", "updated_at"])
                _event(order, SimVenueEventKind.ORDER)
        self._sleep(cfg)
        if lost_answer:
            raise VenueUnknownOutcome(f"simulated timeout: the answer to the cancel of {venue_order_id} was lost")
        return _to_venue_order(order)

    def open_orders(self, *, account: str) -> list[VenueOrder]:
        self._read_fault(self.config(account), "open orders")
        qs = SimVenueOrder.objects.filter(
            exchange=self.exchange, account=account, status=SimVenueOrderStatus.OPEN
        ).order_by("id")
        return [_to_venue_order(o) for o in qs]

    def order_status(self, *, account: str, client_order_id: str) -> VenueOrder | None:
        self._read_fault(self.config(account), "order status")
        order = SimVenueOrder.objects.filter(
            exchange=self.exchange, account=account, client_order_id=client_order_id
        ).first()
        return _to_venue_order(order) if order else None

    def fills_since(self, *, account: str, cursor: str = "") -> FillPage:
        self._read_fault(self.config(account), "fills")
        qs = (
            SimVenueTrade.objects.filter(order__exchange=self.exchange, order__account=account)
            .select_related("order")
            .order_by("id")
        )
        if cursor:
            qs = qs.filter(id__gt=int(cursor))
        trades = list(qs[:PAGE])
        return FillPage(fills=[_to_fill(t) for t in trades], cursor=str(trades[-1].id) if trades else cursor)

    def balance(self, *, account: str) -> Decimal:
        """1,000,000 less the collateral of resting orders (a buy reserves price x rest, a sell
        (1 - price) x rest)."""
        self._read_fault(self.config(account), "balance")
        reserved = Decimal(0)
        for side, price, size, filled in SimVenueOrder.objects.filter(
            exchange=self.exchange, account=account, status=SimVenueOrderStatus.OPEN
        ).values_list("side", "price", "size", "filled"):
            reserved += (price if side == "buy" else 1 - price) * (size - filled)
        return SIM_BALANCE - reserved

    def stream(self, *, account: str, cursor: str = "") -> Iterator[VenueEvent]:
        return SimVenueStream(self, account=account, cursor=cursor)

    # --- the venue's own side: takers and expiry --------------------------------------------------

    def match(self, *, venue_order_id: str, size: Decimal, trade_id: str | None = None) -> VenueFill:
        """A taker trades ``size`` against a resting order (at most its rest); returns the fill."""
        with transaction.atomic():
            order = SimVenueOrder.objects.select_for_update().get(venue_order_id=venue_order_id)
            if order.status != SimVenueOrderStatus.OPEN:
                raise VenueError(f"order {venue_order_id} is {order.status}")
            size = min(size, order.size - order.filled)
            if size <= 0:
                raise VenueError("nothing left to match")
            trade = SimVenueTrade.objects.create(
                trade_id=trade_id or f"simt-{uuid.uuid4().hex[:20]}", order=order, price=order.price, size=size
            )
            order.filled += size
            if order.filled >= order.size:
                order.status = SimVenueOrderStatus.FILLED
            order.save(update_fields=["filled", "status", "updated_at"])
            _event(order, SimVenueEventKind.FILL, trade)
            _event(order, SimVenueEventKind.ORDER)
        return _to_fill(trade, order)

    def expire_due(self, *, now=None) -> list[str]:
        """Expire this exchange's resting orders past their ``expires_at``; their venue ids."""
        now = now or timezone.now()
        done = []
        ids = list(
            SimVenueOrder.objects.filter(
                exchange=self.exchange, status=SimVenueOrderStatus.OPEN, expires_at__lte=now
            ).values_list("id", flat=True)
        )
        for pk in ids:
            with transaction.atomic():
                order = SimVenueOrder.objects.select_for_update().get(pk=pk)
                if order.status != SimVenueOrderStatus.OPEN:
                    continue
                order.status = SimVenueOrderStatus.EXPIRED
                order.save(update_fields=["status", "updated_at"])
                _event(order, SimVenueEventKind.ORDER)
            done.append(order.venue_order_id)
        return done


class SimVenueStream(Iterator[VenueEvent]):
    """One subscription to an account's user channel. Subscribing resolves the cursor (``""``:
    the latest event now), so nothing after the subscription is missed. Iteration polls the event
    table every ``stream_poll_seconds``, yields ``idle`` after ``stream_idle_seconds`` of silence,
    and raises ``VenueStreamDisconnected`` on an injected or random disconnect (after which the
    object stays closed: subscribe again with the last cursor)."""

    def __init__(self, venue: SimulatedVenueConnector, *, account: str, cursor: str = ""):
        self.venue = venue
        self.account = account
        cfg = venue.config(account)
        venue._sleep(cfg)
        events = SimVenueEvent.objects.filter(exchange=venue.exchange, account=account)
        self.cursor = int(cursor) if cursor else (events.aggregate(m=Max("id"))["m"] or 0)
        self._seq = self._disconnect_seq()
        self._buffer: list[VenueEvent] = []
        self._quiet_since = time.monotonic()
        self.closed = False
        self.poll_seconds = float(sim_setting("stream_poll_seconds"))
        self.idle_seconds = float(sim_setting("stream_idle_seconds"))

    def _disconnect_seq(self) -> int:
        return (
            SimVenueAccount.objects.filter(exchange=self.venue.exchange, account=self.account)
            .values_list("disconnect_seq", flat=True)
            .first()
            or 0
        )

    def _drop(self, why: str) -> None:
        self.closed = True
        raise VenueStreamDisconnected(f"simulated stream of {self.venue.exchange}:{self.account} dropped: {why}")

    def _poll(self) -> list[VenueEvent]:
        if self._disconnect_seq() != self._seq:
            self._drop("injected disconnect")
        if self.venue._roll(self.venue.config(self.account).disconnect_rate):
            self._drop("random disconnect")
        rows = (
            SimVenueEvent.objects.filter(Q(exchange=self.venue.exchange, account=self.account, id__gt=self.cursor))
            .select_related("order", "trade")
            .order_by("id")[:200]
        )
        out = []
        for row in rows:
            if row.kind == SimVenueEventKind.FILL and row.trade is not None:
                out.append(VenueEvent(kind="fill", fill=_to_fill(row.trade, row.order), cursor=str(row.pk)))
            else:
                out.append(VenueEvent(kind="order", order=_to_venue_order(row.order), cursor=str(row.pk)))
        return out

    def __next__(self) -> VenueEvent:
        if self.closed:
            raise VenueStreamDisconnected("stream closed; subscribe again")
        while not self._buffer:
            self._buffer = self._poll()
            if self._buffer:
                break
            if time.monotonic() - self._quiet_since >= self.idle_seconds:
                self._quiet_since = time.monotonic()
                return VenueEvent(kind="idle", cursor=str(self.cursor))
            time.sleep(self.poll_seconds)
        event = self._buffer.pop(0)
        self.cursor = int(event.cursor)
        self._quiet_since = time.monotonic()
        return event
