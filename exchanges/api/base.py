"""Base views of the exchange API: the ``exchange`` error style, auth, throttles, parameter parsing."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.views import APIView

from exchanges.errors import Codes, ExchangeError
from exchanges.models import Trader
from mmsite.api.errors import APIError

from .authentication import BearerJWTAuthentication, IsTrader, TraderApiKeyAuthentication
from .parsers import DecimalJSONParser
from .throttling import AuthenticatedRateThrottle, PublicRateThrottle

MAX_LIMIT = 500
MAX_OFFSET = 1_000_000


def api_error(exc: ExchangeError) -> APIError:
    return APIError(exc.code, exc.message, status_code=exc.status, parameter=exc.parameter)


class ExchangeAPIView(APIView):
    error_style = "exchange"
    parser_classes = [DecimalJSONParser]
    authentication_classes = [BearerJWTAuthentication, TraderApiKeyAuthentication]

    def handle_exception(self, exc):
        if isinstance(exc, ExchangeError):
            exc = api_error(exc)
        return super().handle_exception(exc)

    # --- parameters ---------------------------------------------------------------------------------

    def int_param(self, name: str, default: int, *, low: int = 1, high: int = MAX_LIMIT) -> int:
        raw = self.request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ExchangeError(Codes.INVALID_PARAMETER, f"{name} must be an integer", parameter=name) from None
        if value < low or value > high:
            raise ExchangeError(Codes.INVALID_PARAMETER, f"{name} must be between {low} and {high}", parameter=name)
        return value

    def mode_param(self, default: str | None = "live") -> str | None:
        raw = self.request.query_params.get("mode")
        if raw is None or raw == "":
            return default
        if raw not in ("live", "paper"):
            raise ExchangeError(Codes.INVALID_MODE, f"mode must be live or paper, got {raw!r}", parameter="mode")
        return raw

    def body(self) -> dict[str, Any]:
        data = self.request.data
        if not isinstance(data, dict):
            raise ExchangeError(Codes.INVALID_PARAMETER, "the request body must be a JSON object")
        return data


class PublicView(ExchangeAPIView):
    """Market data: no authentication needed (an authenticated caller is counted on its own tier)."""

    permission_classes: list = []
    throttle_classes = [PublicRateThrottle]

    def perform_authentication(self, request):
        # Optional: a bad credential on a public endpoint is ignored rather than refused.
        try:
            request.user  # noqa: B018
        except exceptions.APIException:  # a bad credential here means "anonymous"
            request._authenticator, request.user, request.auth = None, None, None


class TraderView(ExchangeAPIView):
    permission_classes = [IsTrader]
    throttle_classes = [AuthenticatedRateThrottle]

    @property
    def trader(self) -> Trader:
        return self.request.user
