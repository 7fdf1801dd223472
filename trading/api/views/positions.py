"""``/positions``, ``/positions/summary`` and ``/pnl`` (seed 000, steps 4 and 5).

Definitions of the statuses and of every PnL figure: docs/api/mm-positions-pnl.md.
"""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from trading.api.base import ClientAPIView
from trading.api.filters import apply_filters, filter_parameters
from trading.api.position_filters import PnlFilter, PositionFilter
from trading.api.serializers import ErrorSchema
from trading.models import Fill
from trading.selectors import pnl as pnl_selectors
from trading.selectors import positions as position_selectors

# --- OpenAPI shapes (the views render plain dicts) --------------------------------------------------


def _money(help_text: str = "") -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=20, decimal_places=4, help_text=help_text)


class _StakeFields(serializers.Serializer):
    orderCount = serializers.IntegerField()
    totalStake = _money("Sum of order stake")
    matchedStake = _money("Sum of matched stake")
    openStake = _money("Sum of unmatched stake of open orders (PENDING_PLACEMENT, PLACED)")
    avgPrice = _money("Matched-stake-weighted mean order price; stake-weighted when nothing matched")


class PositionSchema(_StakeFields):
    fixtureId = serializers.CharField()
    outcomeId = serializers.IntegerField()
    playerId = serializers.IntegerField()
    exchange = serializers.CharField()


class PositionListSchema(serializers.Serializer):
    positions = PositionSchema(many=True)
    count = serializers.IntegerField()


class ExchangeSummarySchema(_StakeFields):
    exchange = serializers.CharField()
    positionCount = serializers.IntegerField()
    fixtureCount = serializers.IntegerField()


class PositionSummarySchema(_StakeFields):
    positionCount = serializers.IntegerField(help_text="Distinct (fixture, outcome, player, exchange)")
    fixtureCount = serializers.IntegerField()
    byExchange = ExchangeSummarySchema(many=True)


class PnlSchema(serializers.Serializer):
    totalTurnover = _money("Sum of placed hedge-bet stakes")
    validTurnover = _money("Sum of min(B, B(o-1)) over placed bets")
    netRealizedSpread = _money("Fill PnL + bet PnL over pairs with both legs settled")
    nakedPnl = _money("Fill PnL over settled fills with no placed hedge")
    unhedgedStake = _money("Fill stake with no placed hedge")
    unhedgedStakePct = _money("100 * unhedgedStake / total fill stake")
    avgHedgePriceDrift = _money("Bet-stake-weighted mean of (bookmakerOutcomePrice - placedPrice)")
    settledPairCount = serializers.IntegerField()
    nakedSettledCount = serializers.IntegerField()
    fromDate = serializers.DateField(allow_null=True)
    toDate = serializers.DateField(allow_null=True)


ERRORS = {400: ErrorSchema, 401: ErrorSchema, 429: ErrorSchema}

# --- views --------------------------------------------------------------------------------------------


class _PositionView(ClientAPIView):
    def filtered_orders(self, request):
        base = position_selectors.position_orders(client=self.client)
        return apply_filters(PositionFilter, request.query_params, base)


class PositionListView(_PositionView):
    @extend_schema(
        tags=["positions"],
        operation_id="positions_list",
        summary="Positions by fixture, outcome, player and exchange",
        parameters=filter_parameters(PositionFilter),
        responses={200: PositionListSchema, **ERRORS},
    )
    def get(self, request):
        rows = position_selectors.positions(orders=self.filtered_orders(request))
        return Response({"positions": rows, "count": len(rows)})


class PositionSummaryView(_PositionView):
    @extend_schema(
        tags=["positions"],
        operation_id="positions_summary",
        summary="All positions rolled up into one object, with a breakdown per exchange",
        parameters=filter_parameters(PositionFilter),
        responses={200: PositionSummarySchema, **ERRORS},
    )
    def get(self, request):
        return Response(position_selectors.positions_summary(orders=self.filtered_orders(request)))


class PnlView(ClientAPIView):
    @extend_schema(
        tags=["pnl"],
        operation_id="pnl_retrieve",
        summary="Market-making PnL of orders created in a date range",
        parameters=filter_parameters(PnlFilter),
        responses={200: PnlSchema, **ERRORS},
    )
    def get(self, request):
        params = request.query_params
        dates = PnlFilter(data=params, queryset=Fill.objects.none())
        if not dates.is_valid():
            raise ValidationError({name: [str(e) for e in errs] for name, errs in dates.errors.items()})
        body = pnl_selectors.pnl_report(
            client=self.client, from_date=dates.form.cleaned_data["fromDate"], to_date=dates.form.cleaned_data["toDate"]
        )
        # Echoed as given (already validated as YYYY-MM-DD), null when absent.
        body["fromDate"] = params.get("fromDate") or None
        body["toDate"] = params.get("toDate") or None
        return Response(body)


urlpatterns = [
    path("positions", PositionListView.as_view(), name="positions"),
    path("positions/summary", PositionSummaryView.as_view(), name="positions-summary"),
    path("pnl", PnlView.as_view(), name="pnl"),
]
