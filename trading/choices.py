"""Status values of the MM engine, defined once (seed 000/001 spell them)."""

from django.db import models


class OrderStatus(models.TextChoices):
    PENDING_PLACEMENT = "PENDING_PLACEMENT"
    PLACED = "PLACED"
    FILLED = "FILLED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


#: Orders that may still rest on (or be on their way to) a venue.
OPEN_ORDER_STATUSES = (OrderStatus.PENDING_PLACEMENT, OrderStatus.PLACED)


class MatchedStatus(models.TextChoices):
    NOT_MATCHED = "NOT_MATCHED"
    PARTIALLY_MATCHED = "PARTIALLY_MATCHED"
    FULLY_MATCHED = "FULLY_MATCHED"


class SettlementStatus(models.TextChoices):
    UNDECIDED = "UNDECIDED"
    WON = "WON"
    LOST = "LOST"
    VOID = "VOID"
    HALF_WON = "HALF_WON"
    HALF_LOST = "HALF_LOST"


class OddsFormat(models.TextChoices):
    DECIMAL = "decimal"
    AMERICAN = "american"
    FRACTIONAL = "fractional"


class FixtureStatus(models.TextChoices):
    NOT_STARTED = "not_started"
    LIVE = "live"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    POSTPONED = "postponed"
    INTERRUPTED = "interrupted"
    ABANDONED = "abandoned"


class SizingMode(models.TextChoices):
    FIXED = "fixed", "Fixed stake"
    LIMIT_FRACTION = "limit_fraction", "Fraction of bookmaker limit"


class TradingStatus(models.TextChoices):
    """The derived summary state of ``GET /trading/status`` (seed 000)."""

    LIVE = "live"
    MANUAL_PAUSED = "manual_paused"
    MANUAL_STOPPED = "manual_stopped"
    SOFT_PAUSED = "soft_paused"
    SYSTEM_STOPPED = "system_stopped"
    EMERGENCY = "emergency"


class ControlAction(models.TextChoices):
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    START = "start"
    SOFT_PAUSE = "soft_pause"
    SOFT_RESUME = "soft_resume"
    SYSTEM_PAUSE = "system_pause"
    SYSTEM_STOP = "system_stop"
    SYSTEM_RESUME = "system_resume"
    EMERGENCY_ON = "emergency_on"
    EMERGENCY_OFF = "emergency_off"
