from django.conf import settings

from mmsite.api.throttling import FixedWindowThrottle


class ClientRateThrottle(FixedWindowThrottle):
    """100 requests per minute per client (seed 001), across all of the client's keys."""

    scope = "mmclient"

    def get_rate(self) -> int:
        return settings.MM_API_RATE_PER_MINUTE

    def get_ident(self, request, view) -> str | None:
        principal = request.user
        return str(principal.client.pk) if getattr(principal, "is_authenticated", False) else None
