"""Celery tasks of the house exchange, one module per area (JSON arguments, idempotent)."""

from . import algos, matching  # noqa: F401
