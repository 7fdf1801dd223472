"""A bare ASGI app for ``bench/exchange_api.py --bare``: answers the bench's order requests with canned
answers of the real ones' size and shape and does nothing else, so the bench measures what daphne (and
the bench's client) cost per request on this machine: the ceiling of any application served by it."""

from __future__ import annotations

import itertools
import json

_ids = itertools.count(1)
_PLACED = {
    "order_id": "",
    "client_order_id": None,
    "symbol": "benchx",
    "side": "buy",
    "order_type": "limit",
    "price": "0.4000",
    "quantity": "10",
    "filled_quantity": "0",
    "remaining_quantity": "10",
    "status": "open",
    "mode": "live",
    "created_at": "2026-11-21T00:00:00.000000Z",
    "fills": [],
}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    if scope["method"] == "POST":
        status, body = 201, json.dumps({**_PLACED, "order_id": f"ord_{next(_ids):016x}"}).encode()
    elif scope["method"] == "DELETE":
        status, body = 200, json.dumps({**_PLACED, "status": "cancelled"}).encode()
    else:
        status, body = 200, b'{"server_time": 0}'
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
