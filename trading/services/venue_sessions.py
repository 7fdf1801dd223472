"""Our side of each venue account's user stream: the resumable cursor and the placement hold.

From the moment a stream is known to be down until the reconciliation after the reconnect has
finished, placement for that account is **held** (``venue_held``): ``order_place`` raises
``PlacementThrottled`` instead of calling the venue, so the Celery task retries a second later
and in-process the order waits for the sweep (or the kick after reconciliation). Quoting may
still write ``PENDING_PLACEMENT`` rows; nothing reaches the venue before we know what rests there
and what has traded. Cancels are never held: they reduce risk.

The hold lapses by itself at ``held_until`` (``VENUE_RECONCILE_HOLD_SECONDS``, default 60), so a
runner that dies mid-reconnect cannot block placement for ever: a stale stream is then the soft
pause's business (``trading.services.health``).
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from exchanges.models.venue import VenueSession, VenueSessionState


def hold_seconds() -> float:
    return float(getattr(settings, "VENUE_RECONCILE_HOLD_SECONDS", 60))


def venue_held(*, exchange: str, account: str, now: dt.datetime | None = None) -> bool:
    """Is placement for this venue account held (stream down or reconciling)?"""
    return VenueSession.objects.filter(
        exchange=exchange, account=account, held_until__gt=now or timezone.now()
    ).exists()


def venue_session(*, exchange: str, account: str) -> VenueSession:
    return VenueSession.objects.get_or_create(exchange=exchange, account=account)[0]


def venue_hold(*, exchange: str, account: str, reason: str) -> None:
    """Hold placement for the account (the stream is connecting or just dropped)."""
    venue_session(exchange=exchange, account=account)
    VenueSession.objects.filter(exchange=exchange, account=account).update(
        state=VenueSessionState.CONNECTING,
        held_until=timezone.now() + dt.timedelta(seconds=hold_seconds()),
        last_error=reason[:255],
        updated_at=timezone.now(),
    )


def venue_release(*, exchange: str, account: str) -> None:
    """Reconciliation finished: the stream is live and placement may go on."""
    now = timezone.now()
    VenueSession.objects.filter(exchange=exchange, account=account).update(
        state=VenueSessionState.LIVE, held_until=None, reconciled_at=now, updated_at=now
    )


def venue_connected(*, exchange: str, account: str) -> None:
    from django.db.models import F

    VenueSession.objects.filter(exchange=exchange, account=account).update(connects=F("connects") + 1)


def venue_cursor_save(*, exchange: str, account: str, cursor: str) -> None:
    now = timezone.now()
    VenueSession.objects.filter(exchange=exchange, account=account).update(
        cursor=cursor, last_event_at=now, updated_at=now
    )


def venue_down(*, exchange: str, account: str) -> None:
    """The runner stopped cleanly: no hold (polling and the sweeps carry on)."""
    VenueSession.objects.filter(exchange=exchange, account=account).update(
        state=VenueSessionState.DOWN, held_until=None, updated_at=timezone.now()
    )
