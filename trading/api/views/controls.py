"""Trading controls and order cancellation of the MM client API (seed 000 steps 7 and 8).

``GET trading/status``; ``POST trading/pause|resume|stop|start``; ``POST orders/cancel-all``;
``POST orders/<id>/cancel``. The POST endpoints answer any other method with 405. See
docs/api/mm-controls.md.
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from exchanges.choices import Exchange
from mmsite.api.errors import APIError
from trading.api.base import ClientAPIView
from trading.api.params import parse_id
from trading.api.serializers import ErrorSchema, OrderSchema, order_row
from trading.models import Order
from trading.selectors.controls import trading_status
from trading.services import controls as services
from trading.services.orders import (
    VENUE_UNAVAILABLE,
    CancelFailed,
    CancelReport,
    OrderNotOpen,
    order_cancel,
    orders_cancel_all,
)

ERRORS = {400: ErrorSchema, 401: ErrorSchema, 405: ErrorSchema, 429: ErrorSchema}


# --- input and output shapes ----------------------------------------------------------------------------------


class ControlRequest(serializers.Serializer):
    reason = serializers.CharField(
        max_length=255, required=False, allow_blank=True, default="", help_text="Why (kept in the audit log)"
    )


class CancelAllParams(serializers.Serializer):
    exchange = serializers.ChoiceField(choices=Exchange.choices, required=False, help_text="Only this exchange")
    fixtureId = serializers.CharField(max_length=64, required=False, help_text="Only this fixture")


class TradingStatusSchema(serializers.Serializer):
    client = serializers.CharField()
    clientName = serializers.CharField()
    oddsFormat = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["live", "manual_paused", "manual_stopped", "soft_paused", "system_stopped", "emergency"]
    )
    tradingActive = serializers.BooleanField(help_text="true when the engine is actively posting orders")
    manualPaused = serializers.BooleanField()
    manualStopped = serializers.BooleanField()
    systemTradingBlocked = serializers.BooleanField(help_text="true if the system is globally paused or stopped")
    emergencyActive = serializers.BooleanField()
    systemStopped = serializers.BooleanField()
    softPaused = serializers.BooleanField()


class CancelFailureSchema(serializers.Serializer):
    orderId = serializers.IntegerField()
    error = serializers.CharField(help_text="venue_unavailable or venue_error")
    message = serializers.CharField()


class CancelAllSchema(serializers.Serializer):
    cancelled = serializers.IntegerField(help_text="How many orders this call cancelled")
    orderIds = serializers.ListField(child=serializers.IntegerField(), help_text="The orders this call cancelled")
    closed = serializers.ListField(
        child=serializers.IntegerField(), help_text="Orders the venue reported already filled or rejected"
    )
    failed = CancelFailureSchema(many=True, help_text="Orders left open: the venue did not confirm")


class StopSchema(TradingStatusSchema):
    cancelled = serializers.IntegerField()
    orderIds = serializers.ListField(child=serializers.IntegerField())
    closed = serializers.ListField(child=serializers.IntegerField())
    failed = CancelFailureSchema(many=True)


def report_body(report: CancelReport) -> dict[str, Any]:
    return {
        "cancelled": len(report.cancelled),
        "orderIds": report.cancelled,
        "closed": report.closed,
        "failed": [{"orderId": f.order_id, "error": f.code, "message": f.message} for f in report.failed],
    }


def _valid(serializer_class: type[serializers.Serializer], data) -> dict[str, Any]:
    s = serializer_class(data=data)
    s.is_valid(raise_exception=True)  # a 400 naming the parameter, through the mm error handler
    return s.validated_data


# --- views ----------------------------------------------------------------------------------------------------


class TradingStatusView(ClientAPIView):
    @extend_schema(
        tags=["trading"],
        operation_id="trading_status",
        summary="Your trading state",
        responses={200: TradingStatusSchema, **ERRORS},
    )
    def get(self, request):
        return Response(trading_status(client=self.client))


def _control_view(name: str, action, summary: str) -> type[ClientAPIView]:
    class View(ClientAPIView):
        @extend_schema(
            tags=["trading"],
            operation_id=f"trading_{name}",
            summary=summary,
            request=ControlRequest,
            responses={200: TradingStatusSchema, **ERRORS},
        )
        def post(self, request):
            reason = _valid(ControlRequest, request.data)["reason"]
            action(client=self.client, actor=self.principal.actor, reason=reason)
            return Response(trading_status(client=self.client))

    View.__name__ = View.__qualname__ = f"Trading{name.title()}View"
    return View


TradingPauseView = _control_view("pause", services.client_pause, "Pause: keep resting orders, post no new ones")
TradingResumeView = _control_view("resume", services.client_resume, "Resume after a pause")
TradingStartView = _control_view("start", services.client_start, "Start after a stop")


class TradingStopView(ClientAPIView):
    @extend_schema(
        tags=["trading"],
        operation_id="trading_stop",
        summary="Stop: cancel every open order on every venue, post no new ones",
        request=ControlRequest,
        responses={200: StopSchema, **ERRORS},
    )
    def post(self, request):
        reason = _valid(ControlRequest, request.data)["reason"]
        report = services.client_stop(client=self.client, actor=self.principal.actor, reason=reason)
        return Response({**trading_status(client=self.client), **report_body(report)})


class CancelAllView(ClientAPIView):
    @extend_schema(
        tags=["orders"],
        operation_id="orders_cancel_all",
        summary="Cancel every open order, optionally only on one exchange or fixture",
        request=None,
        parameters=[
            OpenApiParameter("exchange", str, enum=Exchange.values, description="Only this exchange"),
            OpenApiParameter("fixtureId", str, description="Only this fixture"),
        ],
        responses={200: CancelAllSchema, **ERRORS},
    )
    def post(self, request):
        params = _valid(CancelAllParams, request.query_params)
        report = orders_cancel_all(
            client=self.client,
            actor=self.principal.actor,
            exchange=params.get("exchange"),
            fixture_id=params.get("fixtureId"),
        )
        return Response(report_body(report))


class OrderCancelView(ClientAPIView):
    @extend_schema(
        tags=["orders"],
        operation_id="orders_cancel",
        summary="Cancel one order",
        request=None,
        parameters=[OpenApiParameter("order_id", int, OpenApiParameter.PATH, description="orderId")],
        responses={200: OrderSchema, 404: ErrorSchema, 409: ErrorSchema, 502: ErrorSchema, 503: ErrorSchema, **ERRORS},
    )
    def post(self, request, order_id: str):
        pk = parse_id(order_id, "id")
        try:
            order = order_cancel(client=self.client, order_id=pk, actor=self.principal.actor)
        except Order.DoesNotExist:
            raise APIError("not_found", f"Order {pk} not found", status_code=404) from None
        except OrderNotOpen as exc:
            raise APIError(
                "order_not_open", f"Order {pk} is {exc.order.order_status}, not open", status_code=409
            ) from None
        except CancelFailed as exc:
            status_code = 503 if exc.code == VENUE_UNAVAILABLE else 502
            raise APIError(exc.code, f"{exc.message}; order {pk} is still open", status_code=status_code) from None
        return Response(order_row(order))


urlpatterns = [
    path("trading/status", TradingStatusView.as_view(), name="trading-status"),
    path("trading/pause", TradingPauseView.as_view(), name="trading-pause"),
    path("trading/resume", TradingResumeView.as_view(), name="trading-resume"),
    path("trading/stop", TradingStopView.as_view(), name="trading-stop"),
    path("trading/start", TradingStartView.as_view(), name="trading-start"),
    path("orders/cancel-all", CancelAllView.as_view(), name="orders-cancel-all"),
    path("orders/<str:order_id>/cancel", OrderCancelView.as_view(), name="order-cancel"),
]
