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


def _skip_twisted_form_parsing() -> None:
    """Daphne hands the raw request body to the ASGI app and never reads Twisted's ``request.args``, but
    Twisted still parses every POST's ``Content-Type`` (an ``email.message.EmailMessage`` per request,
    about 3% of an order gateway process's time) and decodes form bodies into ``args``. Turn that off
    for daphne's requests, through Twisted's own switch (``Request(parsePOSTFormSubmission=False)``)."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # not served by daphne
        return
    if getattr(WebRequest, "_mmsite_no_form_parsing", False):
        return
    init = WebRequest.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    WebRequest.__init__ = __init__
    WebRequest._mmsite_no_form_parsing = True


_skip_twisted_form_parsing()


def _allowed_origins() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    return ["*"] if settings.DEBUG and not hosts else hosts


def _ready() -> None:
    """Load what the first request would (the URL configuration, the views) and then tune the
    collector (``GC_THRESHOLDS``; production only), so the loaded code is frozen with the rest."""
    from django.urls import get_resolver

    from mmsite.gc_tuning import tune_gc

    if getattr(settings, "GC_THRESHOLDS", ()):
        get_resolver().url_patterns  # noqa: B018 - imports every app's URLs and views
        tune_gc()


application = ProtocolTypeRouter(
    {
        # The exchange's place and cancel endpoints are answered by the order gateway (batched per book,
        # docs/exchange-matching.md); every other request, and any it would not answer exactly, by Django.
        "http": OrderGatewayApp(django_asgi_app),
        "websocket": BrowserOriginValidator(URLRouter(websocket_urlpatterns), _allowed_origins()),
    }
)

_ready()
