"""Fixtures for the house exchange's tests: a market and funded traders (live and paper)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from exchanges.api.authentication import api_key_cache_clear
from exchanges.services import fees as fee_service
from exchanges.services import matching
from exchanges.services.markets import market_upsert
from exchanges.services.orders import markets_cache_clear
from exchanges.services.traders import trader_fund, trader_get_or_create

_keys = itertools.count()


@pytest.fixture(autouse=True)
def _fresh_exchange_caches():
    """Each test starts with no in-memory books, account ids or fee tiers from an earlier test."""
    matching.local_books_clear()
    matching.accounts_cache_clear()
    fee_service.tiers_reset()
    markets_cache_clear()
    api_key_cache_clear()
    yield
    matching.local_books_clear()
    matching.accounts_cache_clear()
    fee_service.tiers_reset()
    markets_cache_clear()
    api_key_cache_clear()


def make_market(symbol="vaix", **kw):
    defaults = {"base_asset": symbol.upper(), "tick_size": "0.0001", "lot_size": "1", "min_order_size": "1"}
    defaults.update(kw)
    return market_upsert(symbol=symbol, **defaults)


def make_trader(name, *, funds=None, paper_funds=None, tier=None):
    trader, _ = trader_get_or_create(username=name, email=f"{name}@example.com", password="pw-" + name)
    if tier:
        trader.tier = tier
        trader.save(update_fields=["tier"])
    for mode, amounts in (("live", funds or {}), ("paper", paper_funds or {})):
        for asset, amount in amounts.items():
            trader_fund(
                trader=trader,
                asset=asset,
                amount=Decimal(str(amount)),
                mode=mode,
                idempotency_key=f"test-fund:{name}:{asset}:{mode}:{next(_keys)}",
            )
    return trader


@pytest.fixture
def market(db):
    return make_market()


@pytest.fixture
def alice(db):
    return make_trader("alice", funds={"USDC": 1000, "VAIX": 100000}, paper_funds={"USDC": 500, "VAIX": 50000})


@pytest.fixture
def bob(db):
    return make_trader("bob", funds={"USDC": 1000, "VAIX": 100000}, paper_funds={"USDC": 500, "VAIX": 50000})
