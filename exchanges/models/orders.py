"""Orders, trades and per-book state of the house exchange.

Rows change only through ``exchanges.services.matching`` (one writer per ``(market, mode)`` book at a
time, see docs/exchange-matching.md). An order row also carries what the in-memory book needs to be
rebuilt exactly after a restart: its open and displayed quantity, its submission number and its place
in the queue (``book_sub_no``, ``book_arrival``). ``BookState`` holds the book's counters.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q

from exchanges.ledger.choices import Mode

from .markets import _dec


class OrderSide(models.TextChoices):
    BUY = "buy"
    SELL = "sell"


class OrderType(models.TextChoices):
    LIMIT = "limit"
    MARKET = "market"
    IOC = "ioc"
    FOK = "fok"
    POST_ONLY = "post_only"
    STOP_LIMIT = "stop_limit"
    STOP_MARKET = "stop_market"


class OrderStatus(models.TextChoices):
    OPEN = "open"  # resting, nothing filled yet
    PARTIALLY_FILLED = "partially_filled"  # resting, some filled
    WAITING_TRIGGER = "waiting_trigger"  # a stop order off the book, waiting for its trigger price
    FILLED = "filled"
    CANCELLED = "cancelled"  # by the owner, by STP, or the unfilled rest of ioc/market/fok
    EXPIRED = "expired"  # good-till-time reached


#: Statuses of orders that are live in the book (resting or waiting for a trigger).
LIVE_STATUSES = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.WAITING_TRIGGER)


class ExchangeOrderQuerySet(models.QuerySet):
    def for_trader(self, trader) -> ExchangeOrderQuerySet:
        """The one tenant scope of orders: a trader sees only its own."""
        return self.filter(trader=trader)

    def live(self) -> ExchangeOrderQuerySet:
        return self.filter(status__in=LIVE_STATUSES)


class ExchangeOrder(models.Model):
    # Unique through the constraint below rather than ``unique=True``: the same unique index without the
    # extra ``varchar_pattern_ops`` index Django adds for LIKE queries (never run on order ids). Every order
    # write maintains each index of this table, so it has only those its queries need.
    order_id = models.CharField(max_length=40, help_text="public id, ord_<hex>")
    client_order_id = models.CharField(max_length=64, blank=True, default="")
    # No index of its own: ``xorder_trader_hist`` starts with the trader.
    trader = models.ForeignKey(
        "exchanges.Trader", on_delete=models.PROTECT, related_name="exchange_orders", db_index=False
    )
    market = models.ForeignKey("exchanges.Market", on_delete=models.PROTECT, related_name="orders")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.LIVE)
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    order_type = models.CharField(max_length=16, choices=OrderType.choices)
    book_type = models.CharField(max_length=16, help_text="type in the book (a triggered stop becomes limit/market)")
    price = _dec(null=True, blank=True)
    stop_price = _dec(null=True, blank=True)
    quantity = _dec(help_text="total size (an amend changes it)")
    filled_quantity = _dec(default=Decimal("0"))
    filled_notional = _dec(default=Decimal("0"), help_text="sum of fill price x fill quantity (quote)")
    open_quantity = _dec(help_text="still open in the book")
    visible_quantity = _dec(default=Decimal("0"), help_text="displayed in the book (icebergs show a slice)")
    display_qty = _dec(null=True, blank=True)
    stp_mode = models.CharField(max_length=24)
    expire_at = models.BigIntegerField(null=True, blank=True, help_text="good-till-time, epoch microseconds")
    fees_paid = _dec(default=Decimal("0"))
    fee_asset = models.CharField(max_length=16, blank=True, default="")
    status = models.CharField(max_length=20, choices=OrderStatus.choices)
    cancel_reason = models.CharField(max_length=24, blank=True, default="")
    # Never looked up by hold (holds are never deleted): no index.
    hold = models.ForeignKey(
        "exchanges.Hold", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    amend_count = models.PositiveIntegerField(default=0)
    book_sub_no = models.BigIntegerField(default=0)
    book_arrival = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ExchangeOrderQuerySet.as_manager()

    class Meta:
        indexes = [
            # Rebuilding a book, and the book's levels in SQL: live orders of one (market, mode).
            models.Index(
                fields=["market", "mode", "side", "price"],
                name="xorder_live_book",
                condition=Q(status__in=["open", "partially_filled", "waiting_trigger"]),
            ),
            models.Index(fields=["trader", "market", "mode", "-created_at"], name="xorder_trader_hist"),
            models.Index(
                fields=["expire_at"],
                name="xorder_gtt_due",
                condition=Q(status__in=["open", "partially_filled", "waiting_trigger"], expire_at__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["order_id"], name="xorder_order_id_unique"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="xorder_qty_pos"),
            models.CheckConstraint(
                condition=Q(filled_quantity__gte=0, open_quantity__gte=0, visible_quantity__gte=0),
                name="xorder_parts_nonneg",
            ),
            models.CheckConstraint(condition=Q(filled_quantity__lte=models.F("quantity")), name="xorder_filled_le_qty"),
            models.UniqueConstraint(
                fields=["trader", "client_order_id"],
                condition=~Q(client_order_id=""),
                name="xorder_client_order_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.side} {self.quantity}@{self.price} {self.status}"

    @property
    def remaining_quantity(self) -> Decimal:
        return self.open_quantity if self.status in LIVE_STATUSES else Decimal("0")

    @property
    def avg_fill_price(self) -> Decimal | None:
        if not self.filled_quantity:
            return None
        return self.filled_notional / self.filled_quantity


class ExchangeTrade(models.Model):
    """One fill between a taker and a maker order, at the maker's price; settled in the same transaction."""

    trade_id = models.CharField(max_length=64, unique=True)
    market = models.ForeignKey("exchanges.Market", on_delete=models.PROTECT, related_name="trades")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.LIVE)
    trade_no = models.BigIntegerField(help_text="consecutive per (market, mode) book")
    price = _dec()
    quantity = _dec()
    taker_side = models.CharField(max_length=4, choices=OrderSide.choices)
    taker_order = models.ForeignKey(ExchangeOrder, on_delete=models.PROTECT, related_name="taker_trades")
    maker_order = models.ForeignKey(ExchangeOrder, on_delete=models.PROTECT, related_name="maker_trades")
    taker_trader = models.ForeignKey("exchanges.Trader", on_delete=models.PROTECT, related_name="+")
    maker_trader = models.ForeignKey("exchanges.Trader", on_delete=models.PROTECT, related_name="+")
    taker_fee = _dec(default=Decimal("0"))
    maker_fee = _dec(default=Decimal("0"))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["market", "mode", "trade_no"], name="xtrade_book_no"),
            models.CheckConstraint(condition=Q(price__gt=0, quantity__gt=0), name="xtrade_pos"),
        ]
        indexes = [
            models.Index(fields=["market", "mode", "-created_at"], name="xtrade_recent"),
            models.Index(fields=["taker_trader", "market", "-created_at"], name="xtrade_taker"),
            models.Index(fields=["maker_trader", "market", "-created_at"], name="xtrade_maker"),
        ]

    def __str__(self) -> str:
        return f"{self.trade_id} {self.quantity}@{self.price}"

    @property
    def notional(self) -> Decimal:
        return self.price * self.quantity


class BookState(models.Model):
    """The counters of one (market, mode) book, and its lock: the matching service holds this row
    ``FOR UPDATE`` for the whole of every command on the book (one writer per book at a time).

    ``stamp`` changes with every command; a process whose in-memory book carries another stamp
    rebuilds it from the database before using it.
    """

    market = models.ForeignKey("exchanges.Market", on_delete=models.PROTECT, related_name="book_states")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.LIVE)
    sequence = models.BigIntegerField(default=0, help_text="last book delta sequence (streams)")
    trade_no = models.BigIntegerField(default=0)
    counter = models.BigIntegerField(default=0, help_text="the book's submission/arrival counter")
    last_price = _dec(null=True, blank=True)
    clock = models.BigIntegerField(null=True, blank=True, help_text="largest expiry clock, epoch microseconds")
    stamp = models.CharField(max_length=32, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["market", "mode"], name="book_state_key")]

    def __str__(self) -> str:
        return f"book {self.market_id}/{self.mode} seq {self.sequence}"


class WithdrawalStatus(models.TextChoices):
    PENDING = "pending"  # funds held, waiting for the brokerage (or an operator)
    SUBMITTED = "submitted"  # handed to the brokerage's withdrawal flow
    COMPLETED = "completed"  # the brokerage paid it out (platform or OTC broker)
    REJECTED = "rejected"
    CANCELLED = "cancelled"  # the user cancelled it in the brokerage during its cooling period


class ExchangeWithdrawal(models.Model):
    """A withdrawal asked for through the exchange API: the funds are held under ``withdrawal:<id>``
    before the request is handed on (EXCHANGE_WITHDRAWAL_HANDLER)."""

    withdrawal_id = models.CharField(max_length=40, unique=True)
    trader = models.ForeignKey("exchanges.Trader", on_delete=models.PROTECT, related_name="exchange_withdrawals")
    market = models.ForeignKey("exchanges.Market", on_delete=models.PROTECT, related_name="+")
    asset = models.CharField(max_length=16)
    amount = _dec()
    destination = models.CharField(max_length=128)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.LIVE)
    status = models.CharField(max_length=16, choices=WithdrawalStatus.choices, default=WithdrawalStatus.PENDING)
    hold = models.ForeignKey("exchanges.Hold", on_delete=models.PROTECT, related_name="+")
    handler_response = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="xwithdrawal_amount_pos")]

    def __str__(self) -> str:
        return f"{self.withdrawal_id} {self.amount} {self.asset} {self.status}"
