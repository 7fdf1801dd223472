"""ASGI entry point: HTTP through Django (the exchange's order entry through its gateway first), WebSocket
through Channels routing."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmsite.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from exchanges.api.gateway import OrderGatewayApp  # noqa: E402
from mmsite.routing import websocket_urlpatterns  # noqa: E402


class BrowserOriginValidator(OriginValidator):
    """Check the Origin of browser handshakes against ALLOWED_HOSTS; let Origin-less clients through.

    Cross-site WebSocket hijacking needs a browser, and browsers always send Origin. API-key
    clients (scripts, bots) send none, and Channels' stock validator would refuse them.
    """

    def valid_origin(self, parsed_origin):
        return parsed_origin is None or super().valid_origin(parsed_origin)


def _allowed_origins() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    return ["*"] if settings.DEBUG and not hosts else hosts


application = ProtocolTypeRouter(
    {
        # The exchange's place and cancel endpoints are answered by the order gateway (batched per book,
        # docs/exchange-matching.md); every other request, and any it would not answer exactly, by Django.
        "http": OrderGatewayApp(django_asgi_app),
        "websocket": BrowserOriginValidator(URLRouter(websocket_urlpatterns), _allowed_origins()),
    }
)
