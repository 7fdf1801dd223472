from django.db import models


class BetStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PLACED = "placed", "Placed"
    DECLINED = "declined", "Declined"


class BetSettlementStatus(models.TextChoices):
    """Lower-case, as the seed's bet object shows (orders use upper case)."""

    UNDECIDED = "undecided", "Undecided"
    WON = "won", "Won"
    LOST = "lost", "Lost"
    VOID = "void", "Void"
    HALF_WON = "half_won", "Half won"
    HALF_LOST = "half_lost", "Half lost"
