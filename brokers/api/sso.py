"""SSO endpoints (seed 003): ``GET /api/auth/sso?token=<JWT>`` and ``POST /api/auth/sso/token``."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponseRedirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers.errors import BrokerError
from brokers.sso import sso_login
from mmsite.api.throttling import FixedWindowThrottle

from .base import BrokerAPIError, DecimalJSONParser

TRADE_PAGE = "/trade/"


class SSORateThrottle(FixedWindowThrottle):
    """Per client address: a token is tried at most this often (guessing secrets is not a game)."""

    scope = "sso"

    def get_rate(self) -> int:
        return getattr(settings, "BROKER_SSO_RATE_PER_MINUTE", 120)

    def get_ident(self, request, view) -> str | None:
        return request.META.get("REMOTE_ADDR") or "unknown"


class SSOBaseView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes = [SSORateThrottle]
    parser_classes = [DecimalJSONParser]
    error_style = "broker"

    def handle_exception(self, exc):
        if isinstance(exc, BrokerError):
            exc = BrokerAPIError(exc.message, status_code=exc.status, extra=exc.extra)
        return super().handle_exception(exc)


class SSORedirectView(SSOBaseView):
    @extend_schema(
        tags=["sso"],
        summary="Browser SSO: validate the broker-signed JWT, log in, redirect to the trading page",
        parameters=[OpenApiParameter("token", str, required=True, description="HS256 JWT signed by the broker")],
        responses={302: None},
    )
    def get(self, request):
        login = sso_login(request.query_params.get("token", ""))
        # The session token travels in the URL fragment: browsers never send it to a server or log it;
        # the trading page moves it into localStorage["auth_token"] and clears the fragment.
        fragment = urlencode({"auth_token": login.session_token, "logout": login.logout_redirect_url})
        response = HttpResponseRedirect(f"{TRADE_PAGE}#{fragment}")
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response


class SSOTokenView(SSOBaseView):
    """For the widget (cross-origin by design: the widget runs on the broker's site)."""

    @extend_schema(
        tags=["sso"],
        summary="Widget SSO: exchange the broker-signed JWT for a session token",
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
    )
    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        token = data.get("token") or data.get("sso_token") or ""
        if not isinstance(token, str) or not token:
            raise BrokerAPIError("token is required", status_code=400)
        broker_uid = data.get("broker_uid") or data.get("broker-uid")
        login = sso_login(token)
        client = login.client
        if broker_uid and str(broker_uid) != str(client.broker_id):
            # the widget is embedded for another broker than the token's tenant: refuse, do not log in
            raise BrokerAPIError("Invalid SSO token: issued for another broker than the widget's", status_code=401)
        return Response(
            {
                "ok": True,
                "token": login.session_token,
                "auth_token": login.session_token,
                "created": login.created,
                "user": {
                    "user_id": client.user_id,
                    "username": client.trader.user.get_username(),
                    "broker_id": str(client.broker_id),
                },
                "logout_redirect_url": login.logout_redirect_url or None,
            }
        )

    def options(self, request, *args, **kwargs):
        return Response(status=204)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Access-Control-Allow-Origin"] = "*"
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        response["Access-Control-Max-Age"] = "600"
        response["Cache-Control"] = "no-store"
        return response
