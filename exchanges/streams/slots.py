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

from mmsite.ws_slots import CacheSlots

from . import conf


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
