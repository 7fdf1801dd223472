"""Withdrawals asked for through the exchange API (``POST /{symbol}/withdraw``).

The funds are held first (``withdrawal:<id>``, recorded with the ``ExchangeWithdrawal`` row), then the
request is handed to the brokerage through ``settings.EXCHANGE_WITHDRAWAL_HANDLER`` (a dotted path to
``callable(*, trader, asset, amount, address, mode, hold) -> dict``), in the same transaction: the
handler's refusal (an exception with a 4xx ``status`` and a ``message``) undoes the hold and the row and
is answered as ``withdrawal_refused``. With no handler configured the hold stays and the request stays
``pending`` for an operator (docs/api/exchange.md, "Withdrawals"). When the brokerage finishes the
withdrawal it was handed, it reports back (:func:`withdrawal_finished`) and the row follows.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from exchanges.errors import Codes, ExchangeError
from exchanges.ledger import services as ledger
from exchanges.ledger.choices import QUANTUM
from exchanges.ledger.exceptions import InsufficientFunds
from exchanges.models import ExchangeWithdrawal, Market, Trader, WithdrawalStatus

from .matching import trader_account
from .orders import decimal_param, mode_check

MAX_DESTINATION = 128


def _handler():
    path = getattr(settings, "EXCHANGE_WITHDRAWAL_HANDLER", "") or ""
    return import_string(path) if path else None


def withdrawal_request(
    *,
    trader: Trader,
    market: Market,
    amount: Any,
    destination: Any,
    asset: str | None = None,
    mode: str = "live",
) -> ExchangeWithdrawal:
    mode = mode_check(mode)
    amt = decimal_param(amount, name="amount", code=Codes.INVALID_AMOUNT)
    if amt % QUANTUM != 0:
        raise ExchangeError(Codes.INVALID_AMOUNT, f"amount has more than 8 decimal places: {amt}", parameter="amount")
    if not isinstance(destination, str) or not destination.strip() or len(destination) > MAX_DESTINATION:
        raise ExchangeError(
            Codes.INVALID_DESTINATION, "destination must be a wallet address string", parameter="destination"
        )
    asset = (asset or market.base_asset).upper() if isinstance(asset, str | type(None)) else None
    if asset not in (market.base_asset, market.quote_asset):
        raise ExchangeError(
            Codes.INVALID_PARAMETER,
            f"asset must be {market.base_asset} or {market.quote_asset} on this pair",
            parameter="asset",
        )
    handler = _handler()
    withdrawal_id = "wd_" + secrets.token_hex(8)
    account = trader_account(trader_id=trader.pk, asset=asset, mode=mode)
    with transaction.atomic():
        try:
            hold = ledger.hold_place(account=account, amount=amt, reference=f"withdrawal:{withdrawal_id}")
        except InsufficientFunds as exc:
            raise ExchangeError(
                Codes.INSUFFICIENT_BALANCE, f"insufficient {asset} balance: available {exc.available}, asked {amt}"
            ) from exc
        w = ExchangeWithdrawal.objects.create(
            withdrawal_id=withdrawal_id,
            trader=trader,
            market=market,
            asset=asset,
            amount=amt,
            destination=destination.strip(),
            mode=mode,
            hold=hold,
        )
        if handler is not None:
            try:
                response = handler(trader=trader, asset=asset, amount=amt, address=w.destination, mode=mode, hold=hold)
            except Exception as exc:
                status = getattr(exc, "status", None)
                if isinstance(status, int) and 400 <= status < 500:
                    raise ExchangeError("withdrawal_refused", str(getattr(exc, "message", exc)), status=status) from exc
                raise
            w.handler_response = _jsonable(response)
            w.status = WithdrawalStatus.SUBMITTED
            w.save(update_fields=["handler_response", "status", "updated_at"])
    return w


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def withdrawal_finished(*, hold_id: int, status: str) -> int:
    """The brokerage finished the withdrawal that holds ``hold_id`` (paid out: ``completed``; cancelled by
    the user: ``cancelled``): the exchange's row, if the withdrawal came through the exchange, follows, in
    the caller's transaction. Returns the number of rows changed (0: not an exchange withdrawal, or
    already final)."""
    if status not in (WithdrawalStatus.COMPLETED, WithdrawalStatus.CANCELLED):
        raise ValueError(f"not a final withdrawal status: {status!r}")
    from django.utils import timezone

    return ExchangeWithdrawal.objects.filter(
        hold_id=hold_id, status__in=[WithdrawalStatus.PENDING, WithdrawalStatus.SUBMITTED]
    ).update(status=status, updated_at=timezone.now())
