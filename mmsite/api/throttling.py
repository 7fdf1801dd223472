"""Fixed-window rate limits kept in the cache (Redis in production, so shared by every process).

DRF's ``SimpleRateThrottle`` reads, appends and writes back a list of timestamps, which loses
counts when two processes race; here each request is one atomic ``INCR`` on the window's key.
"""

from __future__ import annotations

import time

from django.core.cache import cache
from rest_framework.throttling import BaseThrottle


class FixedWindowThrottle(BaseThrottle):
    """Allow ``rate`` requests per ``window`` seconds per ``get_ident`` key."""

    scope = "default"
    window = 60

    def get_rate(self) -> int:
        raise NotImplementedError

    def get_ident(self, request, view) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        ident = self.get_ident(request, view)
        if ident is None:
            return True
        now = time.time()
        window_start = int(now // self.window) * self.window
        key = f"throttle:{self.scope}:{ident}:{window_start}"
        cache.add(key, 0, timeout=self.window + 5)
        try:
            count = cache.incr(key)
        except ValueError:  # the key expired between add and incr
            cache.add(key, 1, timeout=self.window + 5)
            count = 1
        self._wait = window_start + self.window - now
        return count <= self.get_rate()

    def wait(self) -> float | None:
        return max(getattr(self, "_wait", 0.0), 0.0)
