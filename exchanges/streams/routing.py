"""WebSocket routes of the exchange streams (spliced into ``mmsite.routing``)."""

from django.urls import re_path

from . import consumers

SYMBOL = r"(?P<symbol>[A-Za-z0-9_-]{1,32})"

websocket_urlpatterns = [
    re_path(r"^ws/exchange/markets/?$", consumers.MarketsConsumer.as_asgi()),
    re_path(r"^ws/exchange/private/?$", consumers.PrivateConsumer.as_asgi()),
    re_path(rf"^ws/exchange/{SYMBOL}/book/?$", consumers.BookConsumer.as_asgi()),
    re_path(rf"^ws/exchange/{SYMBOL}/trades/?$", consumers.TradesConsumer.as_asgi()),
    re_path(rf"^ws/exchange/{SYMBOL}/price/?$", consumers.PriceConsumer.as_asgi()),
    re_path(rf"^ws/exchange/{SYMBOL}/bbo/?$", consumers.BboConsumer.as_asgi()),
]
