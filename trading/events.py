"""Events pushed to ``/ws/subscribe`` (seed 001): order, bet, account, score, emergency, trading.

One helper per event type. Each renders its payload when called (a snapshot of the row as it is
now) and sends it through the channel layer after the surrounding transaction commits, so nothing
is announced that might still roll back. Groups: ``mm.client.<id>`` for one client's events,
``mm.all`` for events every client receives (fixture scores, which are shared reference data, and
the system-wide emergency).

The wire boundary is here, in :func:`encode_json`, and only here. Payloads hold ``Decimal`` money
and prices, which msgpack (the Redis channel layer's serializer) cannot carry and ``float`` would
round. So the payload is rendered once, at publish time, to JSON text in which every ``Decimal``
is a JSON number written digit for digit, and the channel-layer message carries that text::

    {"type": "mm.event", "eventType": "order", "clientId": 7,
     "frame": '{"type":"order","data":{...},"ts":"2026-11-21T09:15:41.123456Z"}'}

``clientId`` is null for ``mm.all`` events. The consumer forwards ``frame`` verbatim (one encode
per event, not one per connection); :func:`decode_message` turns a message back into a dict with
exact ``Decimal`` values for code that needs to read it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

log = logging.getLogger(__name__)

ALL_CLIENTS_GROUP = "mm.all"
MESSAGE_TYPE = "mm.event"

EventType = Literal["order", "bet", "account", "score", "emergency", "trading"]
EVENT_TYPES: tuple[str, ...] = ("order", "bet", "account", "score", "emergency", "trading")


def client_group(client_id: int) -> str:
    return f"mm.client.{client_id}"


class Event(TypedDict):
    """An event as a client receives it (``ts`` is when it was sent, after commit)."""

    type: EventType
    data: dict[str, Any]
    ts: str


class LayerMessage(TypedDict):
    """What travels through the channel layer: msgpack-safe (str, int, None only)."""

    type: Literal["mm.event"]
    eventType: EventType
    clientId: int | None
    frame: str


# --- the JSON boundary ---------------------------------------------------------------------------------------


def iso_z(value: dt.datetime) -> str:
    """An aware datetime as ISO 8601 in UTC with a ``Z`` suffix."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def encode_json(value: Any) -> str:
    """Compact JSON text for ``value``; ``Decimal`` becomes a JSON number with exactly its digits.

    Accepts what the row renderers produce: dict (str keys), list/tuple, str, int, bool, None,
    Decimal, finite float, datetime (rendered as ISO 8601 Z), date, UUID. Anything else, and
    NaN/Infinity, raise ``TypeError``/``ValueError`` at publish time, where the bug is.
    """
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, bool):
        out.append(json.dumps(value))
    elif isinstance(value, str):  # str subclasses (TextChoices members) included
        out.append(json.dumps(str.__str__(value)))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot publish non-finite Decimal {value!r}")
        out.append(str(value))  # Decimal's str is valid JSON number syntax: 0.45, -3, 1E+2, 100.0000
    elif isinstance(value, float):
        out.append(json.dumps(value, allow_nan=False))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"event keys must be str, got {key!r}")
            if i:
                out.append(",")
            out.append(json.dumps(str(key)))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, dt.datetime):
        out.append(json.dumps(iso_z(value)))
    elif isinstance(value, dt.date):
        out.append(json.dumps(value.isoformat()))
    elif isinstance(value, uuid.UUID):
        out.append(json.dumps(str(value)))
    else:
        raise TypeError(f"cannot publish {type(value).__name__} value {value!r}")


def decode_message(message: Mapping[str, Any]) -> Event:
    """The client-visible event of a channel-layer ``mm.event`` message, Decimals exact."""
    return json.loads(message["frame"], parse_float=Decimal)


# --- sending -----------------------------------------------------------------------------------------------------


def send_event(group: str, event_type: EventType, data_json: str, *, client_id: int | None) -> None:
    """Send now (no transaction wait) to ``group``. ``data_json`` is ``encode_json(data)``.

    Use the ``publish_*`` helpers from write paths; this is the low-level send they schedule.
    A failure to reach the layer is logged, never raised: a lost push must not fail the
    (already committed) write that caused it; clients resynchronise over the REST API.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    frame = f'{{"type":{json.dumps(event_type)},"data":{data_json},"ts":{json.dumps(iso_z(timezone.now()))}}}'
    message: LayerMessage = {"type": MESSAGE_TYPE, "eventType": event_type, "clientId": client_id, "frame": frame}
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # noqa: BLE001 - see docstring: the push is best effort, the write is not undone
        log.exception("could not publish %s event to %s", event_type, group)


def _publish_on_commit(group: str, event_type: EventType, data: Mapping[str, Any], *, client_id: int | None) -> None:
    data_json = encode_json(data)  # render now: a snapshot, and an unencodable payload fails here, loudly
    transaction.on_commit(lambda: send_event(group, event_type, data_json, client_id=client_id))


def publish_order(order) -> None:
    from trading.api.serializers import order_row

    _publish_on_commit(client_group(order.client_id), "order", order_row(order), client_id=order.client_id)


def publish_bet(bet) -> None:
    from trading.api.serializers import bet_row

    _publish_on_commit(client_group(bet.client_id), "bet", bet_row(bet), client_id=bet.client_id)


def publish_account(account) -> None:
    from trading.api.serializers import account_row

    _publish_on_commit(client_group(account.client_id), "account", account_row(account), client_id=account.client_id)


def publish_score(fixture) -> None:
    from trading.api.serializers import fixture_row

    _publish_on_commit(ALL_CLIENTS_GROUP, "score", fixture_row(fixture), client_id=None)


def publish_emergency(system_state) -> None:
    data = {
        "emergencyActive": system_state.emergency,
        "systemStopped": system_state.stopped,
        "systemTradingBlocked": system_state.paused or system_state.stopped,
        "reason": system_state.reason,
    }
    _publish_on_commit(ALL_CLIENTS_GROUP, "emergency", data, client_id=None)


def publish_trading_state(client, status: dict[str, Any]) -> None:
    """``status`` is the body of ``GET /trading/status`` for ``client``."""
    _publish_on_commit(client_group(client.id), "trading", status, client_id=client.id)
