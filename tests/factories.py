"""factory_boy factories for every model the tests need, one place for all apps."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory
from django.utils import timezone

from exchanges.choices import Exchange
from hedging.choices import BetStatus
from hedging.models import Bookmaker, HedgeBet
from trading.choices import FixtureStatus, MatchedStatus, OrderStatus
from trading.models import Client, ClientTradingState, ExchangeAccount, Fill, Fixture, Order, Tournament
from trading.services.clients import api_key_create


class BookmakerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Bookmaker
        django_get_or_create = ("name",)

    name = "vertex"
    display_name = "Vertex"
    simulated = True


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client
        django_get_or_create = ("name",)
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"client{n}:vertex")
    display_name = factory.LazyAttribute(lambda o: o.name.split(":")[0].title())
    hedge_bookmaker = factory.SubFactory(BookmakerFactory)
    trading_state = factory.RelatedFactory("tests.factories.ClientTradingStateFactory", factory_related_name="client")


class ClientTradingStateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ClientTradingState
        django_get_or_create = ("client",)


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExchangeAccount

    client = factory.SubFactory(ClientFactory)
    exchange = Exchange.POLYMARKET
    username = factory.Sequence(lambda n: f"0x{n:040x}")
    max_outcome_stake = Decimal("1000")
    balance = Decimal("50000")


class TournamentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tournament
        django_get_or_create = ("tournament_id",)

    tournament_id = factory.Sequence(lambda n: 17 + n)
    name = factory.Sequence(lambda n: f"League {n}")
    sport_id = 10
    sport_name = "Soccer"


class FixtureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Fixture
        django_get_or_create = ("fixture_id",)

    fixture_id = factory.Sequence(lambda n: f"id{1000000861624412 + n}")
    tournament = factory.SubFactory(TournamentFactory)
    sport_id = 10
    sport_name = "Soccer"
    participant1_name = factory.Sequence(lambda n: f"Home {n}")
    participant2_name = factory.Sequence(lambda n: f"Away {n}")
    start_time = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=1))
    status = FixtureStatus.NOT_STARTED


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    account = factory.SubFactory(AccountFactory)
    client = factory.LazyAttribute(lambda o: o.account.client)
    fixture = factory.SubFactory(FixtureFactory)
    exchange = factory.LazyAttribute(lambda o: o.account.exchange)
    outcome_id = 161
    player_id = 0
    client_order_id = factory.Sequence(lambda n: f"mm-test-{n}")
    exchange_order_id = factory.Sequence(lambda n: f"0xorder{n}")
    exchange_outcome_id = "12345678"
    order_status = OrderStatus.PLACED
    matched_status = MatchedStatus.NOT_MATCHED
    order_cents = Decimal("0.45")
    order_stake = Decimal("100")
    matched_stake = Decimal("0")
    back = True
    bookmaker_outcome_price = Decimal("1.808")
    bookmaker_outcome_limit = Decimal("5000")
    bookmaker_outcome_active = True


class FillFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Fill

    order = factory.SubFactory(OrderFactory)
    client = factory.LazyAttribute(lambda o: o.order.client)
    exchange = factory.LazyAttribute(lambda o: o.order.exchange)
    venue_trade_id = factory.Sequence(lambda n: f"trade-{n}")
    price = factory.LazyAttribute(lambda o: o.order.order_cents)
    stake = Decimal("100")


class HedgeBetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = HedgeBet

    fill = factory.SubFactory(FillFactory)
    order = factory.LazyAttribute(lambda o: o.fill.order)
    client = factory.LazyAttribute(lambda o: o.fill.client)
    bookmaker = factory.LazyAttribute(lambda o: o.fill.client.hedge_bookmaker)
    idempotency_key = factory.Sequence(lambda n: f"hedge-{n}")
    bookmaker_bet_id = factory.Sequence(lambda n: str(789 + n))
    placed_price = Decimal("1.808")
    placed_stake = Decimal("100")
    bet_status = BetStatus.PLACED
    placed_at = factory.LazyFunction(timezone.now)


def make_api_key(client: Client) -> str:
    """A new raw key for ``client``."""
    return api_key_create(client=client)[1]


def place_resting_order(*, account: ExchangeAccount | None = None, **fields) -> Order:
    """An Order row PLACED with its twin resting on the simulated venue (``exchange_order_id`` set),
    so that cancels, stops and fills run against a real venue book. ``fields`` go to OrderFactory."""
    import uuid

    from exchanges.connectors.base import PlaceRequest
    from exchanges.connectors.registry import get_connector

    account = account or AccountFactory()
    coid = fields.pop("client_order_id", None) or f"mm-sim-{uuid.uuid4().hex[:20]}"
    venue_order = get_connector(account.exchange).place(
        PlaceRequest(
            client_order_id=coid,
            account=account.username,
            market=fields.get("exchange_outcome_id", "12345678"),
            side="buy" if fields.get("back", True) else "sell",
            price=fields.get("order_cents", Decimal("0.45")),
            size=fields.get("order_stake", Decimal("100")),
        )
    )
    return OrderFactory(account=account, client_order_id=coid, exchange_order_id=venue_order.venue_order_id, **fields)


class OutcomeMarketFactory(factory.django.DjangoModelFactory):
    """Where an outcome trades on a venue (the engine quotes only outcomes that have one)."""

    class Meta:
        model = "trading.OutcomeMarket"

    fixture = factory.SubFactory(FixtureFactory)
    outcome_id = 161
    player_id = 0
    exchange = Exchange.POLYMARKET
    exchange_outcome_id = factory.Sequence(lambda n: f"tok-{n}")


class QuotingRuleFactory(factory.django.DjangoModelFactory):
    """An account quoting a tournament (or a fixture, or everything)."""

    class Meta:
        model = "trading.QuotingRule"

    account = factory.SubFactory(AccountFactory)
    tournament = None
    fixture = None
