"""Celery tasks of the brokerage, one module per area (JSON arguments, idempotent)."""

from . import chain, webhooks, withdrawals  # noqa: F401
