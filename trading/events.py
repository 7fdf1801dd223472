"""Events pushed to ``/ws/subscribe`` (seed 001): order, bet, account, score, emergency, trading.

One helper per event type. Each builds a typed payload now and sends it through the channel layer
after the surrounding transaction commits (nothing is announced that might roll back). Groups:
``mm.client.<id>`` for one client's events, ``mm.all`` for events every client receives
(fixture scores, which are shared reference data, and the system-wide emergency).
"""

from __future__ import annotations

import logging
from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

ALL_CLIENTS_GROUP = "mm.all"


def client_group(client_id: int) -> str:
    return f"mm.client.{client_id}"


class Event(TypedDict):
    type: Literal["order", "bet", "account", "score", "emergency", "trading"]
    data: dict[str, Any]


def _send(group: str, event: Event) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "mm.event", "event": event})
    except Exception:  # noqa: BLE001 - a lost push must never fail the write that caused it
        log.exception("could not publish %s event to %s", event["type"], group)


def _publish_on_commit(group: str, event: Event) -> None:
    transaction.on_commit(lambda: _send(group, event))


def publish_order(order) -> None:
    from trading.api.serializers import order_row

    _publish_on_commit(client_group(order.client_id), {"type": "order", "data": order_row(order)})


def publish_bet(bet) -> None:
    from trading.api.serializers import bet_row

    _publish_on_commit(client_group(bet.client_id), {"type": "bet", "data": bet_row(bet)})


def publish_account(account) -> None:
    from trading.api.serializers import account_row

    _publish_on_commit(client_group(account.client_id), {"type": "account", "data": account_row(account)})


def publish_score(fixture) -> None:
    from trading.api.serializers import fixture_row

    _publish_on_commit(ALL_CLIENTS_GROUP, {"type": "score", "data": fixture_row(fixture)})


def publish_emergency(system_state) -> None:
    data = {
        "emergencyActive": system_state.emergency,
        "systemStopped": system_state.stopped,
        "systemTradingBlocked": system_state.paused or system_state.stopped,
        "reason": system_state.reason,
    }
    _publish_on_commit(ALL_CLIENTS_GROUP, {"type": "emergency", "data": data})


def publish_trading_state(client, status: dict[str, Any]) -> None:
    """``status`` is the body of ``GET /trading/status`` for ``client``."""
    _publish_on_commit(client_group(client.id), {"type": "trading", "data": status})
