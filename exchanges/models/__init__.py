"""The ``exchanges`` app's models, one module per area (each helper/area owns its module).

- ``venue``: the simulated venue's own book (its side of the truth)
- ``traders``: traders of the house exchange and their API keys
- ``markets``: pairs and the fee schedule; ``orders``: orders, trades, book state, withdrawals
- the ledger's models live in ``exchanges.ledger.models`` and are re-exported here
"""

from exchanges.ledger.models import Hold, LedgerAccount, LedgerTransaction, Posting

from .algos import DeadMansSwitch, TwapOrder, TwapSlice, TwapSliceStatus, TwapStatus
from .markets import FeeTier, Market, MarketKind, MarketStatus
from .orders import (
    LIVE_STATUSES,
    BookState,
    ExchangeOrder,
    ExchangeTrade,
    ExchangeWithdrawal,
    OrderSide,
    OrderStatus,
    OrderType,
    WithdrawalStatus,
)
from .traders import Trader, TraderApiKey, TraderApiKeyQuerySet, TraderTier
from .venue import SimVenueOrder, SimVenueOrderStatus, SimVenueTrade

__all__ = [
    "DeadMansSwitch",
    "TwapOrder",
    "TwapSlice",
    "TwapSliceStatus",
    "TwapStatus",
    "LIVE_STATUSES",
    "BookState",
    "ExchangeOrder",
    "ExchangeTrade",
    "ExchangeWithdrawal",
    "FeeTier",
    "Market",
    "MarketKind",
    "MarketStatus",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "WithdrawalStatus",
    "Hold",
    "LedgerAccount",
    "LedgerTransaction",
    "Posting",
    "SimVenueOrder",
    "SimVenueOrderStatus",
    "SimVenueTrade",
    "Trader",
    "TraderApiKey",
    "TraderApiKeyQuerySet",
    "TraderTier",
]
