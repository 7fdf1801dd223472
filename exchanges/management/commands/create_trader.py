"""``manage.py create_trader NAME --fund ASSET=AMOUNT … [--paper-fund ASSET=AMOUNT …] [--tier T]
[--email E --password P]``: make sure a trader of the house exchange exists, fund it, print a new key.

Funding is a ledger deposit from the outside world per asset and mode, under the idempotency key
``create_trader:<trader id>:<mode>:<ASSET>:<amount>[:<deposit-id>]``: running the same command twice
deposits once (a script may be re-run safely); pass ``--deposit-id`` to top up again on purpose.
The new API key is printed alone on the last line (``tail -n 1``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from exchanges.ledger.exceptions import LedgerError
from exchanges.models import TraderTier
from exchanges.services.traders import trader_fund, trader_get_or_create, trader_key_create


def _fund_arg(raw: str) -> tuple[str, Decimal]:
    asset, sep, amount = raw.partition("=")
    if not sep or not asset.strip():
        raise CommandError(f"expected ASSET=AMOUNT, got {raw!r}")
    try:
        value = Decimal(amount.strip())
    except InvalidOperation:
        raise CommandError(f"{raw!r}: {amount!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise CommandError(f"{raw!r}: the amount must be positive")
    return asset.strip().upper(), value


class Command(BaseCommand):
    help = "Create the trader NAME if absent, fund its live/paper balances, print a new API key on the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="username of the trader")
        parser.add_argument("--fund", action="append", default=[], metavar="ASSET=AMOUNT", help="live deposit")
        parser.add_argument("--paper-fund", action="append", default=[], metavar="ASSET=AMOUNT", help="paper deposit")
        parser.add_argument("--tier", choices=TraderTier.values, default=None, help="rate-limit and fee tier")
        parser.add_argument("--email", default="", help="email (login with /auth/login)")
        parser.add_argument("--password", default=None, help="password for a new trader (login)")
        parser.add_argument("--deposit-id", default="", help="make these deposits new ones (a top-up)")
        parser.add_argument("--key-name", default="create_trader", help="label stored with the new key")

    def handle(self, *args, name, fund, paper_fund, tier, email, password, deposit_id, key_name, **options) -> None:
        funds = [("live", *_fund_arg(f)) for f in fund] + [("paper", *_fund_arg(f)) for f in paper_fund]
        if password and not email:
            raise CommandError("--password needs --email (the login is by email)")
        try:
            trader, created = trader_get_or_create(username=name, email=email, password=password)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if tier and trader.tier != tier:
            trader.tier = tier
            trader.save(update_fields=["tier"])
        if email and trader.user.email != email:
            trader.user.email = email
            trader.user.save(update_fields=["email"])
        self.stdout.write(f"trader {name} (id {trader.pk}) {'created' if created else 'exists'}, tier {trader.tier}")
        for mode, asset, amount in funds:
            key = f"create_trader:{trader.pk}:{mode}:{asset}:{amount}" + (f":{deposit_id}" if deposit_id else "")
            try:
                trader_fund(trader=trader, asset=asset, amount=amount, mode=mode, idempotency_key=key)
            except LedgerError as exc:
                raise CommandError(f"{asset}={amount} ({mode}): {exc}") from exc
            self.stdout.write(f"  {mode} {asset} +{amount} (deposit {key})")
        key, raw = trader_key_create(trader=trader, name=key_name)
        self.stdout.write(f"new API key evt_{key.prefix}… (shown once, store it now):")
        self.stdout.write(raw)
