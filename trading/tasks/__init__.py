"""Celery tasks of the MM engine, one module per area: thin wrappers that call services, take
JSON arguments only, and are safe to run twice. Celery's autodiscovery imports this package,
so every task module is imported here."""

from . import fills, health, placement, pnl, reconciliation, settlement  # noqa: F401
