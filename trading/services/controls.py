"""Trading controls: a client's pause/stop, the engine's soft pause, the operator's system-wide
pause/stop and emergency. Called by the MM client API and the admin console alike.

Flags are independent and each is cleared only by its own counterpart: ``resume`` clears a manual
pause, ``start`` a manual stop, ``soft_resume`` a soft pause, ``system_resume`` a system pause and
stop, ``emergency_off`` the emergency. The summary status derives from all of them
(``trading.selectors.controls``).

Repeating a transition is a no-op: when the flag already has the requested value nothing is
written, no ``TradingControlEvent`` is recorded and nothing is published (the event log records
changes only). The cancelling transitions (``client_stop``, ``system_stop``, ``emergency_on``)
still sweep open orders when repeated, so a repeat is the retry for orders a venue failed to
cancel the first time.

Locks, always taken in this order: the ``SystemTradingState`` row, then ``ClientTradingState``
rows in ascending client id, then order rows (``trading.services.orders.lock_order``). A state
transition commits before any venue call, so no state lock is held while venues answer.
"""

from __future__ import annotations

from django.db import transaction

from trading.choices import ControlAction
from trading.events import publish_emergency, publish_trading_state
from trading.models import Client, ClientTradingState, SystemTradingState, TradingControlEvent
from trading.selectors.controls import status_body

from .orders import CancelReport, orders_cancel_all, orders_cancel_all_clients

__all__ = [
    "CancelReport",
    "client_pause",
    "client_resume",
    "client_start",
    "client_stop",
    "emergency_off",
    "emergency_on",
    "lock_client_state",
    "lock_system_state",
    "soft_pause",
    "soft_resume",
    "system_pause",
    "system_resume",
    "system_stop",
]


# --- locks ----------------------------------------------------------------------------------------------------


def lock_system_state() -> SystemTradingState:
    """``SELECT ... FOR UPDATE`` the single system row, creating it first if absent. Call inside
    ``transaction.atomic()``, before any client state or order lock."""
    SystemTradingState.get()
    return SystemTradingState.objects.select_for_update().get(pk=1)


def lock_client_state(*, client: Client) -> ClientTradingState:
    """``SELECT ... FOR UPDATE`` the client's control row, creating it first if absent. Call inside
    ``transaction.atomic()``, after the system row if that is needed, before any order lock.

    The engine takes this lock in the transaction that writes a ``PENDING_PLACEMENT`` order and
    checks ``trading_allowed`` after it: a stop then either waits for that order to commit (and its
    sweep cancels it) or is seen by the engine, which writes nothing.
    """
    ClientTradingState.objects.get_or_create(client=client)
    return ClientTradingState.objects.select_for_update().get(client=client)


def _wait_out_order_writers() -> None:
    """Lock and release every client state row in id order. After a system flag commits, this
    waits for engine transactions that checked the old flag under a client lock to commit, so the
    sweep that follows sees their orders."""
    for client_id in ClientTradingState.objects.order_by("client_id").values_list("client_id", flat=True):
        with transaction.atomic():
            list(ClientTradingState.objects.select_for_update().filter(client_id=client_id).values_list("id"))


# --- per-client -----------------------------------------------------------------------------------------------


def _set_client_flags(*, client: Client, action: ControlAction, actor: str, reason: str, **flags: bool | str) -> bool:
    """Set ``flags`` on the client's control row under its lock; record and publish if anything
    changed. Returns whether it changed. Locks: the system row is *read* (not locked), then the
    client state row FOR UPDATE."""
    with transaction.atomic():
        state = lock_client_state(client=client)
        changed = [name for name, value in flags.items() if getattr(state, name) != value]
        if not changed:
            return False
        for name in changed:
            setattr(state, name, flags[name])
        state.save(update_fields=[*changed, "updated_at"])
        TradingControlEvent.objects.create(client=client, action=action, actor=actor, reason=reason[:255])
        system = SystemTradingState.objects.filter(pk=1).first() or SystemTradingState(id=1)
        publish_trading_state(client, status_body(client=client, system=system, state=state))
    return True


def client_pause(*, client: Client, actor: str, reason: str = "") -> None:
    """Stop new orders for ``client``; resting orders stay on the venues. Locks the client state row."""
    _set_client_flags(client=client, action=ControlAction.PAUSE, actor=actor, reason=reason, manual_paused=True)


def client_resume(*, client: Client, actor: str, reason: str = "") -> None:
    """Clear the client's manual pause (not a stop, a soft pause or a system block)."""
    _set_client_flags(client=client, action=ControlAction.RESUME, actor=actor, reason=reason, manual_paused=False)


def client_stop(*, client: Client, actor: str, reason: str = "") -> CancelReport:
    """Stop ``client``: no new orders, and every open order on every venue cancelled. Returns when
    every venue has answered; orders a venue did not confirm are in ``report.failed`` and stay open
    (call again to retry). Locks the client state row (committed first), then each order row."""
    _set_client_flags(client=client, action=ControlAction.STOP, actor=actor, reason=reason, manual_stopped=True)
    return orders_cancel_all(client=client, actor=actor)


def client_start(*, client: Client, actor: str, reason: str = "") -> None:
    """Clear the client's manual stop (not a pause). The engine quotes afresh; nothing is re-placed."""
    _set_client_flags(client=client, action=ControlAction.START, actor=actor, reason=reason, manual_stopped=False)


def soft_pause(*, client: Client, reason: str, actor: str = "system") -> None:
    """The engine pauses itself for ``client`` (e.g. a risk limit): like a pause, resting orders stay.
    A repeat while soft-paused keeps the first reason."""
    with transaction.atomic():
        if lock_client_state(client=client).soft_paused:
            return
        _set_client_flags(
            client=client,
            action=ControlAction.SOFT_PAUSE,
            actor=actor,
            reason=reason,
            soft_paused=True,
            soft_pause_reason=reason[:255],
        )


def soft_resume(*, client: Client, actor: str = "system") -> None:
    """Clear the engine's soft pause for ``client``."""
    _set_client_flags(
        client=client, action=ControlAction.SOFT_RESUME, actor=actor, reason="", soft_paused=False, soft_pause_reason=""
    )


# --- system-wide ----------------------------------------------------------------------------------------------


def _publish_all_clients(system: SystemTradingState) -> None:
    """Announce the system state and every client's resulting status (after commit)."""
    publish_emergency(system)
    for state in ClientTradingState.objects.select_related("client").order_by("client_id"):
        publish_trading_state(state.client, status_body(client=state.client, system=system, state=state))


def _set_system_flags(*, action: ControlAction, actor: str, reason: str, **flags: bool) -> bool:
    """Set ``flags`` on the system row under its lock; record and publish if anything changed.
    Locks the system row FOR UPDATE. Returns whether it changed."""
    with transaction.atomic():
        system = lock_system_state()
        changed = [name for name, value in flags.items() if getattr(system, name) != value]
        if not changed:
            return False
        for name in changed:
            setattr(system, name, flags[name])
        if any(flags[name] for name in changed):
            system.reason = reason[:255]  # why the newest block was raised
        elif not (system.paused or system.stopped or system.emergency):
            system.reason = ""  # all clear; a block still raised keeps its reason
        system.save(update_fields=[*changed, "reason", "updated_at"])
        TradingControlEvent.objects.create(client=None, action=action, actor=actor, reason=reason[:255])
        _publish_all_clients(system)
    return True


def _block_then_sweep(*, action: ControlAction, flag: str, actor: str, reason: str) -> CancelReport:
    _set_system_flags(action=action, actor=actor, reason=reason, **{flag: True})
    _wait_out_order_writers()
    return orders_cancel_all_clients(actor=actor)


def system_pause(*, actor: str, reason: str = "") -> None:
    """Stop new orders for every client; resting orders stay. Locks the system row."""
    _set_system_flags(action=ControlAction.SYSTEM_PAUSE, actor=actor, reason=reason, paused=True)


def system_stop(*, actor: str, reason: str = "") -> CancelReport:
    """Stop every client and cancel every open order on every venue; returns when the venues have
    answered. Locks the system row (committed first), each client state row briefly, then each order."""
    return _block_then_sweep(action=ControlAction.SYSTEM_STOP, flag="stopped", actor=actor, reason=reason)


def system_resume(*, actor: str, reason: str = "") -> None:
    """Clear the system pause and the system stop (not the emergency). Locks the system row."""
    _set_system_flags(action=ControlAction.SYSTEM_RESUME, actor=actor, reason=reason, paused=False, stopped=False)


def emergency_on(*, actor: str, reason: str = "") -> CancelReport:
    """The operator's emergency: every client's open orders cancelled and all trading blocked until
    ``emergency_off``. Locks as ``system_stop``."""
    return _block_then_sweep(action=ControlAction.EMERGENCY_ON, flag="emergency", actor=actor, reason=reason)


def emergency_off(*, actor: str, reason: str = "") -> None:
    """Clear the emergency (a system pause or stop set separately stays). Locks the system row."""
    _set_system_flags(action=ControlAction.EMERGENCY_OFF, actor=actor, reason=reason, emergency=False)
