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

from django.core.cache import cache

from . import conf


def client_ip(scope: dict) -> str:
    """The peer address of a handshake (daphne's ``client``). Behind a trusted proxy that rewrites
    the peer (``daphne --proxy-headers``), daphne puts the forwarded address here already."""
    client = scope.get("client") or ("unknown", 0)
    return str(client[0])


class ConnectionSlots:
    def __init__(self, ip: str, channel: str, *, limit: int, ttl: int) -> None:
        self.ip = ip
        self.channel = channel
        self.limit = limit
        self.ttl = ttl

    @classmethod
    def for_connection(cls, ip: str, channel: str) -> ConnectionSlots:
        return cls(
            ip,
            channel,
            limit=conf.max_connections_per_ip(),
            ttl=conf.slot_ttl_seconds(),
        )

    def slot_key(self, n: int) -> str:
        return f"xws.slot.{self.channel}.{self.ip}.{n}"

    async def acquire(self, owner: str) -> str | None:
        """Take a free slot for ``owner``; return its cache key, or None when all are held."""
        for n in range(self.limit):
            key = self.slot_key(n)
            if await cache.aadd(key, owner, timeout=self.ttl):
                return key
        return None

    async def refresh(self, slot: str | None, owner: str) -> str | None:
        """Extend ``owner``'s slot; if it expired meanwhile (a long stall), take one again."""
        if slot is not None and await cache.aget(slot) == owner and await cache.atouch(slot, timeout=self.ttl):
            return slot
        return await self.acquire(owner)

    async def release(self, slot: str, owner: str) -> None:
        if await cache.aget(slot) == owner:  # never free a slot that expired and went to someone else
            await cache.adelete(slot)

    async def held(self) -> int:
        values = await cache.aget_many([self.slot_key(n) for n in range(self.limit)])
        return len(values)
