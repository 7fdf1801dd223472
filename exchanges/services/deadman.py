"""The dead-man's switch: cancel all of a trader's orders when its heartbeats stop.

Paths are the seed system's SDK's (``activate_dms`` / ``heartbeat_dms`` / ``deactivate_dms``):
``POST /api/v1/exchange/dead-mans-switch`` ``{"timeout_ms"}``, ``POST .../heartbeat``, ``DELETE``.
docs/exchange-algos.md. In short:

- activating sets ``expires_at = now + timeout_ms``; each heartbeat pushes it to ``now + timeout_ms``;
- the sweep (Celery beat ``exchanges.deadman_sweep`` every second) takes each active switch whose
  ``expires_at`` has passed (``FOR UPDATE SKIP LOCKED``, so two sweeps never take the same one),
  cancels every live order of the trader on every market in both modes (each cancel releases its
  hold), and turns the switch off, recording when and how many;
- a heartbeat to a switch that is off (never activated, deactivated, or already triggered) is 409
  ``dms_not_active``: the client learns its orders are gone and must activate again.

A sweep that dies half way leaves the switch active and expired: the next sweep cancels what is left
(cancelling is idempotent) and turns it off.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from exchanges.errors import ExchangeError
from exchanges.ledger.choices import Mode
from exchanges.models import Trader
from exchanges.models.algos import DeadMansSwitch
from exchanges.services.orders import orders_cancel_all

log = logging.getLogger(__name__)

MIN_TIMEOUT_MS = 1_000
MAX_TIMEOUT_MS = 86_400_000
DEFAULT_TIMEOUT_MS = 60_000
DMS_NOT_ACTIVE = "dms_not_active"
INVALID_TIMEOUT = "invalid_timeout"


def _timeout(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_TIMEOUT_MS
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ExchangeError(
            INVALID_TIMEOUT, "timeout_ms must be an integer number of milliseconds", parameter="timeout_ms"
        )
    try:
        ms = int(value)
    except ValueError:
        raise ExchangeError(
            INVALID_TIMEOUT, f"timeout_ms must be an integer, got {value!r}", parameter="timeout_ms"
        ) from None
    if not MIN_TIMEOUT_MS <= ms <= MAX_TIMEOUT_MS:
        raise ExchangeError(
            INVALID_TIMEOUT, f"timeout_ms must be {MIN_TIMEOUT_MS}..{MAX_TIMEOUT_MS}, got {ms}", parameter="timeout_ms"
        )
    return ms


def _locked(trader: Trader) -> DeadMansSwitch | None:
    return DeadMansSwitch.objects.select_for_update().filter(trader=trader).first()


def dms_activate(*, trader: Trader, timeout_ms: Any = None) -> DeadMansSwitch:
    """Arm (or re-arm with a new timeout) the trader's switch; it expires ``timeout_ms`` from now."""
    ms = _timeout(timeout_ms)
    now = timezone.now()
    with transaction.atomic():
        switch = _locked(trader) or DeadMansSwitch(trader=trader, timeout_ms=ms)
        switch.active = True
        switch.timeout_ms = ms
        switch.activated_at = now
        switch.last_heartbeat_at = now
        switch.expires_at = now + dt.timedelta(milliseconds=ms)
        switch.save()
    return switch


def dms_heartbeat(*, trader: Trader) -> DeadMansSwitch:
    """Push the deadline to ``now + timeout_ms``; 409 ``dms_not_active`` when the switch is off."""
    now = timezone.now()
    with transaction.atomic():
        switch = _locked(trader)
        if switch is None or not switch.active:
            why = "was never activated" if switch is None else "is off"
            if switch is not None and switch.triggered_at and (switch.activated_at or now) <= switch.triggered_at:
                why = f"fired at {switch.triggered_at.isoformat()} and cancelled your orders"
            raise ExchangeError(DMS_NOT_ACTIVE, f"the dead-man's switch {why}: activate it again", status=409)
        switch.last_heartbeat_at = now
        switch.expires_at = now + dt.timedelta(milliseconds=switch.timeout_ms)
        switch.save(update_fields=["last_heartbeat_at", "expires_at", "updated_at"])
    return switch


def dms_deactivate(*, trader: Trader) -> DeadMansSwitch | None:
    """Disarm; nothing is cancelled. Idempotent."""
    with transaction.atomic():
        switch = _locked(trader)
        if switch is not None and switch.active:
            switch.active = False
            switch.expires_at = None
            switch.save(update_fields=["active", "expires_at", "updated_at"])
    return switch


def dms_get(*, trader: Trader) -> DeadMansSwitch | None:
    return DeadMansSwitch.objects.filter(trader=trader).first()


def dms_trigger_due(*, now: dt.datetime | None = None, limit: int = 100) -> int:
    """Fire every active switch past its deadline. Returns how many fired. Idempotent."""
    now = now or timezone.now()
    fired = 0
    for _ in range(limit):
        with transaction.atomic():
            switch = (
                DeadMansSwitch.objects.select_for_update(skip_locked=True)
                .select_related("trader")
                .filter(active=True, expires_at__lte=now)
                .order_by("expires_at")
                .first()
            )
            if switch is None:
                break
            cancelled = 0
            for mode in Mode.values:
                cancelled += len(orders_cancel_all(trader=switch.trader, mode=mode))
            switch.active = False
            switch.triggered_at = now
            switch.triggered_cancelled = cancelled
            switch.save(update_fields=["active", "triggered_at", "triggered_cancelled", "updated_at"])
            log.warning(
                "dead-man's switch of trader %s fired (no heartbeat for %s ms): %s orders cancelled",
                switch.trader_id,
                switch.timeout_ms,
                cancelled,
            )
        fired += 1
    return fired
