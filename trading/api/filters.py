"""Query-parameter filters of the MM client API (django-filter), in the seed's camelCase.

Bad values are errors, never ignored: ``apply_filters`` raises a 400 naming the parameter.
Dates are whole UTC days: ``fromDate`` is inclusive from 00:00, ``toDate`` inclusive to 24:00,
turned into a half-open datetime range so the ``created_at`` index is used.
"""

from __future__ import annotations

import datetime as dt

import django_filters as df
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError

from exchanges.choices import Exchange
from hedging.choices import BetStatus
from trading.choices import OrderStatus

DATE_FORMATS = ["%Y-%m-%d"]


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


class ChoiceInFilter(df.BaseInFilter, df.ChoiceFilter):
    """Comma-separated list of choices, each validated (``status=PLACED,FILLED``)."""


class DateRangeMixin(df.FilterSet):
    fromDate = df.DateFilter(method="filter_from", input_formats=DATE_FORMATS, help_text="YYYY-MM-DD, inclusive")
    toDate = df.DateFilter(method="filter_to", input_formats=DATE_FORMATS, help_text="YYYY-MM-DD, inclusive")

    date_field = "created_at"

    def filter_from(self, queryset, name, value):
        return queryset.filter(**{f"{self.date_field}__gte": day_start(value)})

    def filter_to(self, queryset, name, value):
        return queryset.filter(**{f"{self.date_field}__lt": day_start(value + dt.timedelta(days=1))})

    def is_valid(self) -> bool:
        valid = super().is_valid()
        if valid:
            start, end = self.form.cleaned_data.get("fromDate"), self.form.cleaned_data.get("toDate")
            if start and end and start > end:
                self.form.add_error("fromDate", "must not be after toDate")
                return False
        return valid


class OrderFilter(DateRangeMixin):
    fixtureId = df.CharFilter(field_name="fixture__fixture_id", help_text="Fixture id")
    exchange = df.ChoiceFilter(choices=Exchange.choices, help_text="Exchange code, e.g. polymarket")
    status = ChoiceInFilter(
        field_name="order_status", choices=OrderStatus.choices, help_text="Comma-separated order statuses"
    )


class OpenOrderFilter(df.FilterSet):
    fixtureId = df.CharFilter(field_name="fixture__fixture_id", help_text="Fixture id")
    exchange = df.ChoiceFilter(choices=Exchange.choices, help_text="Exchange code")


class BetFilter(DateRangeMixin):
    orderId = df.NumberFilter(field_name="order_id", min_value=1, help_text="Bets of this order")
    bookmaker = df.CharFilter(field_name="bookmaker__name", help_text="Bookmaker code, e.g. vertex")
    status = ChoiceInFilter(
        field_name="bet_status", choices=BetStatus.choices, help_text="Comma-separated bet statuses"
    )


def apply_filters(filterset_class: type[df.FilterSet], params, queryset: QuerySet) -> QuerySet:
    """Validate ``params`` with ``filterset_class`` and return the filtered queryset (400 on error)."""
    filterset = filterset_class(data=params, queryset=queryset)
    if not filterset.is_valid():
        raise ValidationError({name: [str(e) for e in errs] for name, errs in filterset.errors.items()})
    return filterset.qs
