"""Celery tasks: placement (see trading/tasks/__init__.py)."""
