"""``X-API-Key`` authentication for the MM client API (and ``/ws/subscribe``)."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from trading.models import ApiKey, Client


@dataclass(frozen=True)
class ClientPrincipal:
    """The authenticated caller: a client, through one of its keys."""

    client: Client
    api_key: ApiKey
    is_authenticated: bool = True

    @property
    def actor(self) -> str:
        return f"api:{self.api_key.prefix}"


def authenticate_key(raw_key: str | None) -> ClientPrincipal | None:
    """Resolve a raw key to its principal, or None if missing, malformed, unknown or revoked."""
    key = ApiKey.resolve(raw_key, select_related=("client",))
    if key is None:
        return None
    return ClientPrincipal(client=key.client, api_key=key)


class ApiKeyAuthentication(BaseAuthentication):
    header = "HTTP_X_API_KEY"

    def authenticate(self, request):
        raw = request.META.get(self.header)
        if raw is None:
            return None
        principal = authenticate_key(raw)
        if principal is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key")
        return principal, principal.api_key

    def authenticate_header(self, request) -> str:  # makes DRF answer 401, not 403
        return "X-API-Key"


class IsClient(BasePermission):
    message = "Authentication required: send your key in the X-API-Key header"

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, ClientPrincipal)
