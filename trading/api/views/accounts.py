"""The caller's exchange accounts: ``accounts`` (seed 000 step 6). Credentials are never rendered."""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from trading.api.base import ClientAPIView
from trading.api.filters import AccountFilter, apply_filters, filter_parameters
from trading.api.serializers import AccountListSchema, account_row
from trading.api.views.orders import ERRORS
from trading.selectors import accounts as selectors


class AccountListView(ClientAPIView):
    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_list",
        summary="Your exchange accounts (no credentials)",
        parameters=filter_parameters(AccountFilter),
        responses={200: AccountListSchema, **ERRORS},
    )
    def get(self, request):
        qs = apply_filters(AccountFilter, request.query_params, selectors.accounts_for_client(client=self.client))
        rows = [account_row(a) for a in qs]
        return Response({"oddsFormat": self.client.odds_format, "accounts": rows, "count": len(rows)})


urlpatterns = [
    path("accounts", AccountListView.as_view(), name="accounts"),
]
