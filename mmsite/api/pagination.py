"""The MM client API's page envelope: ``{data, total, page, pageSize, totalPages}`` (seed 000).

Unlike DRF's page-number pagination, bad values are refused (400 naming the parameter) rather
than silently clamped, and a page past the end is an empty page, not an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from .errors import invalid_parameter

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 2000


def parse_positive_int(params: Any, name: str, *, default: int, maximum: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    raw = str(raw).strip()
    if not raw.isdigit():
        raise invalid_parameter(name, f"must be a positive integer, got {raw!r}")
    value = int(raw)
    if value < 1:
        raise invalid_parameter(name, "must be at least 1")
    if maximum is not None and value > maximum:
        raise invalid_parameter(name, f"must be at most {maximum}")
    return value


@dataclass(frozen=True)
class PageRequest:
    page: int
    page_size: int

    @classmethod
    def from_params(cls, params: Any, *, max_page_size: int = MAX_PAGE_SIZE) -> PageRequest:
        return cls(
            page=parse_positive_int(params, "page", default=1),
            page_size=parse_positive_int(params, "pageSize", default=DEFAULT_PAGE_SIZE, maximum=max_page_size),
        )

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


def paginate(
    queryset: QuerySet,
    page: PageRequest,
    render: Callable[[Sequence[Any]], list[dict[str, Any]]],
    *,
    fetch: Callable[[QuerySet], Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Count, slice and render one page of ``queryset`` into the envelope.

    With ``fetch``, the page's primary keys are a sliced subquery (an index-only walk past the
    OFFSET, when an index covers the filter and order) and ``fetch(pk_subquery)`` loads just those
    rows in one statement, in ``queryset``'s order: deep pages cost little more than the first.
    """
    total = queryset.count()
    rows: Sequence[Any] = []
    if page.offset < total:
        window = slice(page.offset, page.offset + page.page_size)
        rows = fetch(queryset.values("pk")[window]) if fetch else list(queryset[window])
    return {
        "data": render(rows),
        "total": total,
        "page": page.page,
        "pageSize": page.page_size,
        "totalPages": math.ceil(total / page.page_size) if total else 0,
    }
