"""``manage.py run_exchange_algos [--interval 1] [--once]``: run due TWAP slices and fire expired
dead-man's switches every second, in this process.

Production runs the same services from Celery beat (``exchanges.twap_run_due``,
``exchanges.deadman_sweep``); this loop is for the embedded default (``bin/run``, no Redis, no beat)
and for operators who want the sweeps without Celery. Both services are idempotent, so running this
next to beat does no harm.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from exchanges.services import deadman, twap


class Command(BaseCommand):
    help = "Run due TWAP slices and fire expired dead-man's switches every --interval seconds."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--interval", type=float, default=1.0)
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args, interval: float, once: bool, **options) -> None:
        while True:
            slices = twap.twaps_run_due()
            fired = deadman.dms_trigger_due()
            if slices or fired:
                self.stdout.write(f"TWAP slices run: {slices}; dead-man's switches fired: {fired}")
            if once:
                return
            time.sleep(max(0.05, interval))
            close_old_connections()  # a long-lived loop: drop a connection the database closed
