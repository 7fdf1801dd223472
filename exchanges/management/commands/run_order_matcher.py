"""``manage.py run_order_matcher [--socket PATH]``: the order gateway's batches in a process of their own.

Listens on ``EXCHANGE_MATCHER_SOCKET`` (or ``--socket``); web processes started with the same setting hand
it their place and cancel requests (exchanges/api/matcher.py, docs/exchange-matching.md).
"""

from __future__ import annotations

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run the exchange's order matcher (place/cancel batches for the web processes) on a Unix socket."

    def add_arguments(self, parser):
        parser.add_argument("--socket", default=None, help="Unix socket path (default: EXCHANGE_MATCHER_SOCKET)")

    def handle(self, *args, **options):
        path = options["socket"] or settings.EXCHANGE_MATCHER_SOCKET
        if not path:
            raise CommandError("no socket: pass --socket PATH or set EXCHANGE_MATCHER_SOCKET")
        from exchanges.api.gateway import gateway
        from exchanges.api.matcher import serve_forever

        gateway()  # start the threads before the first request
        self.stdout.write(f"order matcher on {path}")

        async def main() -> None:
            # SIGTERM (honcho, systemd) and SIGINT stop it cleanly: the socket file is removed, so web
            # processes serve orders themselves until it is back.
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await serve_forever(path, stop)

        from mmsite.gc_tuning import tune_gc

        tune_gc()
        asyncio.run(main())
