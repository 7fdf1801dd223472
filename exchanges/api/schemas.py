"""Serializers that document the exchange API's bodies in the OpenAPI document.

The views validate through the services (which name the exact error code); these describe the shapes.
Decimals travel as strings, as in the seed.
"""

from __future__ import annotations

from rest_framework import serializers


class ExchangeErrorBody(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    parameter = serializers.CharField(required=False)
    retry_after = serializers.IntegerField(required=False)


class ExchangeErrorSchema(serializers.Serializer):
    error = ExchangeErrorBody()


class ExchangePlaceOrderRequest(serializers.Serializer):
    side = serializers.ChoiceField(choices=["buy", "sell"])
    quantity = serializers.CharField(help_text="base quantity, a decimal string")
    price = serializers.CharField(required=False, help_text="limit price (required for limit orders)")
    order_type = serializers.ChoiceField(
        choices=["limit", "market", "ioc", "fok", "post_only", "stop_limit", "stop_market"], required=False
    )
    stop_price = serializers.CharField(required=False)
    mode = serializers.ChoiceField(choices=["live", "paper"], required=False)
    display_qty = serializers.CharField(required=False, help_text="iceberg: shown quantity")
    expire_at = serializers.IntegerField(required=False, help_text="good-till-time, epoch microseconds")
    time_in_force_ms = serializers.IntegerField(required=False)
    stp_mode = serializers.ChoiceField(
        choices=["cancel_resting", "cancel_incoming", "cancel_both", "decrement_and_cancel", "cancel_taker"],
        required=False,
    )
    client_order_id = serializers.CharField(required=False, max_length=64)


class ExchangeOrderSchema(serializers.Serializer):
    order_id = serializers.CharField()
    id = serializers.CharField()
    client_order_id = serializers.CharField(allow_null=True)
    symbol = serializers.CharField()
    mode = serializers.CharField()
    side = serializers.CharField()
    order_type = serializers.CharField()
    price = serializers.CharField(allow_null=True)
    stop_price = serializers.CharField(allow_null=True)
    quantity = serializers.CharField()
    filled_quantity = serializers.CharField()
    remaining_quantity = serializers.CharField()
    avg_fill_price = serializers.CharField(allow_null=True)
    display_qty = serializers.CharField(allow_null=True)
    expire_at = serializers.IntegerField(allow_null=True)
    stp_mode = serializers.CharField()
    status = serializers.CharField(
        help_text="open, partially_filled, waiting_trigger (stops), filled, cancelled or expired"
    )
    cancel_reason = serializers.CharField(allow_null=True)
    fees_paid = serializers.CharField()
    fee_asset = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ExchangeFillSchema(serializers.Serializer):
    trade_id = serializers.CharField()
    id = serializers.CharField()
    order_id = serializers.CharField()
    symbol = serializers.CharField()
    mode = serializers.CharField()
    side = serializers.CharField()
    role = serializers.ChoiceField(choices=["maker", "taker"])
    price = serializers.CharField()
    quantity = serializers.CharField()
    fee = serializers.CharField()
    fee_asset = serializers.CharField()
    timestamp = serializers.DateTimeField()


class ExchangePlacedOrderSchema(ExchangeOrderSchema):
    fills = ExchangeFillSchema(many=True)


class ExchangeOrderListSchema(serializers.Serializer):
    orders = ExchangeOrderSchema(many=True)


class ExchangeOrderHistorySchema(ExchangeOrderListSchema):
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()


class ExchangeFillListSchema(serializers.Serializer):
    trades = ExchangeFillSchema(many=True)


class ExchangeBatchPlaceRequest(serializers.Serializer):
    orders = ExchangePlaceOrderRequest(many=True, help_text="at most 10")


class ExchangeBatchCancelRequest(serializers.Serializer):
    order_ids = serializers.ListField(child=serializers.CharField(), help_text="at most 10")
    mode = serializers.ChoiceField(choices=["live", "paper"], required=False)


class ExchangeBatchResultItem(serializers.Serializer):
    index = serializers.IntegerField()
    success = serializers.BooleanField()
    order = ExchangeOrderSchema(required=False)
    order_id = serializers.CharField(required=False)
    error = ExchangeErrorBody(required=False)


class ExchangeBatchResultSchema(serializers.Serializer):
    total = serializers.IntegerField()
    successful = serializers.IntegerField()
    failed = serializers.IntegerField()
    results = ExchangeBatchResultItem(many=True)


class ExchangeAmendRequest(serializers.Serializer):
    price = serializers.CharField(required=False)
    quantity = serializers.CharField(required=False, help_text="new total size, filled part included")


class ExchangeCancelAllSchema(serializers.Serializer):
    cancelled = serializers.IntegerField()
    orders = ExchangeOrderSchema(many=True)


class ExchangeWithdrawRequest(serializers.Serializer):
    amount = serializers.CharField()
    destination = serializers.CharField(max_length=128)
    asset = serializers.CharField(required=False, help_text="base (default) or quote asset of the pair")
    mode = serializers.ChoiceField(choices=["live", "paper"], required=False)


class ExchangeWithdrawalSchema(serializers.Serializer):
    withdrawal_id = serializers.CharField()
    status = serializers.CharField()
    asset = serializers.CharField()
    amount = serializers.CharField()
    destination = serializers.CharField()
    mode = serializers.CharField()
    created_at = serializers.DateTimeField()


class ExchangeBalanceItem(serializers.Serializer):
    asset = serializers.CharField()
    total = serializers.CharField()
    available = serializers.CharField()
    locked = serializers.CharField()


class ExchangeBalanceSchema(serializers.Serializer):
    symbol = serializers.CharField()
    mode = serializers.CharField()
    base_asset = serializers.CharField()
    quote_asset = serializers.CharField()
    base_available = serializers.CharField()
    quote_available = serializers.CharField()
    balances = ExchangeBalanceItem(many=True)


class ExchangePairSchema(serializers.Serializer):
    symbol = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    base_symbol = serializers.CharField()
    quote_symbol = serializers.CharField()
    tick_size = serializers.CharField()
    lot_size = serializers.CharField()
    min_order_size = serializers.CharField()
    min_price = serializers.CharField(allow_null=True)
    max_price = serializers.CharField(allow_null=True)
    maker_fee_bps = serializers.CharField()
    taker_fee_bps = serializers.CharField()
    status = serializers.CharField()
    chain = serializers.CharField()
    base_address = serializers.CharField()
    quote_address = serializers.CharField()
    fixture_ref = serializers.CharField()
    outcome_ref = serializers.CharField()


class ExchangeMarketSchema(ExchangePairSchema):
    price = serializers.CharField(allow_null=True)
    volume_24h = serializers.CharField()
    quote_volume_24h = serializers.CharField()
    change_24h_pct = serializers.CharField(allow_null=True)
    liquidity = serializers.CharField()
    market_cap = serializers.CharField(allow_null=True)


class ExchangeStatsSchema(serializers.Serializer):
    symbol = serializers.CharField()
    price = serializers.CharField(allow_null=True)
    supply = serializers.CharField(allow_null=True)
    market_cap = serializers.CharField(allow_null=True)
    volume_24h = serializers.CharField()
    quote_volume_24h = serializers.CharField()
    high_24h = serializers.CharField(allow_null=True)
    low_24h = serializers.CharField(allow_null=True)
    change_24h = serializers.CharField(allow_null=True)
    change_24h_pct = serializers.CharField(allow_null=True)
    trades_24h = serializers.IntegerField()


class ExchangeCandleSchema(serializers.Serializer):
    timestamp = serializers.IntegerField(help_text="bucket start, epoch seconds")
    open = serializers.CharField()
    high = serializers.CharField()
    low = serializers.CharField()
    close = serializers.CharField()
    volume = serializers.CharField()


class ExchangeChartSchema(serializers.Serializer):
    symbol = serializers.CharField()
    interval = serializers.CharField()
    candles = ExchangeCandleSchema(many=True)


class ExchangeVenueSchema(serializers.Serializer):
    venue = serializers.CharField()
    chain = serializers.CharField(allow_null=True)
    bid_liquidity = serializers.CharField()
    ask_liquidity = serializers.CharField()
    bid_value = serializers.CharField()
    ask_value = serializers.CharField()
    share_pct = serializers.CharField()


class ExchangeVenuesSchema(serializers.Serializer):
    symbol = serializers.CharField()
    venues = ExchangeVenueSchema(many=True)


class ExchangeBookSchema(serializers.Serializer):
    symbol = serializers.CharField()
    mode = serializers.CharField()
    sequence = serializers.IntegerField()
    bids = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))
    asks = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))
    timestamp = serializers.DateTimeField()


class ExchangeHybridLevel(serializers.Serializer):
    price = serializers.CharField()
    size = serializers.CharField()
    clob_size = serializers.CharField()
    amm_size = serializers.CharField()
    source = serializers.CharField(help_text="clob, amm or clob+amm")


class ExchangeHybridBookSchema(serializers.Serializer):
    symbol = serializers.CharField()
    mode = serializers.CharField()
    sequence = serializers.IntegerField()
    sources = serializers.ListField(child=serializers.CharField())
    amm_configured = serializers.BooleanField()
    bids = ExchangeHybridLevel(many=True)
    asks = ExchangeHybridLevel(many=True)
    timestamp = serializers.DateTimeField()


class ExchangeBboSchema(serializers.Serializer):
    symbol = serializers.CharField()
    best_bid = serializers.CharField(allow_null=True)
    best_bid_size = serializers.CharField(allow_null=True)
    best_ask = serializers.CharField(allow_null=True)
    best_ask_size = serializers.CharField(allow_null=True)
    spread = serializers.CharField(allow_null=True)
    mid = serializers.CharField(allow_null=True)
    sequence = serializers.IntegerField()
    timestamp = serializers.DateTimeField()


class ExchangePublicTradeSchema(serializers.Serializer):
    trade_id = serializers.CharField()
    price = serializers.CharField()
    quantity = serializers.CharField()
    side = serializers.CharField()
    venue = serializers.CharField()
    timestamp = serializers.DateTimeField()


class ExchangeTradesSchema(serializers.Serializer):
    symbol = serializers.CharField()
    trades = ExchangePublicTradeSchema(many=True)


class ExchangeTickerSchema(serializers.Serializer):
    symbol = serializers.CharField()
    last_price = serializers.CharField(allow_null=True)
    open_24h = serializers.CharField(allow_null=True)
    high_24h = serializers.CharField(allow_null=True)
    low_24h = serializers.CharField(allow_null=True)
    volume_24h = serializers.CharField()
    quote_volume_24h = serializers.CharField()
    change_24h = serializers.CharField(allow_null=True)
    change_24h_pct = serializers.CharField(allow_null=True)
    best_bid = serializers.CharField(allow_null=True)
    best_ask = serializers.CharField(allow_null=True)
    timestamp = serializers.DateTimeField()


class ExchangeTimeSchema(serializers.Serializer):
    server_time = serializers.DateTimeField()
    timestamp = serializers.IntegerField(help_text="epoch milliseconds")
    timestamp_us = serializers.IntegerField(help_text="epoch microseconds (the unit of expire_at)")


class ExchangeFeeTierSchema(serializers.Serializer):
    name = serializers.CharField()
    min_volume_30d = serializers.CharField()
    trader_tier = serializers.CharField(allow_null=True)
    maker_fee_bps = serializers.CharField()
    taker_fee_bps = serializers.CharField()


class ExchangeFeeScheduleSchema(serializers.Serializer):
    tiers = ExchangeFeeTierSchema(many=True)


class ExchangeMyFeesSchema(serializers.Serializer):
    tier = serializers.CharField()
    maker_fee_bps = serializers.CharField()
    taker_fee_bps = serializers.CharField()
    volume_30d = serializers.CharField()
    next_tier = serializers.CharField(allow_null=True)
    next_tier_volume = serializers.CharField(allow_null=True)


class ExchangeKillSwitchSchema(serializers.Serializer):
    cancelled = serializers.IntegerField()
    order_ids = serializers.ListField(child=serializers.CharField())


class ExchangeLoginRequest(serializers.Serializer):
    email = serializers.CharField()
    password = serializers.CharField()


class ExchangeRefreshRequest(serializers.Serializer):
    refresh_token = serializers.CharField()


class ExchangeUserSchema(serializers.Serializer):
    id = serializers.CharField()
    email = serializers.CharField()
    username = serializers.CharField()
    tier = serializers.CharField()


class ExchangeTokenSchema(serializers.Serializer):
    access_token = serializers.CharField()
    refresh_token = serializers.CharField()
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField()
    user = ExchangeUserSchema()


class ExchangeOkSchema(serializers.Serializer):
    ok = serializers.BooleanField()
