"""``manage.py create_trader`` and the exchange part of ``seed_demo``."""

from __future__ import annotations

import io
from decimal import Decimal as D

import pytest
from django.core.management import CommandError, call_command

from exchanges.api.authentication import authenticate_api_key
from exchanges.ledger.selectors import owner_balances
from exchanges.models import ExchangeOrder, Market, Trader
from exchanges.services.demo import exchange_demo_seed


def run(*args) -> list[str]:
    out = io.StringIO()
    call_command("create_trader", *args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_creates_funds_and_prints_a_working_key_on_the_last_line(db):
    lines = run(
        "bot1",
        "--fund",
        "USDC=1000",
        "--paper-fund",
        "USDC=500",
        "--paper-fund",
        "VAIX=100000",
        "--tier",
        "market_maker",
        "--email",
        "bot1@example.com",
        "--password",
        "pw",
    )
    trader = Trader.objects.get(user__username="bot1")
    assert trader.tier == "market_maker" and trader.user.check_password("pw")
    assert authenticate_api_key(lines[-1]) == trader and lines[-1].startswith("evt_")
    # run again: the same deposits are not made twice, a new key is printed
    lines2 = run("bot1", "--fund", "USDC=1000", "--paper-fund", "USDC=500", "--paper-fund", "VAIX=100000")
    assert lines2[-1] != lines[-1] and authenticate_api_key(lines2[-1]) == trader
    live = {r["asset"]: r["balance"] for r in owner_balances(owner_type="trader", owner_id=str(trader.pk), mode="live")}
    paper = {
        r["asset"]: r["balance"] for r in owner_balances(owner_type="trader", owner_id=str(trader.pk), mode="paper")
    }
    assert live == {"USDC": D("1000")} and paper == {"USDC": D("500"), "VAIX": D("100000")}
    run("bot1", "--fund", "USDC=1000", "--deposit-id", "topup-1")
    live = {r["asset"]: r["balance"] for r in owner_balances(owner_type="trader", owner_id=str(trader.pk), mode="live")}
    assert live == {"USDC": D("2000")}


@pytest.mark.parametrize("bad", ["USDC", "USDC=abc", "USDC=-5", "=5"])
def test_bad_fund_arguments_are_refused(db, bad):
    with pytest.raises(CommandError):
        run("bot2", "--fund", bad)


def test_exchange_demo_seed_is_idempotent_and_quotes_both_modes(db):
    first = exchange_demo_seed()
    assert first["markets"] == 4 and first["orders"] == 80
    assert set(Market.objects.values_list("symbol", flat=True)) >= {"vaix", "sbio", "btc", "eth"}
    assert exchange_demo_seed() == {"markets": 0, "orders": 0}
    assert ExchangeOrder.objects.live().filter(mode="paper").count() == 40
    call_command("ledger_check", stdout=io.StringIO())
