"""``manage.py fund_broker NAME AMOUNT [--key KEY]``: the platform credits a broker with DCT.

One ledger transaction from the outside world to the broker's balance, recorded as a ``funding``
transfer. ``--key`` makes it idempotent (running the command again with the same key credits once);
without one every run is a new credit.
"""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError

from brokers.amounts import AmountError, parse_amount
from brokers.errors import BrokerError
from brokers.models import Broker
from brokers.services.brokers import broker_fund


class Command(BaseCommand):
    help = "Credit the broker NAME with AMOUNT DCT from the platform."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("amount")
        parser.add_argument("--key", default=None, help="idempotency key (default: a new one)")
        parser.add_argument("--memo", default="")

    def handle(self, *args, name: str, amount: str, key: str | None, memo: str, **options) -> None:
        broker = Broker.objects.filter(name=name).first()
        if broker is None:
            raise CommandError(f"no broker named {name!r}")
        try:
            value = parse_amount(amount)
            t = broker_fund(
                broker=broker,
                amount=value,
                idempotency_key=key or f"command:{uuid.uuid4()}",
                actor="command:fund_broker",
                memo=memo,
            )
        except (AmountError, BrokerError) as exc:
            raise CommandError(str(exc)) from exc
        broker.account.refresh_from_db()
        self.stdout.write(f"transfer {t.pk}: {t.amount} {t.asset} to {broker.name}; balance {broker.account.balance}")
