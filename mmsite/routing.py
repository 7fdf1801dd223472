"""WebSocket routes of every app, in one list."""

from trading.routing import websocket_urlpatterns as trading_ws

websocket_urlpatterns = [*trading_ws]
