from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from mmsite.api.pagination import PageRequest, paginate
from trading.api.base import ClientAPIView
from trading.api.filters import OpenOrderFilter, OrderFilter, apply_filters, filter_parameters
from trading.api.params import parse_id
from trading.api.serializers import (
    ORDER_COLUMNS,
    ErrorSchema,
    OpenOrdersSchema,
    OrderPageSchema,
    OrderSchema,
    OrderSummarySchema,
    order_row,
    order_summary_body,
    render_order_values,
    render_orders,
)
from trading.selectors import orders as selectors

PAGE_PARAMS = [
    OpenApiParameter("page", int, description="Page number, 1-indexed (default 1)"),
    OpenApiParameter("pageSize", int, description="Items per page, 1-2000 (default 50)"),
]
ERRORS = {400: ErrorSchema, 401: ErrorSchema, 429: ErrorSchema}


class OrderListView(ClientAPIView):
    @extend_schema(
        tags=["orders"],
        operation_id="orders_list",
        summary="Exchange orders (paginated, filterable)",
        parameters=[*filter_parameters(OrderFilter), *PAGE_PARAMS],
        responses={200: OrderPageSchema, **ERRORS},
    )
    def get(self, request):
        page = PageRequest.from_params(request.query_params)
        qs = apply_filters(OrderFilter, request.query_params, selectors.orders_for_client(client=self.client))
        client, columns = self.client, ORDER_COLUMNS.values()

        def fetch(pks) -> list[dict]:
            return selectors.order_values_page(client=client, pks=pks, columns=columns)

        return Response(paginate(qs, page, render_order_values, fetch=fetch))


class OpenOrderListView(ClientAPIView):
    @extend_schema(
        tags=["orders"],
        operation_id="orders_open",
        summary="Currently open orders (PENDING_PLACEMENT or PLACED), not paginated",
        parameters=filter_parameters(OpenOrderFilter),
        responses={200: OpenOrdersSchema, **ERRORS},
    )
    def get(self, request):
        qs = apply_filters(OpenOrderFilter, request.query_params, selectors.open_orders_for_client(client=self.client))
        rows = render_orders(qs)
        return Response({"data": rows, "count": len(rows)})


class OrderSummaryView(ClientAPIView):
    @extend_schema(
        tags=["orders"],
        operation_id="orders_summary",
        summary="Order statistics over the orders the same filters as GET /orders select",
        parameters=filter_parameters(OrderFilter),
        responses={200: OrderSummarySchema, **ERRORS},
    )
    def get(self, request):
        qs = apply_filters(OrderFilter, request.query_params, selectors.orders_for_client(client=self.client))
        return Response(order_summary_body(selectors.order_summary(client=self.client, orders=qs)))


class OrderDetailView(ClientAPIView):
    @extend_schema(
        tags=["orders"],
        operation_id="orders_retrieve",
        summary="One order",
        parameters=[OpenApiParameter("order_id", int, OpenApiParameter.PATH, description="orderId")],
        responses={200: OrderSchema, 404: ErrorSchema, **ERRORS},
    )
    def get(self, request, order_id: str):
        order = get_object_or_404(selectors.orders_for_client(client=self.client), pk=parse_id(order_id, "id"))
        return Response(order_row(order))
