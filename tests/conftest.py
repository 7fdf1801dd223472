"""Fixtures shared by every app's tests.

The suite runs on SQLite by default and on PostgreSQL + Redis when ``DATABASE_URL``/``REDIS_URL``
are set (CI sets them). Tests marked ``postgres`` or ``redis`` need those services: they are
skipped without them on a laptop, and fail rather than skip when ``CI=true``.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.factories import ClientFactory, make_api_key

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    for item in items:
        if item.get_closest_marker("postgres") and not settings.IS_POSTGRES:
            if IN_CI:
                raise pytest.UsageError("CI=true but DATABASE_URL is not PostgreSQL: postgres tests cannot run")
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)"))
        if item.get_closest_marker("redis") and not settings.REDIS_URL:
            if IN_CI:
                raise pytest.UsageError("CI=true but REDIS_URL is not set: redis tests cannot run")
            item.add_marker(pytest.mark.skip(reason="needs Redis (set REDIS_URL)"))


@pytest.fixture(autouse=True)
def _clear_cache():
    """Throttle counters live in the cache; every test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def mm_client(db):
    """A client of the MM engine with one API key: ``(client, raw_key)``."""
    client = ClientFactory(name="demo:vertex", display_name="Demo Client")
    return client, make_api_key(client)


@pytest.fixture
def api(mm_client):
    """A DRF test client authenticated as ``mm_client``."""
    c = APIClient()
    c.credentials(HTTP_X_API_KEY=mm_client[1])
    return c


@pytest.fixture
def other_client(db):
    """A second tenant, for isolation tests: ``(client, raw_key)``."""
    client = ClientFactory(name="other:vertex", display_name="Other Client")
    return client, make_api_key(client)


@pytest.fixture
def eager_celery():
    """Tasks run in-process, also when REDIS_URL is set (where Celery would otherwise queue them)."""
    from mmsite.celery import app as celery_app

    old = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = old


@pytest.fixture
def eager_hedging(eager_celery):
    """Hedge tasks run in-process against a simulated bookmaker with its default behaviour."""
    from hedging.connectors.simulated import SimulatedBookmaker

    SimulatedBookmaker.reset()
    yield
    SimulatedBookmaker.reset()
