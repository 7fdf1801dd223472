"""WebSocket routes of the trading app (spliced into ``mmsite.routing``)."""

from django.urls import re_path

from trading.consumers import SubscribeConsumer

websocket_urlpatterns = [
    # The seed's path is /ws/subscribe; a trailing slash is tolerated.
    re_path(r"^ws/subscribe/?$", SubscribeConsumer.as_asgi()),
]
