"""``X-API-Key: bk_…`` authentication and per-endpoint scopes for the broker API."""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from brokers.models import Broker, BrokerApiKey


@dataclass(frozen=True)
class BrokerPrincipal:
    """The authenticated caller: a broker, through one of its keys."""

    broker: Broker
    api_key: BrokerApiKey
    is_authenticated: bool = True

    @property
    def actor(self) -> str:
        return f"api:bk_{self.api_key.prefix}"


def authenticate_broker_key(raw_key: str | None) -> BrokerPrincipal | None:
    """Resolve a raw key to its principal, or None if missing, malformed, unknown or revoked."""
    key = BrokerApiKey.resolve(raw_key, select_related=("broker", "broker__account"))
    if key is None:
        return None
    return BrokerPrincipal(broker=key.broker, api_key=key)


class BrokerKeyAuthentication(BaseAuthentication):
    header = "HTTP_X_API_KEY"

    def authenticate(self, request):
        raw = request.META.get(self.header)
        if raw is None:
            return None
        principal = authenticate_broker_key(raw)
        if principal is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key")
        return principal, principal.api_key

    def authenticate_header(self, request) -> str:  # makes DRF answer 401, not 403
        return "X-API-Key"


class HasBrokerScope(BasePermission):
    """The key carries the view's scope for this method (``view.scopes = {"GET": "...", ...}``)."""

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if not isinstance(principal, BrokerPrincipal):
            raise exceptions.NotAuthenticated("Authentication required: send your key in the X-API-Key header")
        scope = view.scopes.get(request.method)
        if scope is None:
            return True  # a method the view does not implement: DRF answers 405
        if not principal.api_key.has_scope(scope):
            raise exceptions.PermissionDenied(f"Missing scope: {scope}")
        return True


class BrokerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "brokers.api.authentication.BrokerKeyAuthentication"
    name = "BrokerApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "broker API key (bk_<prefix>_<secret>) with scopes (manage.py create_broker, console)",
        }
