"""Celery tasks: fills (see trading/tasks/__init__.py)."""
