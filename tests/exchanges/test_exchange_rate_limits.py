"""Rate limits of the exchange API (seed 004 defaults, per trader tier), 429 with Retry-After."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from exchanges.services.traders import trader_key_create

BASE = "/api/v1/exchange"


@pytest.fixture
def frozen_clock(monkeypatch):
    """Every request of a test falls in one window (a slow machine must not straddle two seconds)."""
    import exchanges.api.throttling as x
    import mmsite.api.throttling as m

    t = [1_800_000_000.2]
    monkeypatch.setattr(x.time, "time", lambda: t[0])
    monkeypatch.setattr(m.time, "time", lambda: t[0])
    return t


def keyed(trader):
    c = APIClient()
    c.credentials(HTTP_X_API_KEY=trader_key_create(trader=trader)[1])
    return c


def test_public_endpoints_allow_30_per_minute_per_ip(market, frozen_clock):
    c = APIClient()
    for _ in range(30):
        assert c.get(f"{BASE}/vaix/bbo").status_code == 200
    r = c.get(f"{BASE}/vaix/trades")
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited" and int(r["Retry-After"]) >= 1
    other_ip = APIClient(REMOTE_ADDR="10.0.0.2")
    assert other_ip.get(f"{BASE}/vaix/bbo").status_code == 200
    frozen_clock[0] += 60
    assert c.get(f"{BASE}/vaix/bbo").status_code == 200


def test_authenticated_endpoints_allow_60_per_minute_per_trader(market, alice, frozen_clock):
    a = keyed(alice)
    for _ in range(60):
        assert a.get(f"{BASE}/vaix/orders/open").status_code == 200
    r = a.get(f"{BASE}/vaix/balance")
    assert r.status_code == 429 and "Retry-After" in r


def test_ten_orders_per_second_per_pair_and_thirty_per_minute(market, alice, frozen_clock):
    from .conftest import make_market

    make_market("sbio")
    a = keyed(alice)
    body = {"side": "buy", "quantity": "1", "price": "0.001"}
    for _ in range(10):
        assert a.post(f"{BASE}/vaix/orders", body, format="json").status_code == 201
    r = a.post(f"{BASE}/vaix/orders", body, format="json")
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert a.post(f"{BASE}/sbio/orders", body, format="json").status_code == 201  # another pair
    for _ in range(2):  # the next seconds: 10 per second again, up to 30 a minute
        frozen_clock[0] += 1
        for _ in range(10):
            r = a.post(f"{BASE}/sbio/orders", body, format="json")
        assert r.status_code in (201, 429)
    frozen_clock[0] += 1
    r = a.post(f"{BASE}/vaix/orders", body, format="json")
    assert r.status_code == 429 and "per minute" in r.json()["error"]["message"]
    # a batch counts every order it carries
    frozen_clock[0] += 60
    r = a.post(f"{BASE}/vaix/orders/batch", {"orders": [body] * 10}, format="json")
    assert r.status_code == 200
    r = a.post(f"{BASE}/vaix/orders/batch", {"orders": [body]}, format="json")
    assert r.status_code == 429


def test_market_makers_get_their_tiers_limits(market, alice, frozen_clock, settings):
    settings.EXCHANGE_RATE_LIMITS = {
        **django_settings.EXCHANGE_RATE_LIMITS,
        "market_maker": {"orders_per_second_per_pair": 50, "orders_per_minute": 1000, "authenticated_per_minute": 1000},
    }
    alice.tier = "market_maker"
    alice.save(update_fields=["tier"])
    a = keyed(alice)
    body = {"side": "buy", "quantity": "1", "price": "0.001"}
    for _ in range(50):
        assert a.post(f"{BASE}/vaix/orders", body, format="json").status_code == 201
    assert a.post(f"{BASE}/vaix/orders", body, format="json").status_code == 429


@pytest.mark.redis
def test_limits_are_counted_in_redis(market, frozen_clock):
    from django.core.cache import caches

    assert type(caches["default"]).__name__ == "RedisCache"
    c = APIClient()
    for _ in range(30):
        c.get(f"{BASE}/time")
    assert c.get(f"{BASE}/time").status_code == 429


def test_a_symbol_from_the_path_becomes_a_bounded_safe_cache_key():
    from exchanges.api.throttling import _pair_key

    assert _pair_key("vaix") == "vaix" and _pair_key("btc-usdc") == "btc-usdc"
    odd = "\U0008c186'´%\t᥀e7 " * 40  # what the fuzzer sends as a symbol: counted before it is validated
    key = _pair_key(odd)
    assert key == _pair_key(odd) and key != _pair_key(odd + "x")  # stable, and distinct symbols stay distinct
    assert len(key) <= 32 and key.isascii() and key.isalnum()
