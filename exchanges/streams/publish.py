"""The one door from the matching service to the exchange streams.

The matching service calls :func:`publish` after its transaction commits (``transaction.on_commit``)
with the events of that transaction, in order. Event shapes (all amounts ``Decimal``, times aware
``datetime``):

- ``{"type": "book", "symbol", "mode", "sequence", "bids": [(price, qty), ...], "asks": [...]}``:
  the levels that changed, with their new total quantity (``0`` = level gone); ``sequence`` grows by
  one per book change of that (symbol, mode), with no gaps
- ``{"type": "trade", "symbol", "mode", "trade_id", "price", "quantity", "taker_side", "timestamp"}``
- ``{"type": "order", "trader_id", "mode", "order": {...}}``: the order as the REST API renders it
- ``{"type": "fill", "trader_id", "mode", "fill": {...}}``: one side of a trade, as ``trades/mine``
- ``{"type": "balance", "trader_id", "mode", "asset", "available", "locked"}``

Routing them to WebSocket groups, conflation (``bbo``) and rendering to the seed's wire format are
this package's job; the matching service knows nothing of Channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def publish(events: Sequence[dict[str, Any]]) -> None:
    """Route ``events`` to the stream groups. Contract placeholder: the streams work fills this in."""
    return None
