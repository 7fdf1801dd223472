"""Connection slots in the cache: at most ``limit`` concurrent WebSocket connections per namespace.

Used by every stream family (the MM client stream per API key, the exchange streams per IP and
channel). Each connection holds one of ``limit`` numbered slot keys in the cache (Redis in
production, so the limit holds across every web process), taken with ``cache.add`` (atomic
``SET NX``) and holding the connection's id. A slot has its own TTL, refreshed by the connection
well within it, so a process that dies without a clean disconnect frees its slots within one TTL;
a counter could not do that (live connections would keep refreshing the leaked count).
"""

from __future__ import annotations

from django.core.cache import cache


class CacheSlots:
    def __init__(self, namespace: str, *, limit: int, ttl: int) -> None:
        self.namespace = namespace
        self.limit = limit
        self.ttl = ttl

    def slot_key(self, n: int) -> str:
        return f"{self.namespace}.{n}"

    async def acquire(self, owner: str) -> str | None:
        """Take a free slot for ``owner``; return its cache key, or None when all are held."""
        for n in range(self.limit):
            key = self.slot_key(n)
            if await cache.aadd(key, owner, timeout=self.ttl):
                return key
        return None

    async def refresh(self, slot: str | None, owner: str) -> str | None:
        """Extend ``owner``'s slot; if it expired meanwhile (a long stall) or was lost, take one again."""
        if slot is not None and await cache.aget(slot) == owner and await cache.atouch(slot, timeout=self.ttl):
            return slot
        return await self.acquire(owner)

    async def release(self, slot: str, owner: str) -> None:
        if await cache.aget(slot) == owner:  # never free a slot that expired and went to someone else
            await cache.adelete(slot)

    async def held(self) -> int:
        """How many slots are held now (for diagnostics and tests)."""
        values = await cache.aget_many([self.slot_key(n) for n in range(self.limit)])
        return len(values)
