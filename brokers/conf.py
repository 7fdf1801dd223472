"""The brokerage's settings with their defaults (read at call time, so tests can override them)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings


def asset() -> str:
    """The brokerage's currency (the seed's DCT)."""
    return getattr(settings, "BROKER_ASSET", "DCT")


def cooling_period() -> timedelta:
    return timedelta(seconds=getattr(settings, "BROKER_WITHDRAWAL_COOLING_SECONDS", 300))


def withdrawal_fee_bps() -> Decimal:
    return Decimal(str(getattr(settings, "BROKER_WITHDRAWAL_FEE_BPS", 100)))


def otc_timeout_hours() -> int:
    return int(getattr(settings, "BROKER_OTC_TIMEOUT_HOURS", 24))


def sso_max_token_lifetime() -> timedelta:
    """A token whose ``exp`` is further away than this is refused (a replay window must be short)."""
    return timedelta(seconds=getattr(settings, "BROKER_SSO_MAX_TOKEN_LIFETIME_SECONDS", 3600))


def sso_leeway_seconds() -> int:
    return int(getattr(settings, "BROKER_SSO_LEEWAY_SECONDS", 0))
