"""``manage.py run_live``: the whole platform in one process, for the embedded default (``bin/run``).

    manage.py run_live [--host 127.0.0.1] [--port 8000] [--replay FILE] [--speed 1]
                       [--no-feed] [--no-venue-streams] [--no-scheduler] [--taker-rate R] [--taker-seed N]

One process runs, beside the web server (daphne: HTTP, the console, ``/ws/subscribe``):

* the odds feed: the replay file (default: the bundled sample) served by the local protocol server
  on a loopback port and followed by the real feed client, looping, each lap on fresh fixtures
  (``run_odds_feed --replay FILE --loop``, same code);
* the venue streams and the simulated taker flow that fills our quotes (``run_venue_streams``);
* the periodic tasks of ``CELERY_BEAT_SCHEDULE`` (``run_scheduler``): health check, fill polling,
  hedge sweep, settlement sweep, unknown placements, kick-off cancels, PnL rollups.

Why one process: without Redis, the channel layer and the cache are in memory, per process. An
order event written by the feed's process would never reach a WebSocket served by another
process, and a feed heartbeat would never be seen by a health check in another. With ``REDIS_URL``
set, run the pieces as separate processes instead (Procfile: web, worker, beat, feed, streams).

Events from the worker threads reach the web server's event loop through
:class:`LoopSafeInMemoryChannelLayer` (the in-memory layer's queues belong to that loop and are not
thread-safe). Ctrl-C stops the web server; the feed, streams and scheduler stop with the process.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from channels.layers import InMemoryChannelLayer
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from .run_odds_feed import SAMPLE, run_feed
from .run_scheduler import Scheduler

log = logging.getLogger("trading.live")

IN_MEMORY = "channels.layers.InMemoryChannelLayer"
_tasks: list[asyncio.Task] = []  # background tasks on the server's loop (a reference keeps them alive)
LOOP_SAFE = f"{__name__}.LoopSafeInMemoryChannelLayer"


class LoopSafeInMemoryChannelLayer(InMemoryChannelLayer):
    """The in-memory layer, safe to send to from any thread: a send made on another event loop
    (``async_to_sync`` in a worker thread makes its own) is handed to ``home_loop``, the web server's
    loop where the consumers wait on the queues."""

    home_loop: asyncio.AbstractEventLoop | None = None

    async def send(self, channel, message):
        home = type(self).home_loop
        if home is None or home.is_closed() or home is asyncio.get_running_loop():
            return await super().send(channel, message)
        fut = asyncio.run_coroutine_threadsafe(InMemoryChannelLayer.send(self, channel, message), home)
        return await asyncio.wrap_future(fut)


def _daemon(name: str, target) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except Exception:  # noqa: BLE001 - a thread boundary: log with traceback; the web server stays up
            log.exception("run_live: %s stopped with an error", name)
        else:
            log.info("run_live: %s stopped", name)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


class Command(BaseCommand):
    help = "Web server + replayed odds feed + venue streams + periodic tasks in one process (embedded default)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--replay", default=str(SAMPLE), help="replay file (default: the bundled sample)")
        parser.add_argument("--speed", type=float, default=1.0, help="replay time factor")
        parser.add_argument("--no-feed", action="store_true")
        parser.add_argument("--no-venue-streams", action="store_true")
        parser.add_argument("--no-scheduler", action="store_true")
        parser.add_argument("--taker-rate", type=float, default=2.0, help="simulated takers per second")
        parser.add_argument("--taker-seed", type=int, default=0)

    def handle(self, *args, **o) -> None:
        if o["speed"] <= 0:
            raise CommandError("--speed must be positive")
        # daphne.server installs Twisted's asyncio reactor on its own loop: import it first.
        import daphne.server
        from daphne.cli import CommandLineInterface
        from twisted.internet import reactor

        home = daphne.server.twisted_loop
        layer = settings.CHANNEL_LAYERS.get("default", {})
        if layer.get("BACKEND") == IN_MEMORY:
            from channels.layers import channel_layers

            settings.CHANNEL_LAYERS["default"] = {**layer, "BACKEND": LOOP_SAFE}
            channel_layers.backends.pop("default", None)
            LoopSafeInMemoryChannelLayer.home_loop = home

        stop = threading.Event()

        def start_background() -> None:
            if not o["no_feed"]:
                _tasks.append(home.create_task(_supervised_feed(o["replay"], o["speed"])))
            if not o["no_venue_streams"]:
                _daemon(
                    "venue streams",
                    lambda: call_command(
                        "run_venue_streams", taker_rate=o["taker_rate"], taker_seed=o["taker_seed"], verbosity=0
                    ),
                )
            if not o["no_scheduler"]:
                _daemon("scheduler", lambda: Scheduler().run(stop))

        reactor.callWhenRunning(start_background)
        self.stdout.write(
            f"run_live: web on http://{o['host']}:{o['port']}/, "
            f"feed {'off' if o['no_feed'] else o['replay'] + ' (looping)'}, "
            f"venue streams {'off' if o['no_venue_streams'] else 'on'}, "
            f"scheduler {'off' if o['no_scheduler'] else 'on'}"
        )
        try:
            CommandLineInterface().run(["-b", o["host"], "-p", str(o["port"]), "mmsite.asgi:application"])
        finally:
            stop.set()


async def _supervised_feed(replay: str, speed: float) -> None:
    """The replayed feed, started again 5 s after it stops with an error (the health check has
    soft-paused trading meanwhile: a feed that is down must not leave quotes to go stale)."""
    while True:
        try:
            await run_feed(url=None, api_key=None, replay=replay, speed=speed, loop=True, install_signals=False)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a process boundary: log with traceback, restart
            log.exception("run_live: the odds feed stopped with an error; restarting in 5 s")
        await asyncio.sleep(5)
