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
        accounts = ExchangeAccount.objects.filter(active=True).order_by("exchange", "id")
        if opts["exchange"]:
            accounts = accounts.filter(exchange__in=opts["exchange"])
        accounts = list(accounts)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, lambda *_: stop.set())
            except ValueError:  # not the main thread (tests): --duration ends it
                pass
        threads: list[threading.Thread] = []
        exchanges = sorted({a.exchange for a in accounts} | set(opts["exchange"]))
        for account in accounts:
            if not get_connector(account.exchange).has_stream:
                self.stdout.write(f"{account.exchange}:{account.username}: no user stream, polled by beat")
                continue
            runner = AccountStreamRunner(account, stop=stop)
            threads.append(self._thread(f"stream-{account.exchange}-{account.pk}", runner.run))
        if not opts["no_taker"]:
            for exchange in exchanges:
                venue = get_connector(exchange)
                if isinstance(venue, SimulatedVenueConnector):
                    users = [a.username for a in accounts if a.exchange == exchange]
                    flow = SimTakerFlow(
                        venue,
                        seed=opts["taker_seed"],
                        rate=opts["taker_rate"],
                        partial_ratio=opts["partial_ratio"],
                        accounts=users,
                    )
                    threads.append(self._thread(f"taker-{exchange}", lambda f=flow: self._taker(f, stop)))
        self.stdout.write(f"venue streams: {len(threads)} threads over {', '.join(exchanges) or 'no exchange'}")
        deadline = time.monotonic() + opts["duration"] if opts["duration"] else None
        while not stop.is_set() and any(t.is_alive() for t in threads):
            if deadline is not None and time.monotonic() >= deadline:
                stop.set()
            stop.wait(0.2)
        stop.set()
        for t in threads:
            t.join(timeout=15)
        self.stdout.write("venue streams stopped")

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
