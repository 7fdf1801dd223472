"""The PnL rollup (``PnlDay``): marking days stale and recomputing them.

``GET /pnl`` on PostgreSQL sums ``PnlDay`` rows for clean days and computes the days marked in
``PnlDirtyDay`` live (``trading.selectors.pnl.pnl_report``), so its answer never depends on how
recently this ran: refreshing only moves days from the slow live path to the fast rollup path.

Who marks: on PostgreSQL the database, by triggers on orders, fills and bets (migration 0003),
for every write that can change a day's PnL; ``pnl_days_mark`` marks days by hand (``--rebuild``).

The refresh protocol, per batch of one client's marked days, in one transaction:

1. take the client's refresh lock (a transaction-scoped advisory lock; a concurrent refresh of
   the same client skips it rather than overwrite newer sums with older ones);
2. read each marker's ``generation``;
3. compute the days' components with the live expressions and upsert ``PnlDay``;
4. delete each marker only if its generation is still the one read in 2 and no write in flight
   holds it (``FOR UPDATE SKIP LOCKED``).

A write that commits after the computation's snapshot has bumped the generation (its trigger
runs inside the write's transaction, before it commits), so its marker survives 4 and the day is
recomputed next time; until then readers compute it live. A write still in flight at 4 holds the
marker's row lock: the refresh skips that marker rather than wait, so it never waits for a writer.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
from functools import reduce

from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from trading.models import Fill, Order, PnlDay, PnlDirtyDay
from trading.selectors.pnl import COMPONENTS, orders_created_on, pnl_day_components, pnl_fills

logger = logging.getLogger(__name__)

#: days recomputed per transaction (one grouped query): a month of one client's fills
BATCH_DAYS = 31
#: first key of the two-int advisory lock (the second is the client id): "PnLr"
_LOCK_NAMESPACE = 0x506E4C72


def pnl_days_mark(*, client_id: int | None = None) -> int:
    """Mark stale every day on which (the client's, or every client's) orders with fills were
    created; returns the number of days marked. The triggers make this unnecessary on PostgreSQL
    except after writes that bypass them (TRUNCATE, ``session_replication_role = replica``)."""
    orders = Order.objects.filter(pk__in=Fill.objects.values("order_id"))
    if client_id is not None:
        orders = orders.filter(client_id=client_id)
    days = orders.order_by().annotate(day=TruncDate("created_at", tzinfo=dt.UTC)).values("client_id", "day")
    days = days.distinct()
    if connection.vendor == "postgresql":
        sql, params = days.query.sql_with_params()
        with connection.cursor() as cur:
            cur.execute(
                f"INSERT INTO {PnlDirtyDay._meta.db_table} (client_id, day, generation) "
                f"SELECT client_id, day, nextval('trading_pnl_generation_seq') FROM ({sql}) AS days "
                "ON CONFLICT (client_id, day) DO UPDATE SET generation = EXCLUDED.generation",
                params,
            )
            return cur.rowcount
    # No triggers and no concurrent refresh elsewhere: any new generation will do.
    with transaction.atomic():
        generation = (PnlDirtyDay.objects.order_by("-generation").values_list("generation", flat=True).first() or 0) + 1
        rows = [PnlDirtyDay(client_id=d["client_id"], day=d["day"], generation=generation) for d in days]
        PnlDirtyDay.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["client", "day"], update_fields=["generation"]
        )
    return len(rows)


def pnl_days_refresh(*, client_id: int | None = None, limit: int | None = 2000) -> int:
    """Recompute marked days (of one client, or of all), at most ``limit`` (None: until none is
    left), oldest client id and day first; returns the number of days recomputed. Idempotent and
    safe to run concurrently with writers and with itself (see the module docstring)."""
    done = 0
    # A cursor over (client, day): each marker is visited at most once per run, so a day that is
    # written to all the time (today), or one a write in flight holds, is not recomputed in a loop.
    after: tuple[int, dt.date] | None = None
    while limit is None or done < limit:
        batch = BATCH_DAYS if limit is None else min(BATCH_DAYS, limit - done)
        with transaction.atomic():
            marked = PnlDirtyDay.objects.order_by("client_id", "day")
            if client_id is not None:
                marked = marked.filter(client_id=client_id)
            if after is not None:
                marked = marked.filter(Q(client_id__gt=after[0]) | Q(client_id=after[0], day__gt=after[1]))
            first = marked.values_list("client_id", flat=True).first()
            if first is None:
                break
            if not _refresh_lock(first):  # another refresh is on this client: leave it the client
                after = (first, dt.date.max)
                continue
            markers = list(marked.filter(client_id=first).values_list("day", "generation")[:batch])
            if not markers:  # a refresh that held the lock took them meanwhile
                after = (first, dt.date.max)
                continue
            _refresh_days(client_id=first, markers=markers)
            done += len(markers)
            after = (first, markers[-1][0])
    return done


def pnl_days_rebuild(*, client_id: int | None = None) -> int:
    """Mark every day with fills stale, then recompute all marked days; returns the days recomputed."""
    pnl_days_mark(client_id=client_id)
    return pnl_days_refresh(client_id=client_id, limit=None)


def _refresh_lock(client_id: int) -> bool:
    """Try to take ``client_id``'s refresh lock until the end of the transaction."""
    if connection.vendor != "postgresql":
        return True  # SQLite serializes writing transactions
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, client_id])
        return cur.fetchone()[0]


def _refresh_days(*, client_id: int, markers: list[tuple]) -> None:
    """Recompute ``client_id``'s days in ``markers`` ((day, generation) pairs read in this
    transaction) and drop the markers whose generation has not moved. Needs its caller's
    transaction and the client's refresh lock."""
    days = [day for day, _ in markers]
    fills = pnl_fills(client=client_id).filter(orders_created_on(days))
    computed = {row.pop("day"): row for row in pnl_day_components(fills=fills)}
    now = timezone.now()
    PnlDay.objects.bulk_create(
        [PnlDay(client_id=client_id, day=day, computed_at=now, **row) for day, row in computed.items()],
        update_conflicts=True,
        unique_fields=["client", "day"],
        update_fields=[*COMPONENTS, "computed_at"],
    )
    PnlDay.objects.filter(client_id=client_id, day__in=[d for d in days if d not in computed]).delete()
    unchanged = reduce(operator.or_, (Q(day=day, generation=generation) for day, generation in markers))
    # SKIP LOCKED: a marker locked by a write in flight stays (that write bumps it anyway), and the
    # refresh never waits for a writer, so it can never be half of a deadlock with one.
    done = PnlDirtyDay.objects.filter(unchanged, client_id=client_id).select_for_update(skip_locked=True)
    kept = len(markers) - PnlDirtyDay.objects.filter(pk__in=list(done.values_list("pk", flat=True))).delete()[0]
    if kept:
        logger.info(
            "pnl rollup: client %s: %s of %s days written to meanwhile, left marked", client_id, kept, len(days)
        )
