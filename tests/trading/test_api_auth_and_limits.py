"""Authentication and the per-client rate limit across the MM client read endpoints."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import redis
from django.core.cache import caches
from rest_framework.test import APIClient

import mmsite.api.throttling as throttling
from tests.factories import make_api_key
from trading.models import ApiKey
from trading.services.clients import api_key_revoke

pytestmark = pytest.mark.django_db

READ_ENDPOINTS = [
    "/api/v1/me",
    "/api/v1/orders",
    "/api/v1/orders/open",
    "/api/v1/orders/summary",
    "/api/v1/orders/1",
    "/api/v1/bets",
    "/api/v1/bets/summary",
    "/api/v1/bets/1",
    "/api/v1/fixtures",
    "/api/v1/fixtures/id1000000861624412",
    "/api/v1/accounts",
]

WINDOW_START = 1_800_000_000  # a multiple of 60: one fixed window
NOW = WINDOW_START + 30.0


@pytest.fixture
def frozen_clock(monkeypatch):
    """Pin the throttle's clock mid-window, so a run that straddles a minute boundary cannot flake.

    Returns a setter to move the clock (seconds since the epoch)."""
    clock = SimpleNamespace(now=NOW)
    monkeypatch.setattr(throttling, "time", SimpleNamespace(time=lambda: clock.now))
    return lambda value: setattr(clock, "now", value)


def keyed(raw_key: str | None) -> APIClient:
    c = APIClient()
    if raw_key is not None:
        c.credentials(HTTP_X_API_KEY=raw_key)
    return c


# --- authentication -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", READ_ENDPOINTS)
def test_missing_api_key_is_401_json(db, url):
    resp = keyed(None).get(url)

    assert resp.status_code == 401
    assert resp["Content-Type"].startswith("application/json")
    assert resp.json()["error"] == "unauthorized" and resp.json()["message"]


@pytest.mark.parametrize("url", READ_ENDPOINTS)
def test_wrong_api_key_is_401_json(mm_client, url):
    raw = mm_client[1]
    prefix = raw.split("_")[1]
    wrong_secret = f"mm_{prefix}_{'A' * 43}"  # right prefix, wrong secret

    for key in (wrong_secret, "mm_0000000000_nope", "not-a-key", ""):
        resp = keyed(key).get(url)
        assert resp.status_code == 401, key
        assert resp.json()["error"] == "unauthorized"


@pytest.mark.parametrize("url", READ_ENDPOINTS)
def test_revoked_api_key_is_401_json(mm_client, url):
    client, raw = mm_client
    api_key_revoke(api_key=ApiKey.objects.get(client=client))

    resp = keyed(raw).get(url)

    assert resp.status_code == 401 and resp.json()["error"] == "unauthorized"


def test_a_second_key_of_the_client_still_works_after_one_is_revoked(mm_client):
    client, raw = mm_client
    api_key_revoke(api_key=ApiKey.objects.get(client=client))
    fresh = make_api_key(client)

    assert keyed(fresh).get("/api/v1/accounts").status_code == 200
    assert keyed(raw).get("/api/v1/accounts").status_code == 401


# --- rate limit ---------------------------------------------------------------------------------------------


def test_the_101st_request_in_a_minute_is_429_at_the_default_limit(api, settings, frozen_clock):
    assert settings.MM_API_RATE_PER_MINUTE == 100  # the seed's limit, not a test override

    statuses = [api.get("/api/v1/fixtures").status_code for _ in range(100)]
    resp = api.get("/api/v1/fixtures")

    assert statuses == [200] * 100
    assert resp.status_code == 429
    assert resp["Retry-After"] == "30"
    assert resp.json() == {"error": "rate_limited", "message": resp.json()["message"], "retryAfter": 30}


def test_the_limit_counts_every_endpoint_and_every_key_of_one_client(api, mm_client, settings, frozen_clock):
    settings.MM_API_RATE_PER_MINUTE = 4
    second_key = keyed(make_api_key(mm_client[0]))

    assert api.get("/api/v1/orders").status_code == 200
    assert api.get("/api/v1/bets").status_code == 200
    assert second_key.get("/api/v1/accounts").status_code == 200
    assert second_key.get("/api/v1/orders?status=BOGUS").status_code == 400  # a refused request still counts
    resp = api.get("/api/v1/fixtures")

    assert resp.status_code == 429
    assert int(resp["Retry-After"]) == 30
    assert resp.json()["error"] == "rate_limited"


def test_one_clients_limit_does_not_throttle_another(api, other_client, settings, frozen_clock):
    settings.MM_API_RATE_PER_MINUTE = 2
    for _ in range(3):
        api.get("/api/v1/orders")

    assert api.get("/api/v1/orders").status_code == 429
    assert keyed(other_client[1]).get("/api/v1/orders").status_code == 200


def test_the_limit_resets_in_the_next_minute(api, settings, frozen_clock):
    settings.MM_API_RATE_PER_MINUTE = 2
    api.get("/api/v1/orders")
    api.get("/api/v1/orders")
    assert api.get("/api/v1/orders").status_code == 429

    frozen_clock(WINDOW_START + 60.5)

    assert api.get("/api/v1/orders").status_code == 200


def test_unauthenticated_requests_are_refused_before_they_count(api, settings, frozen_clock):
    settings.MM_API_RATE_PER_MINUTE = 2
    for _ in range(5):
        assert keyed("mm_0000000000_nope").get("/api/v1/orders").status_code == 401

    assert api.get("/api/v1/orders").status_code == 200


@pytest.mark.redis
def test_the_limit_is_shared_through_redis_by_separate_connections(api, mm_client, settings, frozen_clock):
    """Two web processes are two cache connections to one Redis: the counter must be the same one."""
    settings.MM_API_RATE_PER_MINUTE = 5
    key = f"throttle:mmclient:{mm_client[0].pk}:{WINDOW_START}"
    other_process = caches.create_connection("default")  # its own client and connection pool
    assert other_process is not caches["default"]

    for _ in range(3):
        assert api.get("/api/v1/orders").status_code == 200

    # the counter lives in Redis: a separate connection reads it ...
    assert other_process.get(key) == 3
    # ... and requests counted by "another process" use up this one's allowance
    other_process.incr(key)
    other_process.incr(key)
    resp = api.get("/api/v1/orders")

    assert resp.status_code == 429
    assert resp.json()["error"] == "rate_limited"
    # the raw Redis database holds the key, with an expiry, so old windows clean themselves up
    raw = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    redis_key = other_process.make_and_validate_key(key)
    assert int(raw.get(redis_key)) == 6
    assert 0 < raw.ttl(redis_key) <= 65
