"""Query-parameter filters of ``/positions``, ``/positions/summary`` and ``/pnl`` (seed 000, steps 4-5).

Position statuses are named sets of orders, not order statuses; they are defined once in
``trading.selectors.positions`` (see docs/api/mm-positions-pnl.md) and combined as a union.
Bad values are 400s naming the parameter (``apply_filters``).
"""

from __future__ import annotations

import django_filters as df

from exchanges.choices import Exchange
from mmsite.api.errors import invalid_parameter
from trading.selectors.positions import DEFAULT_POSITION_STATUS, POSITION_STATUS_Q, position_status_q

from .filters import ChoiceInFilter, DateRangeMixin


class PositionFilter(DateRangeMixin):
    """Filters over the client's orders; ``fromDate``/``toDate`` are on the order's created date."""

    fixtureId = df.CharFilter(field_name="fixture__fixture_id", help_text="Fixture id")
    exchange = df.ChoiceFilter(choices=Exchange.choices, help_text="Exchange code, e.g. polymarket")
    status = ChoiceInFilter(
        method="filter_status",
        choices=[(name, name) for name in POSITION_STATUS_Q],
        help_text="Comma-separated: open, matched, filled, cancelled, active (default active); several = union",
    )

    def __init__(self, data=None, *args, **kwargs):
        # ``status`` absent or empty means the default set, which still has to be applied.
        if data is not None and not data.get("status"):
            data = data.copy()
            data["status"] = DEFAULT_POSITION_STATUS
        super().__init__(data, *args, **kwargs)

    def filter_status(self, queryset, name, value):
        if any(not v for v in value):  # "open,,active": the choice field lets the empty item through
            raise invalid_parameter("status", "empty value in the comma-separated list")
        return queryset.filter(position_status_q(list(value)))


class PnlFilter(DateRangeMixin):
    """Only the date range, on the created date of the fill's ORDER (seed: 'orders created on or after')."""

    date_field = "order__created_at"
