"""Hedge bets of the caller: ``bets``, ``bets/summary``, ``bets/<id>`` (seed 000 step 3)."""

from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from mmsite.api.pagination import PageRequest, paginate
from trading.api.base import ClientAPIView
from trading.api.filters import BetFilter, apply_filters, filter_parameters
from trading.api.params import parse_id
from trading.api.serializers import (
    BetPageSchema,
    BetSchema,
    BetSummarySchema,
    ErrorSchema,
    bet_row,
    bet_summary_body,
    render_bets,
)
from trading.api.views.orders import ERRORS, PAGE_PARAMS
from trading.selectors import bets as selectors


class BetListView(ClientAPIView):
    @extend_schema(
        tags=["bets"],
        operation_id="bets_list",
        summary="Hedge bets (paginated, filterable)",
        parameters=[*filter_parameters(BetFilter), *PAGE_PARAMS],
        responses={200: BetPageSchema, **ERRORS},
    )
    def get(self, request):
        page = PageRequest.from_params(request.query_params)
        qs = apply_filters(BetFilter, request.query_params, selectors.bets_for_client(client=self.client))
        return Response(paginate(qs, page, render_bets))


class BetSummaryView(ClientAPIView):
    @extend_schema(
        tags=["bets"],
        operation_id="bets_summary",
        summary="Bet statistics over the bets the same filters as GET /bets select",
        parameters=filter_parameters(BetFilter),
        responses={200: BetSummarySchema, **ERRORS},
    )
    def get(self, request):
        qs = apply_filters(BetFilter, request.query_params, selectors.bets_for_client(client=self.client))
        return Response(bet_summary_body(selectors.bet_summary(client=self.client, bets=qs)))


class BetDetailView(ClientAPIView):
    @extend_schema(
        tags=["bets"],
        operation_id="bets_retrieve",
        summary="One hedge bet",
        parameters=[OpenApiParameter("bet_id", int, OpenApiParameter.PATH, description="betId")],
        responses={200: BetSchema, 404: ErrorSchema, **ERRORS},
    )
    def get(self, request, bet_id: str):
        bet = get_object_or_404(selectors.bets_for_client(client=self.client), pk=parse_id(bet_id, "id"))
        return Response(bet_row(bet))


urlpatterns = [
    path("bets", BetListView.as_view(), name="bets"),
    path("bets/summary", BetSummaryView.as_view(), name="bets-summary"),
    path("bets/<str:bet_id>", BetDetailView.as_view(), name="bet-detail"),
]
