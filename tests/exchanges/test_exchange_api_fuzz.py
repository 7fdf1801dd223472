"""Property-based fuzzing of the exchange API from its own OpenAPI document (schemathesis).

Every generated request, valid or not, must get an answer that is not a 5xx, and a request that is
refused (4xx) must leave every ledger balance and hold exactly as it was. Runs in-process against the
WSGI app on the test database, with the demo pairs, a funded trader and its key; the ``symbol`` and
``order_id`` path parameters are often swapped for real ones so the handlers' real paths are reached.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from exchanges.models import ExchangeOrder, Hold, LedgerAccount
from exchanges.services.demo import exchange_demo_seed
from exchanges.services.traders import trader_key_create

from .conftest import make_trader


@pytest.fixture
def fuzz_key(db, settings):
    settings.EXCHANGE_WITHDRAWAL_HANDLER = ""  # the brokerage's handler is not under test here
    settings.EXCHANGE_RATE_LIMITS = {
        "standard": {
            "public_per_minute": 10**9,
            "authenticated_per_minute": 10**9,
            "orders_per_second_per_pair": 10**9,
            "orders_per_minute": 10**9,
        }
    }
    exchange_demo_seed()
    trader = make_trader("fuzzer", funds={"USDC": 10_000, "VAIX": 1_000_000}, paper_funds={"USDC": 10_000})
    return trader_key_create(trader=trader)[1]


@pytest.fixture
def keep_test_connection():
    """The WSGI app's request signals would close the test transaction's connection (PostgreSQL)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def ledger_state():
    return (
        sorted(LedgerAccount.objects.values_list("pk", "balance", "held")),
        sorted(Hold.objects.values_list("pk", "remaining", "status")),
    )


schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application()).include(
    path_regex=r"^/(api/v1/exchange/|auth/)"
)


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_is_a_server_error_and_no_refusal_moves_money(case, fuzz_key, keep_test_connection):
    params = case.path_parameters or {}
    if "symbol" in params and hash(str(case.body)) % 4 != 0:
        params["symbol"] = "vaix"
    if "order_id" in params and hash(str(case.query)) % 2 == 0:
        order = ExchangeOrder.objects.filter(trader__user__username="fuzzer").first() or ExchangeOrder.objects.first()
        if order is not None:
            params["order_id"] = order.order_id
    before = ledger_state()
    response = case.call(headers={"X-API-Key": fuzz_key})
    case.validate_response(response, checks=[not_a_server_error])
    if 400 <= response.status_code < 500:
        assert ledger_state() == before, f"{case.method} {case.formatted_path} -> {response.status_code} moved money"
        body = response.json()
        assert isinstance(body.get("error"), dict) and body["error"].get("code") and body["error"].get("message")
