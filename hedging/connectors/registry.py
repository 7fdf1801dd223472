"""Which connector serves which bookmaker.

``settings.BOOKMAKER_CONNECTORS`` maps a bookmaker code to the dotted path of a
``BookmakerConnector`` class (``"*"`` is the default). A bookmaker whose row says ``simulated``
always goes to the simulated bookmaker. Connectors are built once per process and bookmaker.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import BookmakerConnector

SIMULATED = "hedging.connectors.simulated.SimulatedBookmaker"
DEFAULT = {"*": SIMULATED}


@cache
def _connector(dotted: str) -> BookmakerConnector:
    return import_string(dotted)()


def get_bookmaker_connector(bookmaker: str, *, simulated: bool = False) -> BookmakerConnector:
    if simulated:
        return _connector(SIMULATED)
    mapping = {**DEFAULT, **getattr(settings, "BOOKMAKER_CONNECTORS", {})}
    return _connector(mapping.get(bookmaker, mapping["*"]))
