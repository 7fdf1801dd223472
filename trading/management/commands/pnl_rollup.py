"""``manage.py pnl_rollup [--rebuild] [--client NAME] [--limit N]``: bring the PnL rollup up to date.

Without ``--rebuild``: recompute the days marked stale (what the beat task does). With it: mark
every day with fills stale first, then recompute them all; needed only after writes that bypass
the database triggers (TRUNCATE, bulk loads with triggers disabled) or on SQLite, where there are
no triggers (and where ``GET /pnl`` does not read the rollup anyway).
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from trading.models import Client, PnlDirtyDay
from trading.services.pnl import pnl_days_mark, pnl_days_refresh


class Command(BaseCommand):
    help = "Recompute the stale days of the PnL rollup; --rebuild marks every day stale first."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rebuild", action="store_true", help="mark every day with fills stale first")
        parser.add_argument("--client", default=None, help="only this client (its name, e.g. demo:vertex)")
        parser.add_argument("--limit", type=int, default=None, help="recompute at most N days (default: all)")

    def handle(self, *args, rebuild: bool, client: str | None, limit: int | None, **options) -> None:
        client_id = None
        if client is not None:
            client_id = Client.objects.filter(name=client).values_list("pk", flat=True).first()
            if client_id is None:
                raise CommandError(f"no client named {client!r}")
        t0 = time.perf_counter()
        if rebuild:
            self.stdout.write(f"marked {pnl_days_mark(client_id=client_id)} days stale")
        done = pnl_days_refresh(client_id=client_id, limit=limit)
        left = PnlDirtyDay.objects.filter(**({"client_id": client_id} if client_id else {})).count()
        self.stdout.write(f"recomputed {done} days in {time.perf_counter() - t0:.1f}s; {left} still marked")
