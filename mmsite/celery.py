"""Celery application.

With ``REDIS_URL`` set, tasks go to Redis and run on ``celery -A mmsite worker``.
Without it (the embedded default) ``CELERY_TASK_ALWAYS_EAGER`` runs them in-process,
so the same task code paths run on a laptop as in production.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmsite.settings")

app = Celery("mmsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
