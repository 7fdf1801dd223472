"""Signals the house exchange sends for apps above it (``brokers``) without importing them.

- ``trades_committed``: sent after the matching transaction commits, with ``trades`` (a list of
  ``ExchangeTrade`` rows of that transaction) and ``mode`` (``"live"`` or ``"paper"``). Receivers must
  not raise (a failure is logged by the sender and never undoes a trade).
"""

from django.dispatch import Signal

trades_committed = Signal()
