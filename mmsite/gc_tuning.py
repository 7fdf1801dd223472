"""Garbage-collector settings for the long-running server processes (daphne, the order matcher).

CPython's cyclic collector runs its youngest generation every 700 net allocations and scans every
tracked object of the older generations from time to time. A daphne process holds a few hundred
thousand long-lived objects (Django, DRF, the URL and model machinery) and allocates heavily per
request, so its collections kept stopping the order path: with the thresholds below and the startup
heap frozen (``gc.freeze()``: never scanned again), bench/exchange_api.py measured batches of 10 at
1,155-1,245 orders/s with p99 100-102 ms, against 988-1,052 orders/s and p99 146-160 ms with Python's
defaults (single orders: 240 against 223 orders/s), on this 2-core machine.

Cycles are still collected: the young generation every ``GC_THRESHOLDS[0]`` allocations (most
request garbage dies there), the oldest more rarely. Off (Python's defaults) unless the settings give
``GC_THRESHOLDS`` (production does; tests and ``bin/run`` keep the defaults).
"""

from __future__ import annotations

import gc
import logging

from django.conf import settings

log = logging.getLogger(__name__)


def tune_gc() -> bool:
    """Freeze what the process has allocated so far and apply ``settings.GC_THRESHOLDS``; call once the
    application is loaded. Returns whether anything was changed."""
    thresholds = tuple(getattr(settings, "GC_THRESHOLDS", ()) or ())
    if not thresholds:
        return False
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    log.info("gc: %d objects frozen, thresholds %s", gc.get_freeze_count(), thresholds)
    return True
