"""Trading controls as the client and the engine see them (``GET /trading/status``, the engine's gate).

The summary ``status`` is derived, never stored. Precedence, first match wins:

1. ``emergency``       the operator's emergency switch is on;
2. ``system_stopped``  any system-wide block: a system *stop* or a system *pause*. A system pause
   therefore reports ``status: system_stopped`` with ``systemStopped: false`` and
   ``systemTradingBlocked: true`` (the seed has no ``system_paused`` value);
3. ``manual_stopped``  the client stopped (``POST /trading/stop``);
4. ``manual_paused``   the client paused (``POST /trading/pause``);
5. ``soft_paused``     the engine paused itself for this client (e.g. a risk limit);
6. ``live``.

``tradingActive`` is ``status == "live"``: the engine posts new orders only then.
"""

from __future__ import annotations

from typing import Any

from trading.choices import TradingStatus
from trading.models import Client, ClientTradingState, SystemTradingState


def derive_status(*, system: SystemTradingState, state: ClientTradingState) -> str:
    """The summary status for one client's flags under the system flags (precedence above)."""
    if system.emergency:
        return TradingStatus.EMERGENCY.value
    if system.stopped or system.paused:
        return TradingStatus.SYSTEM_STOPPED.value
    if state.manual_stopped:
        return TradingStatus.MANUAL_STOPPED.value
    if state.manual_paused:
        return TradingStatus.MANUAL_PAUSED.value
    if state.soft_paused:
        return TradingStatus.SOFT_PAUSED.value
    return TradingStatus.LIVE.value


def status_body(*, client: Client, system: SystemTradingState, state: ClientTradingState) -> dict[str, Any]:
    """The eleven fields of ``GET /trading/status`` (seed 000), in the seed's order."""
    status = derive_status(system=system, state=state)
    return {
        "client": client.name,
        "clientName": client.client_name,
        "oddsFormat": client.odds_format,
        "status": status,
        "tradingActive": status == TradingStatus.LIVE,
        "manualPaused": state.manual_paused,
        "manualStopped": state.manual_stopped,
        "systemTradingBlocked": system.paused or system.stopped,
        "emergencyActive": system.emergency,
        "systemStopped": system.stopped,
        "softPaused": state.soft_paused,
    }


def system_state() -> SystemTradingState:
    """The system row as stored, or an unsaved all-clear default (a read never creates it)."""
    return SystemTradingState.objects.filter(pk=1).first() or SystemTradingState(id=1)


def client_state(*, client: Client) -> ClientTradingState:
    """The client's control row as stored, or an unsaved all-clear default."""
    return ClientTradingState.objects.filter(client=client).first() or ClientTradingState(client=client)


def trading_status(*, client: Client) -> dict[str, Any]:
    """The body of ``GET /trading/status`` for ``client`` (two indexed single-row reads)."""
    return status_body(client=client, system=system_state(), state=client_state(client=client))


def trading_allowed(*, client: Client) -> bool:
    """May the engine post *new* orders for ``client``? Hedging of fills that already happened is
    never gated by this. To close the race with a concurrent stop, the engine reads this inside the
    transaction that writes its ``PENDING_PLACEMENT`` row after taking
    ``trading.services.controls.lock_client_state`` (see that function)."""
    return derive_status(system=system_state(), state=client_state(client=client)) == TradingStatus.LIVE
