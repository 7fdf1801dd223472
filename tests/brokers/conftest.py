"""Fixtures of the brokerage tests: brokers with keys, funded balances, clients.

``make_broker(name, parent=None, scopes=ALL, wallet=...)`` returns ``(broker, raw_key)``; ``api_for(raw)``
a DRF client sending it; ``fund(broker, amount)`` credits a broker from the platform.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from brokers.choices import ALL_SCOPES
from brokers.services import brokers as broker_services

_seq = itertools.count(1)
WALLET_A = "0x" + "a1" * 20
WALLET_B = "0x" + "b2" * 20
USER_WALLET = "0x" + "c3" * 20


def make_broker(name=None, *, parent=None, scopes=ALL_SCOPES, wallet=WALLET_A, tenant_code=None):
    broker = broker_services.broker_create(
        name=name or f"broker-{next(_seq)}", parent=parent, wallet_address=wallet or "", tenant_code=tenant_code
    )
    _key, raw = broker_services.broker_key_create(broker=broker, scopes=scopes)
    return broker, raw


def api_for(raw_key: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_X_API_KEY=raw_key)
    return c


def fund(broker, amount) -> None:
    broker_services.broker_fund(broker=broker, amount=Decimal(str(amount)), idempotency_key=f"fund:{next(_seq)}")


def balance(account) -> tuple[Decimal, Decimal]:
    account.refresh_from_db()
    return account.balance, account.held


@pytest.fixture
def acme(db):
    """A white-label broker with every scope and a bound wallet, funded with 1000 DCT: ``(broker, api)``."""
    broker, raw = make_broker("acme")
    fund(broker, "1000")
    return broker, api_for(raw)


@pytest.fixture
def rival(db):
    """Another white-label broker (a second tenant): ``(broker, api)``."""
    broker, raw = make_broker("rival", wallet=WALLET_B)
    fund(broker, "1000")
    return broker, api_for(raw)
