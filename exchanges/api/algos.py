"""TWAP, scale orders and the dead-man's switch (seed 004 and its SDK's paths), mounted with the rest
of the exchange API at ``/api/v1/exchange/``. docs/exchange-algos.md.

- ``POST /{symbol}/twap``, ``GET /{symbol}/twap`` (active), ``GET|DELETE /{symbol}/twap/{twap_id}``
- ``POST /{symbol}/scale``
- ``GET|POST|DELETE /dead-mans-switch``, ``POST /dead-mans-switch/heartbeat``
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from exchanges.errors import Codes, ExchangeError
from exchanges.models import DeadMansSwitch, TwapOrder
from exchanges.services import deadman, scale, twap

from . import schemas as s
from .base import TraderView
from .render import dec, order_json, ts
from .throttling import orders_throttle

ERRORS = {code: s.ExchangeErrorSchema for code in (400, 401, 404, 409, 429)}
SYMBOL = OpenApiParameter("symbol", str, OpenApiParameter.PATH, description="pair symbol, e.g. vaix")
TWAP_ID = OpenApiParameter("twap_id", str, OpenApiParameter.PATH, description="twap_…")
TAGS = ["exchange: algos"]

TWAP_FIELDS = {"side", "quantity", "duration_minutes", "num_slices", "price_limit", "mode"}
SCALE_FIELDS = {
    "side",
    "quantity",
    "price_low",
    "price_high",
    "num_orders",
    "distribution",
    "mode",
    "order_type",
    "size_ratio",
}


# --- rendering -----------------------------------------------------------------------------------------------


def twap_json(t: TwapOrder, *, slices: bool = True) -> dict[str, Any]:
    avg = (t.executed_notional / t.executed_quantity).quantize(Decimal("0.00000001")) if t.executed_quantity else None
    body: dict[str, Any] = {
        "twap_id": t.twap_id,
        "id": t.twap_id,
        "symbol": t.market.symbol,
        "mode": t.mode,
        "side": t.side,
        "quantity": dec(t.quantity),
        "executed_quantity": dec(t.executed_quantity),
        "avg_price": dec(avg),
        "price_limit": dec(t.price_limit) if t.price_limit is not None else "0",
        "duration_minutes": t.duration_minutes,
        "num_slices": t.num_slices,
        "slices_done": t.slices_done,
        "status": t.status,
        "created_at": ts(t.created_at),
        "ends_at": ts(t.ends_at),
        "finished_at": ts(t.finished_at),
    }
    if slices:
        rows = list(t.slices.select_related("order").order_by("index"))
        pending = [r for r in rows if r.status == "pending"]
        body["next_slice_at"] = ts(pending[0].due_at) if pending and t.status == "active" else None
        body["slices"] = [
            {
                "index": r.index,
                "quantity": dec(r.quantity),
                "due_at": ts(r.due_at),
                "status": r.status,
                "order_id": r.order.order_id if r.order_id else None,
                "filled_quantity": dec(r.filled_quantity),
                "error_code": r.error_code or None,
            }
            for r in rows
        ]
    return body


def dms_json(switch: DeadMansSwitch | None) -> dict[str, Any]:
    if switch is None:
        return {
            "active": False,
            "timeout_ms": None,
            "expires_at": None,
            "last_heartbeat_at": None,
            "triggered_at": None,
        }
    return {
        "active": switch.active,
        "timeout_ms": switch.timeout_ms,
        "expires_at": ts(switch.expires_at) if switch.active else None,
        "last_heartbeat_at": ts(switch.last_heartbeat_at),
        "activated_at": ts(switch.activated_at),
        "triggered_at": ts(switch.triggered_at),
        "triggered_cancelled": switch.triggered_cancelled,
    }


def _fields(body: dict, allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        name = sorted(unknown)[0]
        raise ExchangeError(Codes.INVALID_PARAMETER, f"unknown field {name!r}", parameter=name)
    for required in ("side", "quantity"):
        if required not in body:
            code = Codes.INVALID_SIDE if required == "side" else Codes.INVALID_QUANTITY
            raise ExchangeError(code, f"{required} is required", parameter=required)


# --- schemas -----------------------------------------------------------------------------------------------------


class TwapRequest(serializers.Serializer):
    side = serializers.ChoiceField(choices=["buy", "sell"])
    quantity = serializers.CharField(help_text="total base quantity")
    duration_minutes = serializers.IntegerField(required=False, help_text="default 60, at most 10080")
    num_slices = serializers.IntegerField(required=False, help_text="default 10, at most 1000")
    price_limit = serializers.CharField(required=False, help_text="max price for buys / min for sells; 0 = no limit")
    mode = serializers.ChoiceField(choices=["live", "paper"], required=False)


class TwapSliceSchema(serializers.Serializer):
    index = serializers.IntegerField()
    quantity = serializers.CharField()
    due_at = serializers.DateTimeField()
    status = serializers.CharField(help_text="pending, placed, failed or cancelled")
    order_id = serializers.CharField(allow_null=True)
    filled_quantity = serializers.CharField()
    error_code = serializers.CharField(allow_null=True)


class TwapSchema(serializers.Serializer):
    twap_id = serializers.CharField()
    id = serializers.CharField()
    symbol = serializers.CharField()
    mode = serializers.CharField()
    side = serializers.CharField()
    quantity = serializers.CharField()
    executed_quantity = serializers.CharField()
    avg_price = serializers.CharField(allow_null=True)
    price_limit = serializers.CharField()
    duration_minutes = serializers.IntegerField()
    num_slices = serializers.IntegerField()
    slices_done = serializers.IntegerField()
    status = serializers.CharField(help_text="active, completed or cancelled")
    created_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    next_slice_at = serializers.DateTimeField(allow_null=True)
    slices = TwapSliceSchema(many=True)


class TwapListSchema(serializers.Serializer):
    twaps = TwapSchema(many=True)


class ScaleRequest(serializers.Serializer):
    side = serializers.ChoiceField(choices=["buy", "sell"])
    quantity = serializers.CharField(help_text="total base quantity over all orders")
    price_low = serializers.CharField()
    price_high = serializers.CharField()
    num_orders = serializers.IntegerField(required=False, help_text="default 10, 1..50")
    distribution = serializers.ChoiceField(choices=["linear", "exponential"], required=False)
    size_ratio = serializers.CharField(required=False, help_text="exponential: size step between orders (1.25)")
    order_type = serializers.ChoiceField(choices=["limit", "post_only"], required=False)
    mode = serializers.ChoiceField(choices=["live", "paper"], required=False)


class ScaleSchema(serializers.Serializer):
    symbol = serializers.CharField()
    mode = serializers.CharField()
    side = serializers.CharField()
    quantity = serializers.CharField()
    distribution = serializers.CharField()
    num_orders = serializers.IntegerField()
    orders = s.ExchangeOrderSchema(many=True)


class DmsRequest(serializers.Serializer):
    timeout_ms = serializers.IntegerField(required=False, help_text="1000..86400000, default 60000")


class DmsSchema(serializers.Serializer):
    active = serializers.BooleanField()
    timeout_ms = serializers.IntegerField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    last_heartbeat_at = serializers.DateTimeField(allow_null=True)
    activated_at = serializers.DateTimeField(allow_null=True, required=False)
    triggered_at = serializers.DateTimeField(allow_null=True)
    triggered_cancelled = serializers.IntegerField(required=False)


# --- views -------------------------------------------------------------------------------------------------------


class TwapView(TraderView):
    @extend_schema(
        tags=TAGS,
        summary="Place a TWAP order",
        parameters=[SYMBOL],
        request=TwapRequest,
        responses={201: TwapSchema, **ERRORS},
    )
    def post(self, request, symbol):
        body = self.body()
        _fields(body, TWAP_FIELDS)
        orders_throttle(trader=self.trader, symbol=symbol.lower(), count=1)
        t = twap.twap_create(
            trader=self.trader,
            symbol=symbol,
            side=body["side"],
            quantity=body["quantity"],
            duration_minutes=body.get("duration_minutes"),
            num_slices=body.get("num_slices"),
            price_limit=body.get("price_limit"),
            mode=body.get("mode") or "live",
        )
        t.refresh_from_db()
        return Response(twap_json(t), status=201)

    @extend_schema(
        tags=TAGS, summary="Active TWAP orders", parameters=[SYMBOL], responses={200: TwapListSchema, **ERRORS}
    )
    def get(self, request, symbol):
        return Response({"twaps": [twap_json(t) for t in twap.twaps_active(trader=self.trader, symbol=symbol)]})


class TwapDetailView(TraderView):
    @extend_schema(
        tags=TAGS,
        summary="A TWAP order and its slices",
        parameters=[SYMBOL, TWAP_ID],
        responses={200: TwapSchema, **ERRORS},
    )
    def get(self, request, symbol, twap_id):
        return Response(twap_json(twap.twap_get(trader=self.trader, symbol=symbol, twap_id=twap_id)))

    @extend_schema(
        tags=TAGS,
        summary="Cancel a TWAP order (no further slices)",
        parameters=[SYMBOL, TWAP_ID],
        request=None,
        responses={200: TwapSchema, **ERRORS},
    )
    def delete(self, request, symbol, twap_id):
        return Response(twap_json(twap.twap_cancel(trader=self.trader, symbol=symbol, twap_id=twap_id)))


class ScaleView(TraderView):
    @extend_schema(
        tags=TAGS,
        summary="Place a scale order (all child orders or none)",
        parameters=[SYMBOL],
        request=ScaleRequest,
        responses={201: ScaleSchema, **ERRORS},
    )
    def post(self, request, symbol):
        body = self.body()
        _fields(body, SCALE_FIELDS)
        for required in ("price_low", "price_high"):
            if body.get(required) in (None, ""):
                raise ExchangeError(Codes.INVALID_PRICE, f"{required} is required", parameter=required)
        orders_throttle(trader=self.trader, symbol=symbol.lower(), count=1)
        orders = scale.scale_place(
            trader=self.trader,
            symbol=symbol,
            side=body["side"],
            quantity=body["quantity"],
            price_low=body["price_low"],
            price_high=body["price_high"],
            num_orders=body.get("num_orders"),
            distribution=body.get("distribution"),
            mode=body.get("mode") or "live",
            order_type=body.get("order_type"),
            size_ratio=body.get("size_ratio"),
        )
        first = orders[0]
        return Response(
            {
                "symbol": first.market.symbol,
                "mode": first.mode,
                "side": first.side,
                "quantity": dec(sum(o.quantity for o in orders)),
                "distribution": body.get("distribution") or "linear",
                "num_orders": len(orders),
                "orders": [order_json(o) for o in orders],
            },
            status=201,
        )


class DeadMansSwitchView(TraderView):
    @extend_schema(tags=TAGS, summary="Dead-man's switch status", responses={200: DmsSchema, **ERRORS})
    def get(self, request):
        return Response(dms_json(deadman.dms_get(trader=self.trader)))

    @extend_schema(
        tags=TAGS,
        summary="Activate the dead-man's switch: all orders are cancelled if no heartbeat comes within timeout_ms",
        request=DmsRequest,
        responses={200: DmsSchema, **ERRORS},
    )
    def post(self, request):
        body = self.body() if request.data else {}
        unknown = set(body) - {"timeout_ms"}
        if unknown:
            name = sorted(unknown)[0]
            raise ExchangeError(Codes.INVALID_PARAMETER, f"unknown field {name!r}", parameter=name)
        return Response(dms_json(deadman.dms_activate(trader=self.trader, timeout_ms=body.get("timeout_ms"))))

    @extend_schema(
        tags=TAGS, summary="Deactivate the dead-man's switch", request=None, responses={200: DmsSchema, **ERRORS}
    )
    def delete(self, request):
        return Response(dms_json(deadman.dms_deactivate(trader=self.trader)))


class DeadMansSwitchHeartbeatView(TraderView):
    @extend_schema(
        tags=TAGS,
        summary="Heartbeat: push the dead-man's switch deadline to now + timeout_ms",
        request=None,
        responses={200: DmsSchema, **ERRORS},
    )
    def post(self, request):
        return Response(dms_json(deadman.dms_heartbeat(trader=self.trader)))


urlpatterns = [
    path("dead-mans-switch", DeadMansSwitchView.as_view(), name="dead-mans-switch"),
    path("dead-mans-switch/heartbeat", DeadMansSwitchHeartbeatView.as_view(), name="dead-mans-switch-heartbeat"),
    path("<str:symbol>/twap", TwapView.as_view(), name="twap"),
    path("<str:symbol>/twap/<str:twap_id>", TwapDetailView.as_view(), name="twap-detail"),
    path("<str:symbol>/scale", ScaleView.as_view(), name="scale"),
]
