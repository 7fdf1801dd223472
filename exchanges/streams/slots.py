"""Connection slots: at most ``limit`` WebSocket connections per client IP per stream channel.

Seed 004: "5 connections per IP per channel". A *channel* is one stream path, paper and live apart:
``book:vaix:live``, ``bbo:vaix:paper``, ``markets:*:live``, ``private:*:*``. Each connection holds one
of ``limit`` numbered slot keys in the cache (Redis in production, so the limit holds across every web
process), taken with ``cache.add`` (atomic ``SET NX``) and holding the connection's channel name.

A slot has its own TTL, refreshed by the connection every third of it, so a process that dies
without a clean disconnect frees its slots within one TTL; a counter could not do that (live
connections would keep refreshing the leaked count).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Protocol

from django.core.cache import cache

from mmsite.ws_slots import CacheSlots

from . import conf

log = logging.getLogger(__name__)

#: Slots refreshed per cache round trip: the cache's Python work for 1,000 keys holds the GIL for
#: about 17 ms, which a fan-out running meanwhile would wait through; 100 at a time it is under 2 ms.
REFRESH_CHUNK = 100


def client_ip(scope: dict) -> str:
    """The peer address of a handshake (daphne's ``client``). Behind a trusted proxy that rewrites
    the peer (``daphne --proxy-headers``), daphne puts the forwarded address here already."""
    client = scope.get("client") or ("unknown", 0)
    return str(client[0])


class ConnectionSlots(CacheSlots):
    def __init__(self, ip: str, channel: str, *, limit: int, ttl: int) -> None:
        super().__init__(f"xws.slot.{channel}.{ip}", limit=limit, ttl=ttl)
        self.ip = ip
        self.channel = channel

    @classmethod
    def for_connection(cls, ip: str, channel: str) -> ConnectionSlots:
        return cls(
            ip,
            channel,
            limit=conf.max_connections_per_ip(),
            ttl=conf.slot_ttl_seconds(),
        )


class SlotHolder(Protocol):
    slots: ConnectionSlots | None
    slot: str | None

    @property
    def owner(self) -> str: ...

    async def slot_refresh_failed(self) -> None: ...


class SharedRefresher:
    """Refreshes the slots of many connections of one process together: one cache read of a hundred
    slots and one write of those still held, every third of the TTL; a connection whose slot was lost (it
    expired during a long stall) takes one again on its own, as :meth:`CacheSlots.refresh` does.

    For the hub-fed streams, where one process holds a thousand connections: refreshing each on its
    own is two cache calls per connection per 10 s through the one thread Django's cache runs in
    under ASGI, 200 calls a second whose Python work holds the GIL against the fan-out. If the cache
    fails, every connection is told (and closes 1011, as a connection's own refresh would)."""

    def __init__(self) -> None:
        self.holders: set[SlotHolder] = set()
        self.task: asyncio.Task | None = None

    def add(self, holder: SlotHolder) -> None:
        self.holders.add(holder)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    def discard(self, holder: SlotHolder) -> None:
        self.holders.discard(holder)

    async def _run(self) -> None:
        interval = max(1.0, conf.slot_ttl_seconds() / 3)
        while self.holders:
            await asyncio.sleep(interval)
            await self.refresh()

    async def refresh(self) -> None:
        holders = [h for h in self.holders if h.slots is not None]
        for start in range(0, len(holders), REFRESH_CHUNK):
            if not await self._refresh_some(holders[start : start + REFRESH_CHUNK]):
                return

    async def _refresh_some(self, holders: list[SlotHolder]) -> bool:
        try:
            held = [h for h in holders if h.slot is not None]
            values = await cache.aget_many([h.slot for h in held]) if held else {}
            ours = {h.slot: h.owner for h in held if values.get(h.slot) == h.owner}
            if ours:
                await cache.aset_many(ours, timeout=conf.slot_ttl_seconds())
            for h in holders:
                if h.slot not in ours and h in self.holders:
                    h.slot = await h.slots.acquire(h.owner)
        except Exception:  # noqa: BLE001 - cache down: every connection closes 1011 so its client reconnects
            log.exception("exchange streams: refreshing connection slots failed")
            for h in list(self.holders):
                self.holders.discard(h)
                with contextlib.suppress(Exception):
                    await h.slot_refresh_failed()
            return False
        return True


_refreshers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedRefresher] = weakref.WeakKeyDictionary()


def shared_refresher() -> SharedRefresher:
    """The refresher of the running event loop."""
    loop = asyncio.get_running_loop()
    refresher = _refreshers.get(loop)
    if refresher is None:
        refresher = _refreshers[loop] = SharedRefresher()
    return refresher
