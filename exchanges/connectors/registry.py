"""Which connector serves which exchange.

``settings.VENUE_CONNECTORS`` maps an exchange code to a dotted path of a ``VenueConnector`` class
(``"*"`` is the default for every other exchange). Until the real Polymarket, Kalshi and Betfair
connectors land, the default serves every exchange from the simulated venue, so that the same
code paths (place, cancel, fills) run end to end.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import VenueConnector

DEFAULT = {"*": "exchanges.connectors.simulated.SimulatedVenueConnector"}


@cache
def _connector(exchange: str, dotted: str) -> VenueConnector:
    return import_string(dotted)(exchange)


def get_connector(exchange: str) -> VenueConnector:
    mapping = {**DEFAULT, **getattr(settings, "VENUE_CONNECTORS", {})}
    return _connector(exchange, mapping.get(exchange, mapping["*"]))
