"""Query-parameter filters of the MM client API (django-filter), in the seed's camelCase.

Bad values are errors, never ignored: ``apply_filters`` raises a 400 naming the parameter.
Dates are whole UTC days: ``fromDate`` is inclusive from 00:00, ``toDate`` inclusive to 24:00,
turned into a half-open datetime range so the ``created_at`` index is used.
"""

from __future__ import annotations

import datetime as dt

import django_filters as df
from django import forms
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError

from exchanges.choices import Exchange
from hedging.choices import BetStatus
from trading.choices import FixtureStatus, OrderStatus

DATE_FORMATS = ["%Y-%m-%d"]
#: Largest value a BIGINT column holds; larger ids would overflow the database driver (a 500).
MAX_ID = 2**63 - 1


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


class ChoiceInFilter(df.BaseInFilter, df.ChoiceFilter):
    """Comma-separated list of choices, each validated (``status=PLACED,FILLED``)."""


class StrictIntegerField(forms.IntegerField):
    """An integer and nothing else: ``1.5``, ``1e3`` and ``0x10`` are refused, not coerced."""

    def to_python(self, value):
        if value not in self.empty_values and not str(value).strip().lstrip("-").isdigit():
            raise forms.ValidationError(f"must be an integer, got {value!r}", code="invalid")
        return super().to_python(value)


class IntegerFilter(df.NumberFilter):
    field_class = StrictIntegerField


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
    orderId = IntegerFilter(field_name="order_id", min_value=1, max_value=MAX_ID, help_text="Bets of this order")
    bookmaker = df.CharFilter(field_name="bookmaker__name", help_text="Bookmaker code, e.g. vertex")
    status = ChoiceInFilter(
        field_name="bet_status", choices=BetStatus.choices, help_text="Comma-separated bet statuses"
    )


class FixtureFilter(DateRangeMixin):
    """Fixtures by state, sport, tournament and start day (``fromDate``/``toDate`` on the start time)."""

    date_field = "start_time"

    status = ChoiceInFilter(
        field_name="status", choices=FixtureStatus.choices, help_text="Comma-separated fixture statuses"
    )
    sportId = IntegerFilter(field_name="sport_id", min_value=0, max_value=2**31 - 1, help_text="Sport id, e.g. 10")
    tournamentId = IntegerFilter(
        field_name="tournament__tournament_id", min_value=0, max_value=MAX_ID, help_text="Tournament id"
    )


class AccountFilter(df.FilterSet):
    exchange = df.ChoiceFilter(choices=Exchange.choices, help_text="Exchange code")


def apply_filters(filterset_class: type[df.FilterSet], params, queryset: QuerySet) -> QuerySet:
    """Validate ``params`` with ``filterset_class`` and return the filtered queryset (400 on error)."""
    filterset = filterset_class(data=params, queryset=queryset)
    if not filterset.is_valid():
        raise ValidationError({name: [str(e) for e in errs] for name, errs in filterset.errors.items()})
    return filterset.qs


def _openapi_type(f: df.Filter):
    if isinstance(f, df.DateFilter):
        return OpenApiTypes.DATE
    if isinstance(f, df.NumberFilter):
        return OpenApiTypes.INT
    return OpenApiTypes.STR


def filter_parameters(filterset_class: type[df.FilterSet]) -> list[OpenApiParameter]:
    """OpenAPI query parameters of a FilterSet, so the schema documents exactly what is accepted.

    (drf-spectacular's django-filter extension needs a model-bound generic view; ours are APIViews.)
    """
    params = []
    for name, f in filterset_class.base_filters.items():
        description = str(f.extra.get("help_text", ""))
        choices = f.extra.get("choices")
        enum = None
        if choices:
            values = [value for value, _ in choices]
            if isinstance(f, df.BaseInFilter):
                description = f"{description}. Values: {', '.join(values)}"
            else:
                enum = values
        params.append(OpenApiParameter(name, _openapi_type(f), description=description, enum=enum))
    return params
