"""Models of the market-making engine.

State transitions go through ``trading.services``; models hold fields, constraints and tiny
derived properties. Money and prices are ``Decimal``/``NUMERIC``.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from exchanges.choices import Exchange
from mmsite.crypto import decrypt_json, encrypt_json
from mmsite.keys import HashedApiKey, HashedKeyQuerySet

from .choices import (
    OPEN_ORDER_STATUSES,
    ControlAction,
    FixtureStatus,
    MatchedStatus,
    OddsFormat,
    OrderStatus,
    SettlementStatus,
    SizingMode,
)


class Client(models.Model):
    """A trading entity. ``name`` is simple (``vertex``: the name is the bookmaker) or
    compound (``demo:vertex``: client ``demo`` hedging on bookmaker ``vertex``)."""

    name = models.CharField(max_length=128, unique=True)
    display_name = models.CharField(max_length=255, blank=True)
    odds_format = models.CharField(max_length=16, choices=OddsFormat.choices, default=OddsFormat.DECIMAL)
    hedge_bookmaker = models.ForeignKey(
        "hedging.Bookmaker", on_delete=models.PROTECT, related_name="clients", null=True, blank=True
    )
    quote_all_fixtures = models.BooleanField(
        default=False, help_text="Quote every fixture the feed sends (the demo client does)"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def bookmaker_code(self) -> str:
        """The bookmaker this client hedges on, from its name (``demo:vertex`` -> ``vertex``)."""
        return self.name.split(":", 1)[1] if ":" in self.name else self.name

    @property
    def client_name(self) -> str:
        return self.display_name or self.name


ApiKeyQuerySet = HashedKeyQuerySet


class ApiKey(HashedApiKey):
    """A client API key ``mm_<prefix>_<secret>`` (:class:`mmsite.keys.HashedApiKey`)."""

    SCHEME = "mm"

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="api_keys")

    class Meta:
        verbose_name = "client API key"

    def __str__(self) -> str:
        return f"mm_{self.prefix}… ({self.client})"


class ClientTradingState(models.Model):
    """Per-client controls (seed 000 /trading/*)."""

    client = models.OneToOneField(Client, on_delete=models.CASCADE, related_name="trading_state")
    manual_paused = models.BooleanField(default=False)
    manual_stopped = models.BooleanField(default=False)
    soft_paused = models.BooleanField(default=False)
    soft_pause_reason = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"trading state of {self.client}"


class SystemTradingState(models.Model):
    """The platform-wide switches; a single row (pk=1), read with ``SystemTradingState.get()``."""

    paused = models.BooleanField(default=False)
    stopped = models.BooleanField(default=False)
    emergency = models.BooleanField(default=False)
    reason = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="system_state_singleton")]

    def __str__(self) -> str:
        return "system trading state"

    @classmethod
    def get(cls) -> SystemTradingState:
        obj, _ = cls.objects.get_or_create(id=1)
        return obj


class TradingControlEvent(models.Model):
    """Who changed which control, when and why. ``client`` is null for system-wide actions."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, null=True, blank=True, related_name="control_events")
    action = models.CharField(max_length=32, choices=ControlAction.choices)
    actor = models.CharField(max_length=128, help_text="api:<key prefix>, admin:<username> or system")
    reason = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"


class ExchangeAccountQuerySet(models.QuerySet):
    def for_client(self, client: Client) -> ExchangeAccountQuerySet:
        return self.filter(client=client)


class ExchangeAccount(models.Model):
    """A client's account on a venue. Credentials are encrypted at rest and never rendered."""

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="accounts")
    exchange = models.CharField(max_length=32, choices=Exchange.choices)
    username = models.CharField(max_length=128)
    active = models.BooleanField(default=True)
    max_outcome_stake = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("1000"))
    balance = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("0"))
    credentials_encrypted = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ExchangeAccountQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "username"], name="account_unique_per_exchange"),
            models.CheckConstraint(condition=Q(max_outcome_stake__gte=0), name="account_max_stake_nonneg"),
            models.CheckConstraint(condition=Q(exchange__in=Exchange.values), name="account_exchange_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.username}"

    def set_credentials(self, credentials: dict | None) -> None:
        self.credentials_encrypted = encrypt_json(credentials) if credentials else ""

    def get_credentials(self) -> dict | None:
        return decrypt_json(self.credentials_encrypted)

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials_encrypted)


class Tournament(models.Model):
    """A competition, with the engine's quoting configuration for its fixtures."""

    tournament_id = models.BigIntegerField(unique=True, help_text="OddsPapi tournamentId")
    name = models.CharField(max_length=255)
    sport_id = models.IntegerField(default=10)
    sport_name = models.CharField(max_length=64, blank=True, default="")
    price_tick = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal("0.01"))
    edge = models.DecimalField(
        max_digits=6, decimal_places=4, default=Decimal("0.02"), help_text="Minimum edge in probability points"
    )
    min_price = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal("0.02"))
    max_price = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal("0.98"))
    sizing_mode = models.CharField(max_length=16, choices=SizingMode.choices, default=SizingMode.FIXED)
    fixed_stake = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("100"))
    limit_fraction = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal("0.1"))
    quote_in_play = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(price_tick__gt=0, price_tick__lt=1), name="tournament_tick_range"),
            models.CheckConstraint(
                condition=Q(
                    min_price__gte=Decimal("0.01"), max_price__lte=Decimal("0.99"), min_price__lt=F("max_price")
                ),
                name="tournament_price_bounds",
            ),
            models.CheckConstraint(condition=Q(edge__gte=0), name="tournament_edge_nonneg"),
            models.CheckConstraint(
                condition=Q(limit_fraction__gt=0, limit_fraction__lte=1), name="tournament_fraction_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Fixture(models.Model):
    """A sporting event, as the odds feed describes it. Fixtures are reference data shared by
    every client (like the feed itself); what a client did on them is scoped per client."""

    fixture_id = models.CharField(max_length=64, unique=True, help_text="Feed id, e.g. id1000000861624412")
    tournament = models.ForeignKey(Tournament, on_delete=models.PROTECT, related_name="fixtures", null=True, blank=True)
    sport_id = models.IntegerField(default=10)
    sport_name = models.CharField(max_length=64, blank=True, default="")
    participant1_name = models.CharField(max_length=255)
    participant2_name = models.CharField(max_length=255)
    start_time = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=16, choices=FixtureStatus.choices, default=FixtureStatus.NOT_STARTED)
    participant1_score = models.PositiveIntegerField(null=True, blank=True)
    participant2_score = models.PositiveIntegerField(null=True, blank=True)
    period_scores = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["start_time", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=FixtureStatus.values), name="fixture_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.participant1_name} v {self.participant2_name} ({self.fixture_id})"


class OrderQuerySet(models.QuerySet):
    def for_client(self, client: Client) -> OrderQuerySet:
        return self.filter(client=client)

    def open(self) -> OrderQuerySet:
        from .choices import OPEN_ORDER_STATUSES

        return self.filter(order_status__in=OPEN_ORDER_STATUSES)


class Order(models.Model):
    """An MM order on a venue (seed 000 'order' object).

    The row is written ``PENDING_PLACEMENT`` with a deterministic ``client_order_id`` before any
    venue call; the venue's id arrives as ``exchange_order_id``. ``order_stake`` and
    ``matched_stake`` are in contracts paying 1 unit each (see docs/api/mm-client.md).
    """

    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="orders")
    account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="orders")
    fixture = models.ForeignKey(Fixture, on_delete=models.PROTECT, related_name="orders")
    exchange = models.CharField(max_length=32, choices=Exchange.choices)
    outcome_id = models.IntegerField()
    player_id = models.IntegerField(default=0)
    client_order_id = models.CharField(max_length=96, unique=True)
    # NULL until the venue answers; unique per exchange once known (empty strings would collide).
    exchange_order_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    exchange_outcome_id = models.CharField(max_length=128, blank=True, default="")
    order_status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING_PLACEMENT)
    matched_status = models.CharField(max_length=20, choices=MatchedStatus.choices, default=MatchedStatus.NOT_MATCHED)
    order_cents = models.DecimalField(max_digits=6, decimal_places=4)
    order_stake = models.DecimalField(max_digits=18, decimal_places=4)
    matched_stake = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("0"))
    back = models.BooleanField(default=True)
    settlement_status = models.CharField(
        max_length=12, choices=SettlementStatus.choices, default=SettlementStatus.UNDECIDED
    )
    settled_at = models.DateTimeField(null=True, blank=True)
    bookmaker_outcome_price = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    bookmaker_outcome_limit = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    bookmaker_outcome_active = models.BooleanField(default=True)
    status_reason = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    matched_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = OrderQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["client", "-created_at", "-id"], name="order_client_created"),
            models.Index(fields=["client", "order_status"], name="order_client_status"),
            models.Index(fields=["client", "fixture"], name="order_client_fixture"),
            models.Index(fields=["client", "exchange"], name="order_client_exchange"),
            # GET /positions(/summary): the default 'active' set (a few percent of a client's orders)
            # read by an index-only scan instead of a scan of every order. The condition must stay
            # equal to trading.selectors.positions.POSITION_STATUS_Q["active"] (a test checks), so
            # that PostgreSQL can prove the query's WHERE implies it; 'open' alone is implied too.
            models.Index(
                fields=["client", "fixture", "outcome_id", "player_id", "exchange"],
                include=["order_stake", "matched_stake", "order_cents", "order_status", "created_at"],
                condition=Q(order_status__in=OPEN_ORDER_STATUSES)
                | (Q(matched_stake__gt=0) & Q(settlement_status=SettlementStatus.UNDECIDED)),
                name="order_active_position",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(order_cents__gte=Decimal("0.01"), order_cents__lte=Decimal("0.99")),
                name="order_cents_range",
            ),
            models.CheckConstraint(condition=Q(order_stake__gt=0), name="order_stake_positive"),
            models.CheckConstraint(
                condition=Q(matched_stake__gte=0, matched_stake__lte=F("order_stake")), name="order_matched_lte_stake"
            ),
            models.CheckConstraint(condition=Q(order_status__in=OrderStatus.values), name="order_status_valid"),
            models.CheckConstraint(condition=Q(matched_status__in=MatchedStatus.values), name="order_matched_valid"),
            models.CheckConstraint(
                condition=Q(settlement_status__in=SettlementStatus.values), name="order_settlement_valid"
            ),
            models.CheckConstraint(condition=Q(exchange__in=Exchange.values), name="order_exchange_valid"),
            models.UniqueConstraint(
                fields=["exchange", "exchange_order_id"],
                condition=Q(exchange_order_id__isnull=False),
                name="order_unique_venue_id",
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.pk} {self.side} {self.order_stake}@{self.order_cents} {self.order_status}"

    @property
    def side(self) -> str:
        return "buy" if self.back else "sell"

    @property
    def open_stake(self) -> Decimal:
        return self.order_stake - self.matched_stake


class FillQuerySet(models.QuerySet):
    def for_client(self, client: Client) -> FillQuerySet:
        return self.filter(client=client)


class Fill(models.Model):
    """One venue trade against one of our orders, unique per (exchange, venue trade id)."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="fills")
    exchange = models.CharField(max_length=32, choices=Exchange.choices)
    venue_trade_id = models.CharField(max_length=128)
    price = models.DecimalField(max_digits=6, decimal_places=4)
    stake = models.DecimalField(max_digits=18, decimal_places=4)
    source = models.CharField(max_length=16, default="stream", help_text="stream, poll or reconcile")
    matched_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = FillQuerySet.as_manager()

    class Meta:
        ordering = ["-matched_at", "-id"]
        indexes = [models.Index(fields=["client", "order"], name="fill_client_order")]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "venue_trade_id"], name="fill_unique_venue_trade"),
            models.CheckConstraint(condition=Q(stake__gt=0), name="fill_stake_positive"),
            models.CheckConstraint(
                condition=Q(price__gte=Decimal("0.01"), price__lte=Decimal("0.99")), name="fill_price_range"
            ),
        ]

    def __str__(self) -> str:
        return f"fill {self.venue_trade_id} {self.stake}@{self.price}"


#: A rollup component: an exact, unrounded sum. Products of NUMERIC(18,4) by NUMERIC(10,4), halved
#: for HALF_WON/HALF_LOST, have at most 9 decimal places; 10 keeps every such sum exact.
_PNL_SUM = {"max_digits": 38, "decimal_places": 10, "default": Decimal("0")}


class PnlDay(models.Model):
    """The rollup behind ``GET /pnl``: one client's PnL components over the fills whose ORDER was
    created on ``day`` (UTC), additive and unrounded, so that summing rows over a date range and
    then rounding gives exactly what the live query gives (``trading.selectors.pnl``).

    Derived data, written only by ``trading.services.pnl.pnl_days_refresh``. A row is current
    unless a ``PnlDirtyDay`` marker exists for the same (client, day); readers compute marked days
    live. Read only on PostgreSQL (on SQLite ``/pnl`` is always computed live)."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="pnl_days", db_index=False)
    day = models.DateField(help_text="UTC day the orders were created")
    total_turnover = models.DecimalField(**_PNL_SUM, help_text="Σ B over placed bets")
    valid_turnover = models.DecimalField(**_PNL_SUM, help_text="Σ min(B, B(o-1)) over placed bets")
    net_realized_spread = models.DecimalField(**_PNL_SUM, help_text="Σ fill + bet PnL over settled pairs")
    naked_pnl = models.DecimalField(**_PNL_SUM, help_text="Σ fill PnL over settled naked fills")
    unhedged_stake = models.DecimalField(**_PNL_SUM, help_text="Σ stake over naked fills")
    total_fill_stake = models.DecimalField(**_PNL_SUM, help_text="Σ stake over all fills")
    drift_weighted_sum = models.DecimalField(**_PNL_SUM, help_text="Σ B(bookmaker price - o) over drift bets")
    drift_weight = models.DecimalField(**_PNL_SUM, help_text="Σ B over drift bets")
    settled_pair_count = models.PositiveIntegerField(default=0)
    naked_settled_count = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name = "PnL day"
        ordering = ["client", "-day"]
        constraints = [models.UniqueConstraint(fields=["client", "day"], name="pnlday_unique_client_day")]

    def __str__(self) -> str:
        return f"PnL of {self.client} on {self.day}"


class PnlDirtyDay(models.Model):
    """A (client, day) whose ``PnlDay`` row is missing or stale.

    On PostgreSQL, row triggers on ``trading_order``, ``trading_fill`` and ``hedging_hedgebet``
    (migration 0003) upsert the marker on every write that can change that day's PnL, with a new
    ``generation`` from a sequence; the refresh deletes the marker only if its generation is still
    the one it read, so a write that commits during a refresh leaves the day marked."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField(help_text="UTC day the orders were created")
    generation = models.BigIntegerField(help_text="Bumped by every write; the refresh deletes only what it read")
    marked_at = models.DateTimeField(db_default=Now(), help_text="When the day was first marked since its refresh")

    class Meta:
        verbose_name = "PnL dirty day"
        ordering = ["client", "-day"]
        constraints = [models.UniqueConstraint(fields=["client", "day"], name="pnldirtyday_unique_client_day")]

    def __str__(self) -> str:
        return f"PnL of {self.client} on {self.day} (stale)"


# --- quoting: where the engine quotes, for whom, and the one live quote per key -----------------------------


class OutcomeMarket(models.Model):
    """Where a bookmaker outcome trades on a venue: (fixture, outcome, player, exchange) -> the
    venue's market id (``exchangeOutcomeId``). Reference data shared by every client, like
    fixtures; the engine quotes only outcomes that have one."""

    fixture = models.ForeignKey(Fixture, on_delete=models.CASCADE, related_name="outcome_markets")
    outcome_id = models.IntegerField()
    player_id = models.IntegerField(default=0)
    exchange = models.CharField(max_length=32, choices=Exchange.choices)
    exchange_outcome_id = models.CharField(max_length=128, help_text="The venue's market/outcome id")
    active = models.BooleanField(default=True, help_text="Quote this market (off: the engine cancels and skips it)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["fixture", "outcome_id", "player_id", "exchange"]
        constraints = [
            models.UniqueConstraint(
                fields=["fixture", "outcome_id", "player_id", "exchange"], name="outcomemarket_unique_key"
            ),
            models.CheckConstraint(condition=Q(exchange__in=Exchange.values), name="outcomemarket_exchange_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.fixture_id}:{self.outcome_id}:{self.player_id} on {self.exchange}: {self.exchange_outcome_id}"


class QuotingRule(models.Model):
    """Which fixtures an exchange account quotes. A rule with neither tournament nor fixture covers
    every fixture; ``Client.quote_all_fixtures`` covers every fixture for all the client's accounts."""

    account = models.ForeignKey(ExchangeAccount, on_delete=models.CASCADE, related_name="quoting_rules")
    tournament = models.ForeignKey(
        Tournament, on_delete=models.CASCADE, related_name="quoting_rules", null=True, blank=True
    )
    fixture = models.ForeignKey(Fixture, on_delete=models.CASCADE, related_name="quoting_rules", null=True, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(tournament__isnull=True) | Q(fixture__isnull=True), name="quotingrule_one_scope"
            ),
        ]

    def __str__(self) -> str:
        scope = self.fixture or self.tournament or "every fixture"
        return f"{self.account} quotes {scope}"


class LiveQuote(models.Model):
    """The quote key (client, exchange account, fixture, outcome, player), unique, and the order
    that is its live quote now (null: nothing resting). The engine locks this row for every
    decision on the key, so two price updates for one key are serialized and at most one order
    per key is open. ``seq`` numbers the key's orders (part of their client order ids)."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="live_quotes")
    account = models.ForeignKey(ExchangeAccount, on_delete=models.CASCADE, related_name="live_quotes")
    fixture = models.ForeignKey(Fixture, on_delete=models.CASCADE, related_name="live_quotes")
    outcome_id = models.IntegerField()
    player_id = models.IntegerField(default=0)
    order = models.OneToOneField(Order, on_delete=models.SET_NULL, related_name="live_quote", null=True, blank=True)
    seq = models.PositiveIntegerField(default=0, help_text="Orders written for this key so far")
    last_action = models.CharField(max_length=16, blank=True, default="")
    last_reason = models.CharField(max_length=64, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "fixture", "outcome_id", "player_id"], name="livequote_unique_key"
            ),
        ]

    def __str__(self) -> str:
        return f"quote {self.account} {self.fixture_id}:{self.outcome_id}:{self.player_id}"


class PlacementAttempt(models.Model):
    """How many times a place was *sent* for an order, committed before each venue call. An order
    still PENDING_PLACEMENT with ``sent`` > 0 may be at the venue: the next step asks the venue
    (``order_status`` by client order id) before anything is sent again."""

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="placement_attempt")
    sent = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return f"placement of order {self.order_id}: {self.sent} sent"
