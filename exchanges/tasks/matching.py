"""Tasks of the matching service (thin: ``exchanges.services.orders`` holds the logic).

``exchanges.orders_expire_due`` runs every second from beat: good-till-time orders also expire on their
book's next command, and this expires them on quiet books. Running it twice, or on two workers at once,
is safe: each book's expiry runs under that book's lock and an expired order is no longer live.
"""

from __future__ import annotations

from celery import shared_task

from exchanges.services.orders import books_expire_due


@shared_task(name="exchanges.orders_expire_due", acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=50)
def orders_expire_due() -> int:
    """Expire every due good-till-time order; returns the number of books touched."""
    return books_expire_due()
