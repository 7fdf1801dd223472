"""The ``exchanges`` app's models, one module per area (each helper/area owns its module).

- ``venue``: the simulated venue's own book (its side of the truth)
- ``traders``: traders of the house exchange and their API keys
- the ledger's models live in ``exchanges.ledger.models`` and are re-exported here
"""

from exchanges.ledger.models import Hold, LedgerAccount, LedgerTransaction, Posting

from .traders import Trader, TraderApiKey, TraderApiKeyQuerySet, TraderTier
from .venue import SimVenueOrder, SimVenueOrderStatus, SimVenueTrade

__all__ = [
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
