"""Knobs of the exchange streams, read from Django settings with the documented defaults.

- ``EXCHANGE_WS_MAX_CONNECTIONS_PER_IP`` (5): connections per client IP per channel (seed 004)
- ``EXCHANGE_WS_SLOT_TTL_SECONDS`` (30): life of a connection slot; refreshed every third of it
- ``EXCHANGE_BBO_INTERVAL_MS`` (50): the ``bbo`` stream's conflation interval (seed 004: 50 ms)
- ``EXCHANGE_MARKETS_INTERVAL_MS`` (1000): the ``markets`` stream's conflation interval per symbol
- ``EXCHANGE_BOOK_GAP_WAIT_MS`` (250): how long a book stream waits for a late delta before it
  sends a fresh snapshot instead
- ``EXCHANGE_WS_AUTH_RECHECK_SECONDS`` (30): the private stream re-validates its JWT this often
- ``EXCHANGE_WS_MAX_BUFFER_BYTES`` (1 MiB): bytes a connection may leave unsent in the server's
  outgoing buffer before it is closed as a slow consumer (4008); 0 turns the bound off
"""

from __future__ import annotations

from django.conf import settings


def max_connections_per_ip() -> int:
    return int(getattr(settings, "EXCHANGE_WS_MAX_CONNECTIONS_PER_IP", 5))


def slot_ttl_seconds() -> int:
    return max(3, int(getattr(settings, "EXCHANGE_WS_SLOT_TTL_SECONDS", 30)))


def bbo_interval() -> float:
    return float(getattr(settings, "EXCHANGE_BBO_INTERVAL_MS", 50)) / 1000.0


def markets_interval() -> float:
    return float(getattr(settings, "EXCHANGE_MARKETS_INTERVAL_MS", 1000)) / 1000.0


def book_gap_wait() -> float:
    return float(getattr(settings, "EXCHANGE_BOOK_GAP_WAIT_MS", 250)) / 1000.0


def auth_recheck_seconds() -> float:
    return float(getattr(settings, "EXCHANGE_WS_AUTH_RECHECK_SECONDS", 30))


def max_buffer_bytes() -> int:
    return max(0, int(getattr(settings, "EXCHANGE_WS_MAX_BUFFER_BYTES", 1 << 20)))
