"""The simulated venue: a real implementation of ``VenueConnector`` whose book lives in the database.

Every process (web, workers, the feed) sees the same venue, as with a real one. It is idempotent on
the client order id, as the venues we connect to are: placing the same client order id twice
returns the first order. ``match`` is the taker side, used by tests and the simulated taker flow.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import transaction

from exchanges.models import SimVenueOrder, SimVenueOrderStatus, SimVenueTrade

from .base import FillPage, PlaceRequest, VenueConnector, VenueError, VenueFill, VenueOrder, VenueOrderNotFound

_STATE = {
    SimVenueOrderStatus.OPEN: "open",
    SimVenueOrderStatus.FILLED: "filled",
    SimVenueOrderStatus.CANCELLED: "cancelled",
    SimVenueOrderStatus.REJECTED: "rejected",
}

SIM_BALANCE = Decimal("1000000")


def _to_venue_order(o: SimVenueOrder) -> VenueOrder:
    return VenueOrder(
        venue_order_id=o.venue_order_id,
        client_order_id=o.client_order_id,
        market=o.market,
        side=o.side,  # type: ignore[arg-type]
        price=o.price,
        size=o.size,
        filled=o.filled,
        state=_STATE[SimVenueOrderStatus(o.status)],  # type: ignore[typeddict-item]
    )


def _to_fill(t: SimVenueTrade) -> VenueFill:
    return VenueFill(
        trade_id=t.trade_id,
        venue_order_id=t.order.venue_order_id,
        client_order_id=t.order.client_order_id,
        price=t.price,
        size=t.size,
        at=t.created_at,
    )


class SimulatedVenueConnector(VenueConnector):
    exchange = "simulated"

    def __init__(self, exchange: str = "simulated"):
        self.exchange = exchange

    def place(self, req: PlaceRequest) -> VenueOrder:
        if not (Decimal("0.01") <= req.price <= Decimal("0.99")):
            raise VenueError(f"price {req.price} outside 0.01-0.99")
        if req.size <= 0:
            raise VenueError("size must be positive")
        with transaction.atomic():
            order, _ = SimVenueOrder.objects.get_or_create(
                client_order_id=req.client_order_id,
                defaults={
                    "venue_order_id": f"sim-{uuid.uuid4().hex[:20]}",
                    "account": req.account,
                    "market": req.market,
                    "side": req.side,
                    "price": req.price,
                    "size": req.size,
                },
            )
        return _to_venue_order(order)

    def cancel(self, *, account: str, venue_order_id: str) -> VenueOrder:
        with transaction.atomic():
            order = (
                SimVenueOrder.objects.select_for_update().filter(venue_order_id=venue_order_id, account=account).first()
            )
            if order is None:
                raise VenueOrderNotFound(venue_order_id)
            if order.status == SimVenueOrderStatus.OPEN:
                order.status = SimVenueOrderStatus.CANCELLED
                order.save(update_fields=["status", "updated_at"])
        return _to_venue_order(order)

    def open_orders(self, *, account: str) -> list[VenueOrder]:
        qs = SimVenueOrder.objects.filter(account=account, status=SimVenueOrderStatus.OPEN).order_by("id")
        return [_to_venue_order(o) for o in qs]

    def order_status(self, *, account: str, client_order_id: str) -> VenueOrder | None:
        order = SimVenueOrder.objects.filter(account=account, client_order_id=client_order_id).first()
        return _to_venue_order(order) if order else None

    def fills_since(self, *, account: str, cursor: str = "") -> FillPage:
        qs = SimVenueTrade.objects.filter(order__account=account).select_related("order").order_by("id")
        if cursor:
            qs = qs.filter(id__gt=int(cursor))
        trades = list(qs[:500])
        return FillPage(fills=[_to_fill(t) for t in trades], cursor=str(trades[-1].id) if trades else cursor)

    def balance(self, *, account: str) -> Decimal:
        return SIM_BALANCE

    # --- the taker side (tests and the simulated taker flow) -------------------------------------

    def match(self, *, venue_order_id: str, size: Decimal, trade_id: str | None = None) -> VenueFill:
        """A taker trades ``size`` against a resting order; returns the venue's fill."""
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
        return _to_fill(trade)
