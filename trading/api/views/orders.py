from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from mmsite.api.pagination import PageRequest, paginate
from trading.selectors import orders as selectors
from trading.api.base import ClientAPIView
from trading.api.filters import OrderFilter, apply_filters
from trading.api.params import parse_id
from trading.api.serializers import ErrorSchema, OrderPageSchema, OrderSchema, order_row, render_orders

PAGE_PARAMS = [
    OpenApiParameter("page", int, description="Page number, 1-indexed (default 1)"),
    OpenApiParameter("pageSize", int, description="Items per page, 1-2000 (default 50)"),
]


class OrderListView(ClientAPIView):
    filter_backends = [DjangoFilterBackend]  # for the schema; filtering runs through apply_filters
    filterset_class = OrderFilter

    @extend_schema(
        tags=["orders"],
        summary="Exchange orders (paginated, filterable)",
        parameters=PAGE_PARAMS,
        responses={200: OrderPageSchema, 400: ErrorSchema, 401: ErrorSchema},
    )
    def get(self, request):
        page = PageRequest.from_params(request.query_params)
        qs = apply_filters(OrderFilter, request.query_params, selectors.orders_for_client(client=self.client))
        return Response(paginate(qs, page, render_orders))


class OrderDetailView(ClientAPIView):
    @extend_schema(
        tags=["orders"], summary="One order", responses={200: OrderSchema, 400: ErrorSchema, 404: ErrorSchema}
    )
    def get(self, request, order_id: str):
        order = get_object_or_404(selectors.orders_for_client(client=self.client), pk=parse_id(order_id, "id"))
        return Response(order_row(order))
