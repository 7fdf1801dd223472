"""Login for traders (the seed's SDK: ``POST /auth/login`` with email and password), token refresh,
logout and ``/auth/me``. Tokens are the exchange's JWTs (``authentication.issue_jwt``)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from exchanges.models import Trader
from mmsite.api.errors import APIError

from . import schemas as s
from .authentication import ACCESS_TTL, REFRESH_TTL, authenticate_jwt, issue_jwt
from .base import PublicView, TraderView
from .throttling import AuthenticatedRateThrottle

TAGS = ["exchange: auth"]
ERRORS = {400: s.ExchangeErrorSchema, 401: s.ExchangeErrorSchema, 429: s.ExchangeErrorSchema}


def user_json(trader: Trader) -> dict:
    return {
        "id": str(trader.pk),
        "email": trader.user.email,
        "username": trader.user.get_username(),
        "tier": trader.tier,
    }


def tokens_json(trader: Trader) -> dict:
    return {
        "access_token": issue_jwt(trader, ttl=ACCESS_TTL),
        "refresh_token": issue_jwt(trader, ttl=REFRESH_TTL, typ="refresh"),
        "token_type": "bearer",
        "expires_in": int(ACCESS_TTL.total_seconds()),
        "user": user_json(trader),
    }


def _bad_credentials() -> APIError:
    return APIError("invalid_credentials", "email or password is wrong", status_code=401)


class LoginView(PublicView):
    authentication_classes: list = []

    @extend_schema(
        tags=TAGS,
        summary="Log in with email and password",
        request=s.ExchangeLoginRequest,
        responses={200: s.ExchangeTokenSchema, **ERRORS},
    )
    def post(self, request):
        body = self.body()
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
            raise APIError("invalid_parameter", "email and password are required strings")
        if len(email) > 254 or len(password) > 1024 or "\x00" in email:  # PostgreSQL refuses NUL in text
            raise _bad_credentials()
        User = get_user_model()
        users = User.objects.filter(email__iexact=email.strip(), is_active=True, trader__isnull=False)
        user = next((u for u in users.order_by("pk")[:5] if u.check_password(password)), None)
        if user is None:
            User().set_password(password)  # the same work as a real check, so timing tells nothing
            raise _bad_credentials()
        return Response(tokens_json(user.trader))


class RefreshView(PublicView):
    authentication_classes: list = []

    @extend_schema(
        tags=TAGS,
        summary="New access token from a refresh token",
        request=s.ExchangeRefreshRequest,
        responses={200: s.ExchangeTokenSchema, **ERRORS},
    )
    def post(self, request):
        token = self.body().get("refresh_token")
        trader = authenticate_jwt(token, typ="refresh") if isinstance(token, str) else None
        if trader is None:
            raise APIError("invalid_token", "refresh token is invalid or expired", status_code=401)
        return Response(tokens_json(trader))


class LogoutView(PublicView):
    authentication_classes: list = []

    @extend_schema(
        tags=TAGS,
        summary="Log out (tokens are stateless: the client forgets them)",
        request=s.ExchangeRefreshRequest,
        responses={200: s.ExchangeOkSchema, **ERRORS},
    )
    def post(self, request):
        return Response({"ok": True})


class MeView(TraderView):
    throttle_classes = [AuthenticatedRateThrottle]

    @extend_schema(tags=TAGS, summary="The authenticated trader", responses={200: s.ExchangeUserSchema, **ERRORS})
    def get(self, request):
        return Response(user_json(self.trader))
