"""``/ws/subscribe``: the MM client stream (seed 001), documented in docs/api/mm-websocket.md.

Lifecycle of one connection:

1. authenticate the API key (``X-API-Key`` header, or ``?apiKey=`` / ``?api_key=`` for browsers);
   a missing, unknown or revoked key is accepted and then closed with :data:`CLOSE_UNAUTHORIZED`
   (accept first, so a browser sees the code; a refused handshake shows only "1006");
2. take one of the key's ``MM_WS_MAX_CONNECTIONS_PER_KEY`` connection slots in the cache, or close
   with :data:`CLOSE_TOO_MANY_CONNECTIONS`;
3. join ``mm.client.<id>`` and ``mm.all``, send ``welcome``, then every
   ``MM_WS_HEARTBEAT_SECONDS`` send ``heartbeat`` and refresh the slot and the group memberships;
4. forward each ``mm.event`` after re-checking that the key is still active (cached for
   ``MM_WS_AUTH_RECHECK_SECONDS``, default 5): a revoked key is closed with ``CLOSE_UNAUTHORIZED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from mmsite.ws_slots import CacheSlots
from trading.api.authentication import authenticate_key
from trading.events import ALL_CLIENTS_GROUP, client_group, iso_z
from trading.models import ApiKey

log = logging.getLogger(__name__)

#: Missing, unknown or revoked API key (at connect, or revoked while connected).
CLOSE_UNAUTHORIZED = 4401
#: The key already holds ``MM_WS_MAX_CONNECTIONS_PER_KEY`` open connections.
CLOSE_TOO_MANY_CONNECTIONS = 4429

DEFAULT_AUTH_RECHECK_SECONDS = 5.0


def _now() -> str:
    return iso_z(timezone.now())


# --- connection slots ----------------------------------------------------------------------------------------


class ConnectionSlots(CacheSlots):
    """At most ``limit`` concurrent connections per API key, across every web process
    (:class:`mmsite.ws_slots.CacheSlots`). The TTL is three heartbeats, at least one second."""

    def __init__(self, api_key_id: int, *, limit: int, ttl: int) -> None:
        super().__init__(f"mm.ws.slot.{api_key_id}", limit=limit, ttl=ttl)
        self.api_key_id = api_key_id

    @classmethod
    def for_key(cls, api_key_id: int) -> ConnectionSlots:
        heartbeat = float(settings.MM_WS_HEARTBEAT_SECONDS)
        return cls(api_key_id, limit=int(settings.MM_WS_MAX_CONNECTIONS_PER_KEY), ttl=max(1, math.ceil(3 * heartbeat)))


# --- the consumer ----------------------------------------------------------------------------------------------


@database_sync_to_async
def _authenticate(raw_key: str | None):
    return authenticate_key(raw_key)


@database_sync_to_async
def _key_is_active(api_key_id: int) -> bool:
    return ApiKey.objects.active().filter(pk=api_key_id).exists()


def raw_key_from_scope(scope: dict[str, Any]) -> str | None:
    """The API key of a handshake: the ``X-API-Key`` header, else ``apiKey`` / ``api_key`` in the query."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"x-api-key":
            return value.decode("latin1").strip() or None
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    for param in ("apiKey", "api_key"):
        if query.get(param):
            return query[param][0].strip() or None
    return None


class SubscribeConsumer(AsyncJsonWebsocketConsumer):
    """The MM client stream. See the module docstring and docs/api/mm-websocket.md."""

    client_id: int | None = None
    api_key_id: int | None = None
    slot: str | None = None
    slots: ConnectionSlots | None = None
    heartbeat_task: asyncio.Task | None = None
    closing: bool = False

    # -- connect / disconnect

    async def connect(self) -> None:
        principal = await _authenticate(raw_key_from_scope(self.scope))
        if principal is None:
            await self._refuse(CLOSE_UNAUTHORIZED, "unauthorized", "Invalid or revoked API key")
            return

        self.slots = ConnectionSlots.for_key(principal.api_key.pk)
        self.slot = await self.slots.acquire(self.channel_name)
        if self.slot is None:
            await self._refuse(
                CLOSE_TOO_MANY_CONNECTIONS,
                "too_many_connections",
                f"At most {self.slots.limit} concurrent connections per API key",
            )
            return

        self.client_id = principal.client.pk
        self.api_key_id = principal.api_key.pk
        heartbeat = float(settings.MM_WS_HEARTBEAT_SECONDS)
        self.heartbeat_seconds = int(heartbeat) if heartbeat.is_integer() else heartbeat
        self.auth_recheck_seconds = float(getattr(settings, "MM_WS_AUTH_RECHECK_SECONDS", DEFAULT_AUTH_RECHECK_SECONDS))
        self.auth_checked_at = asyncio.get_running_loop().time()

        await self._join_groups()
        await self.accept()
        await self.send_json(
            {
                "type": "welcome",
                "data": {
                    "client": principal.client.name,
                    "clientName": principal.client.client_name,
                    "apiKeyPrefix": principal.api_key.prefix,
                    "heartbeatSeconds": self.heartbeat_seconds,
                    "maxConnections": self.slots.limit,
                },
                "ts": _now(),
            }
        )
        self.heartbeat_task = asyncio.create_task(self._heartbeat_loop())

    async def disconnect(self, code: int) -> None:
        self.closing = True
        if self.heartbeat_task is not None and self.heartbeat_task is not asyncio.current_task():
            self.heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.heartbeat_task
        if self.client_id is not None:
            for group in self._groups():
                await self.channel_layer.group_discard(group, self.channel_name)
        if self.slot is not None and self.slots is not None:
            await self.slots.release(self.slot, self.channel_name)
            self.slot = None

    async def _refuse(self, code: int, error: str, message: str) -> None:
        """Accept, say why, close with ``code``: browsers only see close codes after an accept."""
        await self.accept()
        await self.send_json({"type": "error", "data": {"error": error, "message": message}, "ts": _now()})
        await self.close(code=code, reason=error)

    def _groups(self) -> tuple[str, str]:
        return client_group(self.client_id), ALL_CLIENTS_GROUP

    async def _join_groups(self) -> None:
        # Also called on every heartbeat: the Redis layer drops group members after its
        # group_expiry (a day by default), which a long-lived connection would outlive.
        for group in self._groups():
            await self.channel_layer.group_add(group, self.channel_name)

    # -- permission

    async def _still_authorized(self) -> bool:
        """Is the key still active? Asks the database at most once per recheck interval."""
        now = asyncio.get_running_loop().time()
        if now - self.auth_checked_at < self.auth_recheck_seconds:
            return True
        active = await _key_is_active(self.api_key_id)
        self.auth_checked_at = now
        return active

    async def _close_revoked(self) -> None:
        if self.closing:
            return
        self.closing = True
        log.info("closing /ws/subscribe of client %s: API key %s revoked", self.client_id, self.api_key_id)
        await self.send_json(
            {"type": "error", "data": {"error": "unauthorized", "message": "API key revoked"}, "ts": _now()}
        )
        await self.close(code=CLOSE_UNAUTHORIZED, reason="unauthorized")

    # -- server -> client

    async def mm_event(self, message: dict[str, Any]) -> None:
        """A ``trading.events`` message: forward its pre-rendered frame if this client may see it."""
        if self.closing or self.client_id is None:
            return
        owner = message.get("clientId")
        if owner is not None and owner != self.client_id:
            # Cannot happen through the groups; a second check that costs nothing.
            log.error(
                "dropped client %s's %s event on client %s's stream", owner, message.get("eventType"), self.client_id
            )
            return
        if not await self._still_authorized():
            await self._close_revoked()
            return
        await self.send(text_data=message["frame"])

    async def _heartbeat_loop(self) -> None:
        try:
            while not self.closing:
                await asyncio.sleep(self.heartbeat_seconds)
                if not await self._still_authorized():
                    await self._close_revoked()
                    return
                await self.send_json({"type": "heartbeat", "ts": _now()})
                self.slot = await self.slots.refresh(self.slot, self.channel_name)
                if self.slot is None:
                    log.warning("API key %s lost its connection slot and none is free", self.api_key_id)
                await self._join_groups()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The cache, the layer or the database failed: without a heartbeat the connection would
            # silently go deaf. Log it and close with 1011 so the client reconnects.
            log.exception("/ws/subscribe heartbeat failed for client %s", self.client_id)
            self.closing = True
            await self.close(code=1011)

    # -- client -> server

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs) -> None:
        # Overrides the JSON consumer's decode step: bad input from a client is answered, not a crash.
        if text_data is None:
            await self._send_error("invalid_message", 'Send JSON text frames, e.g. {"type": "ping"}')
            return
        try:
            content = await self.decode_json(text_data)
        except ValueError:
            await self._send_error("invalid_message", "Message is not valid JSON")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs) -> None:
        if self.closing:
            return
        if not isinstance(content, dict) or content.get("type") != "ping":
            await self._send_error("unknown_type", 'The only message a client may send is {"type": "ping"}')
            return
        await self.send_json({"type": "pong", "ts": _now()})

    async def _send_error(self, error: str, message: str) -> None:
        await self.send_json({"type": "error", "data": {"error": error, "message": message}, "ts": _now()})

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, separators=(",", ":"))
