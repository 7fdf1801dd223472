"""Venues the platform trades on. One definition, used by models, serializers, filters and tests."""

from django.db import models


class Exchange(models.TextChoices):
    POLYMARKET = "polymarket", "Polymarket"
    POLYMARKET_US = "polymarket_us", "Polymarket US"
    KALSHI = "kalshi", "Kalshi"
    NOVIG = "novig", "Novig.us"
    SXBET = "sxbet", "SX.bet"
    BETFAIR = "betfair", "Betfair"
    PROPHETX = "prophetx", "ProphetX"
    MATCHBOOK = "matchbook", "Matchbook"
    SMARKETS = "smarkets", "Smarkets"
    FOURCASTERS = "4casters", "4casters"
    PREDICTFUN = "predictfun", "Predict.fun"
    SIMULATED = "simulated", "Simulated venue"
