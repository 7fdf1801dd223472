"""Liveness of the engine's inputs, and the soft pause that follows from it.

A *source* is something the engine must hear from to quote safely: ``"feed"`` (the odds feed
connection) and ``"venue:<exchange>"`` (a venue's user stream, beaten by ``run_venue_streams``).
Each live source calls :func:`heartbeat` every second or so; the beat lands in the cache (shared by
every process on Redis) as a Unix timestamp.

:func:`health_check` (beat task ``trading.health.check``, every 2 s) compares each source's last
beat with its threshold (``FEED_STALE_SECONDS`` for the feed, ``VENUE_STREAM_STALE_SECONDS`` for
venues, ``HEALTH_STALE_SECONDS`` for anything else) and, through ``trading.services.controls``:

* engages a soft pause on every client a stale source concerns (the feed concerns every client;
  ``venue:<exchange>`` the clients with an active account on that exchange), with the reason
  ``stale: <sources>``: a control event, and the client's new status on ``/ws/subscribe``;
* lifts it when none of the client's sources is stale any more, but only a soft pause this module
  engaged (its reason starts with ``stale:``); a soft pause for another reason is left alone.

Decisions (docs/engine.md, "Soft pause"):

* Only sources that have beaten at least once count: a process that never ran (no venue streams
  in a test, no feed yet at start-up) does not pause anyone. A beat is remembered for
  ``HEALTH_SOURCE_TTL_SECONDS`` (a day); a source silent for longer is forgotten, and
  :func:`forget` drops one at once (a venue that was switched off on purpose).
* Soft pause is a pause: no new orders, resting orders stay on the venues (seed 000: pause keeps
  existing orders). Fills of resting orders are still hedged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache

from trading.models import Client, ClientTradingState, ExchangeAccount

from .controls import soft_pause, soft_resume

log = logging.getLogger(__name__)

__all__ = ["HealthReport", "forget", "health_check", "heartbeat", "last_beats", "stale_sources", "threshold_for"]

BEAT_KEY = "health:beat:"
SOURCES_KEY = "health:sources"
STALE_PREFIX = "stale:"
ACTOR = "system:health"

_registered: set[str] = set()  # sources this process has added to SOURCES_KEY


def _ttl() -> int:
    return int(getattr(settings, "HEALTH_SOURCE_TTL_SECONDS", 86_400))


def heartbeat(source: str) -> None:
    """Record that ``source`` (``"feed"``, ``"venue:<exchange>"``) is alive now. Cheap: one cache
    write (two the first time a process beats for a source)."""
    cache.set(BEAT_KEY + source, time.time(), timeout=_ttl())
    if source not in _registered:
        known = set(cache.get(SOURCES_KEY) or ())
        if source not in known:
            cache.set(SOURCES_KEY, sorted(known | {source}), timeout=None)
        _registered.add(source)


def forget(source: str) -> None:
    """Stop watching ``source`` (until it beats again)."""
    cache.delete(BEAT_KEY + source)
    known = set(cache.get(SOURCES_KEY) or ())
    if source in known:
        cache.set(SOURCES_KEY, sorted(known - {source}), timeout=None)
    _registered.discard(source)


def last_beats() -> dict[str, float]:
    """Every source that has beaten (and not been forgotten): source -> Unix time of its last beat."""
    from exchanges.choices import Exchange

    names = {"feed", *(f"venue:{e}" for e in Exchange.values), *(cache.get(SOURCES_KEY) or ())}
    found = cache.get_many([BEAT_KEY + n for n in sorted(names)])
    return {key[len(BEAT_KEY) :]: float(value) for key, value in found.items() if value is not None}


def threshold_for(source: str) -> float:
    if source == "feed" or source.startswith("feed:"):
        return float(settings.FEED_STALE_SECONDS)
    if source.startswith("venue:"):
        return float(settings.VENUE_STREAM_STALE_SECONDS)
    return float(getattr(settings, "HEALTH_STALE_SECONDS", settings.FEED_STALE_SECONDS))


def stale_sources(*, now: float | None = None) -> dict[str, float]:
    """Sources whose last beat is older than their threshold: source -> seconds since the beat."""
    now = time.time() if now is None else now
    return {s: now - t for s, t in sorted(last_beats().items()) if now - t > threshold_for(s)}


@dataclass
class HealthReport:
    stale: dict[str, float] = field(default_factory=dict)
    paused: list[str] = field(default_factory=list)  # client names soft-paused by this check
    resumed: list[str] = field(default_factory=list)  # client names whose stale soft pause was lifted


def _concerned(clients: Iterable[Client], stale: Iterable[str]) -> dict[int, list[str]]:
    """client id -> the stale sources that concern it."""
    out: dict[int, list[str]] = {}
    ids = [c.pk for c in clients]
    venues = sorted(s for s in stale if s.startswith("venue:"))
    others = sorted(s for s in stale if not s.startswith("venue:"))
    on_exchange: dict[str, set[int]] = {}
    if venues:
        rows = ExchangeAccount.objects.filter(
            active=True, exchange__in=[v.split(":", 1)[1] for v in venues], client_id__in=ids
        ).values_list("exchange", "client_id")
        for exchange, client_id in rows:
            on_exchange.setdefault(exchange, set()).add(client_id)
    for client_id in ids:
        mine = list(others) + [v for v in venues if client_id in on_exchange.get(v.split(":", 1)[1], set())]
        if mine:
            out[client_id] = sorted(mine)
    return out


def health_check(*, now: float | None = None) -> HealthReport:
    """Engage or lift the stale-input soft pause on every client (see the module docstring).
    Writes only on a change; each change goes through ``controls.soft_pause`` / ``soft_resume``
    (the client's state row locked, a control event recorded and published)."""
    report = HealthReport(stale=stale_sources(now=now))
    clients = list(Client.objects.order_by("id"))
    concerned = _concerned(clients, report.stale)
    states = {
        s.client_id: s
        for s in ClientTradingState.objects.filter(client_id__in=[c.pk for c in clients]).only(
            "client_id", "soft_paused", "soft_pause_reason"
        )
    }
    for client in clients:
        state = states.get(client.pk)
        paused = bool(state and state.soft_paused)
        ours = paused and state.soft_pause_reason.startswith(STALE_PREFIX)
        sources = concerned.get(client.pk)
        if sources and not paused:
            reason = f"{STALE_PREFIX} {', '.join(sources)}"
            log.warning("health: soft pause of %s (%s)", client.name, reason)
            soft_pause(client=client, reason=reason, actor=ACTOR)
            report.paused.append(client.name)
        elif not sources and ours:
            log.info("health: inputs of %s recovered; soft pause lifted", client.name)
            soft_resume(client=client, actor=ACTOR)
            report.resumed.append(client.name)
    return report
