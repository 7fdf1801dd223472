"""A trader's own data on the exchange: orders, fills, balances. Every query is scoped to the trader."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import F, Q

from exchanges.ledger.choices import OwnerType
from exchanges.models import LIVE_STATUSES, ExchangeOrder, ExchangeTrade, LedgerAccount, Market, Trader


def open_orders(*, trader: Trader, market: Market, mode: str) -> list[ExchangeOrder]:
    return list(
        ExchangeOrder.objects.for_trader(trader)
        .filter(market=market, mode=mode, status__in=LIVE_STATUSES)
        .select_related("market")
        .order_by("created_at", "id")
    )


def order_history(
    *, trader: Trader, market: Market, mode: str | None, limit: int, offset: int
) -> tuple[list[ExchangeOrder], int]:
    qs = ExchangeOrder.objects.for_trader(trader).filter(market=market)
    if mode is not None:
        qs = qs.filter(mode=mode)
    total = qs.count()
    rows = list(qs.select_related("market").order_by("-created_at", "-id")[offset : offset + limit])
    return rows, total


def my_trades(*, trader: Trader, market: Market, mode: str | None, limit: int) -> list[ExchangeTrade]:
    qs = ExchangeTrade.objects.filter(Q(taker_trader=trader) | Q(maker_trader=trader), market=market)
    if mode is not None:
        qs = qs.filter(mode=mode)
    return list(qs.select_related("market", "taker_order", "maker_order").order_by("-created_at", "-id")[:limit])


def taker_fills(*, order: ExchangeOrder) -> list[ExchangeTrade]:
    return list(
        ExchangeTrade.objects.filter(Q(taker_order=order) | Q(maker_order=order))
        .select_related("market", "taker_order", "maker_order")
        .order_by("trade_no")
    )


def balances(*, trader: Trader, assets: list[str], mode: str) -> dict[str, dict[str, Decimal]]:
    """``{asset: {"total", "available", "locked"}}`` for ``assets`` (zero for an asset never funded)."""
    out = {a.upper(): {"total": Decimal("0"), "available": Decimal("0"), "locked": Decimal("0")} for a in assets}
    rows = LedgerAccount.objects.filter(
        owner_type=OwnerType.TRADER, owner_id=str(trader.pk), mode=mode, asset__in=list(out)
    ).values("asset", "balance", "held", available=F("balance") - F("held"))
    for r in rows:
        out[r["asset"]] = {"total": r["balance"], "available": r["available"], "locked": r["held"]}
    return out
