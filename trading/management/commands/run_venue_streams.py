"""``manage.py run_venue_streams``: consume every venue account's user stream (fills, order updates),
reconciling each account on every (re)connect before its placements resume; on the simulated
venue, also run the seeded taker flow that trades against our resting quotes.

    manage.py run_venue_streams [--exchange X ...] [--taker-seed N] [--taker-rate R]
                                [--partial-ratio P] [--no-taker] [--duration S]

One thread per active exchange account whose venue has a stream (venues without one are polled
by beat's ``trading.fills_poll_all`` only), one taker thread per simulated exchange. Stops on
SIGINT/SIGTERM or after ``--duration`` seconds. See docs/venues.md.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection

from exchanges.connectors.registry import get_connector
from exchanges.connectors.sim_taker import SimTakerFlow
from exchanges.connectors.simulated import SimulatedVenueConnector
from trading.models import ExchangeAccount
from trading.services.venue_streams import AccountStreamRunner

log = logging.getLogger(__name__)

TAKER_TICK = 0.2
#: How often the command looks for accounts created or activated since it started.
RESCAN_SECONDS = 10.0


class Command(BaseCommand):
    help = "Consume venue user streams (fills, order updates), reconcile on connect, run the simulated taker flow."

    def add_arguments(self, parser):
        parser.add_argument("--exchange", action="append", default=[], help="only this exchange (repeatable)")
        parser.add_argument("--taker-seed", type=int, default=0, help="seed of the simulated taker flow")
        parser.add_argument(
            "--taker-rate", type=float, default=0.5, help="simulated takers per second per exchange (default 0.5)"
        )
        parser.add_argument("--partial-ratio", type=float, default=0.5, help="share of takers that fill partly")
        parser.add_argument("--no-taker", action="store_true", help="no simulated taker flow")
        parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")

    def handle(self, *args, **opts):
        if opts["taker_rate"] < 0 or not (0 <= opts["partial_ratio"] <= 1):
            raise CommandError("--taker-rate must be >= 0 and --partial-ratio between 0 and 1")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, lambda *_: stop.set())
            except ValueError:  # not the main thread (run_live, tests): its caller or --duration ends it
                pass
        self.opts, self.stop = opts, stop
        self.threads: list[threading.Thread] = []
        self.streamed: set[int] = set()
        self.takers: set[str] = set()
        self._start_new(opts["exchange"])
        exchanges = sorted(self.takers | {a for a in opts["exchange"]})
        self.stdout.write(f"venue streams: {len(self.threads)} threads over {', '.join(exchanges) or 'no exchange'}")
        deadline = time.monotonic() + opts["duration"] if opts["duration"] else None
        next_scan = time.monotonic() + RESCAN_SECONDS
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now >= next_scan:  # accounts created or activated since: stream them too
                self._start_new(opts["exchange"])
                next_scan = now + RESCAN_SECONDS
            stop.wait(0.2)
        stop.set()
        for t in self.threads:
            t.join(timeout=15)
        self.stdout.write("venue streams stopped")

    def _start_new(self, only: list[str]) -> None:
        """Start a stream runner for every active account not streamed yet, and a taker flow for
        every simulated exchange that has accounts (once each)."""
        accounts = ExchangeAccount.objects.filter(active=True).exclude(pk__in=self.streamed).order_by("exchange", "id")
        if only:
            accounts = accounts.filter(exchange__in=only)
        for account in accounts:
            self.streamed.add(account.pk)
            venue = get_connector(account.exchange)
            if venue.has_stream:
                runner = AccountStreamRunner(account, stop=self.stop)
                self.threads.append(self._thread(f"stream-{account.exchange}-{account.pk}", runner.run))
            else:
                self.stdout.write(f"{account.exchange}:{account.username}: no user stream, polled by beat")
            if (
                not self.opts["no_taker"]
                and isinstance(venue, SimulatedVenueConnector)
                and account.exchange not in self.takers
            ):
                self.takers.add(account.exchange)
                flow = SimTakerFlow(
                    venue,
                    seed=self.opts["taker_seed"],
                    rate=self.opts["taker_rate"],
                    partial_ratio=self.opts["partial_ratio"],
                )
                self.threads.append(self._thread(f"taker-{account.exchange}", lambda f=flow: self._taker(f, self.stop)))

    @staticmethod
    def _thread(name: str, target) -> threading.Thread:
        def run():
            try:
                target()
            except Exception:
                log.exception("%s crashed", name)
                raise
            finally:
                connection.close()

        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        return t

    @staticmethod
    def _taker(flow: SimTakerFlow, stop: threading.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            stop.wait(TAKER_TICK)
            now = time.monotonic()
            try:
                trades = flow.step(now - last)
            except DatabaseError:
                log.exception("taker step on %s failed; next tick", flow.venue.exchange)
                continue
            finally:
                last = now
            for t in trades:
                log.info("taker: %s %s on %s", flow.venue.exchange, t.size, t.client_order_id)
