"""WebSocket routes of every app, in one list."""

from exchanges.streams.routing import websocket_urlpatterns as exchange_ws
from trading.routing import websocket_urlpatterns as trading_ws

websocket_urlpatterns = [*trading_ws, *exchange_ws]
