"""Fixtures with scores: ``fixtures``, ``fixtures/<fixtureId>``.

Fixtures are reference data shared by every client (the odds feed is the same for all), so any
authenticated client can read any fixture; see docs/api/mm-client.md.
"""

import re

from django.http import Http404
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from mmsite.api.errors import invalid_parameter
from mmsite.api.pagination import PageRequest, paginate
from trading.api.base import ClientAPIView
from trading.api.filters import FixtureFilter, apply_filters, filter_parameters
from trading.api.serializers import ErrorSchema, FixturePageSchema, FixtureSchema, fixture_row, render_fixtures
from trading.api.views.orders import ERRORS, PAGE_PARAMS
from trading.selectors import fixtures as selectors

FIXTURE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class FixtureListView(ClientAPIView):
    @extend_schema(
        tags=["fixtures"],
        operation_id="fixtures_list",
        summary="Fixtures with scores (paginated, filterable; shared by every client)",
        parameters=[*filter_parameters(FixtureFilter), *PAGE_PARAMS],
        responses={200: FixturePageSchema, **ERRORS},
    )
    def get(self, request):
        page = PageRequest.from_params(request.query_params)
        qs = apply_filters(FixtureFilter, request.query_params, selectors.fixtures_for_client(client=self.client))
        return Response(paginate(qs, page, render_fixtures))


class FixtureDetailView(ClientAPIView):
    @extend_schema(
        tags=["fixtures"],
        operation_id="fixtures_retrieve",
        summary="One fixture with its scores",
        parameters=[
            OpenApiParameter("fixture_id", str, OpenApiParameter.PATH, description="fixtureId, e.g. id1000000861624412")
        ],
        responses={200: FixtureSchema, 404: ErrorSchema, **ERRORS},
    )
    def get(self, request, fixture_id: str):
        if not FIXTURE_ID.fullmatch(fixture_id):
            raise invalid_parameter("fixtureId", "must be 1-64 letters, digits, '_', '.', ':' or '-'")
        fixture = selectors.fixture_for_client(client=self.client, fixture_id=fixture_id)
        if fixture is None:
            raise Http404
        return Response(fixture_row(fixture))


urlpatterns = [
    path("fixtures", FixtureListView.as_view(), name="fixtures"),
    path("fixtures/<str:fixture_id>", FixtureDetailView.as_view(), name="fixture-detail"),
]
