"""Base view of the broker API: key auth, scopes, a per-broker rate limit, the seed's error shape."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import JSONParser, ParseError
from rest_framework.views import APIView

from brokers.amounts import AmountError, parse_amount
from brokers.errors import BrokerError
from brokers.models import Broker
from mmsite.api.throttling import FixedWindowThrottle

from .authentication import BrokerKeyAuthentication, BrokerPrincipal, HasBrokerScope

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class BrokerAPIError(exceptions.APIException):
    """A :class:`~brokers.errors.BrokerError` as a DRF exception (rendered ``{"error": ...}``)."""

    def __init__(self, message: str, *, status_code: int, extra: dict | None = None) -> None:
        super().__init__(detail=message)
        self.status_code = status_code
        self.extra = extra or {}


class DecimalJSONParser(JSONParser):
    """JSON numbers with a fraction become ``Decimal``, never ``float`` (money stays exact)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            data = stream.read().decode(encoding) if stream is not None else ""
            return json.loads(data, parse_float=Decimal) if data else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


class BrokerRateThrottle(FixedWindowThrottle):
    scope = "broker"

    def get_rate(self) -> int:
        return getattr(settings, "BROKER_API_RATE_PER_MINUTE", 1200)

    def get_ident(self, request, view) -> str | None:
        principal = request.user
        return str(principal.broker.pk) if isinstance(principal, BrokerPrincipal) else None


class BrokerAPIView(APIView):
    authentication_classes = [BrokerKeyAuthentication]
    permission_classes = [HasBrokerScope]
    throttle_classes = [BrokerRateThrottle]
    parser_classes = [DecimalJSONParser]
    error_style = "broker"
    scopes: dict[str, str] = {}

    @property
    def broker(self) -> Broker:
        return self.request.user.broker

    @property
    def actor(self) -> str:
        return self.request.user.actor

    def handle_exception(self, exc):
        if isinstance(exc, BrokerError):
            exc = BrokerAPIError(exc.message, status_code=exc.status, extra=exc.extra)
        return super().handle_exception(exc)

    # --- input helpers ---------------------------------------------------------------------------------

    def body(self) -> dict[str, Any]:
        data = self.request.data
        if not isinstance(data, dict):
            raise BrokerAPIError("the request body must be a JSON object", status_code=400)
        return data

    def amount(self, data: dict[str, Any], field: str = "amount") -> Decimal:
        try:
            return parse_amount(data.get(field), field=field)
        except AmountError as exc:
            raise BrokerAPIError(str(exc), status_code=400) from exc

    def string(self, data: dict[str, Any], field: str, *, required: bool = False, max_length: int = 255) -> str:
        value = data.get(field)
        if value is None or value == "":
            if required:
                raise BrokerAPIError(f"{field} is required", status_code=400)
            return ""
        if not isinstance(value, str):
            raise BrokerAPIError(f"{field} must be a string", status_code=400)
        if len(value) > max_length:
            raise BrokerAPIError(f"{field}: at most {max_length} characters", status_code=400)
        return value.strip()

    def idempotency_key(self, data: dict[str, Any]) -> str | None:
        key = self.request.headers.get("Idempotency-Key") or data.get("idempotency_key")
        if key is None or key == "":
            return None
        if not isinstance(key, str) or len(key) > 200:
            raise BrokerAPIError("idempotency key: a string of at most 200 characters", status_code=400)
        return key

    def page(self) -> tuple[int, int]:
        params = self.request.query_params
        out = []
        for name, default, maximum in (("page", 1, None), ("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)):
            raw = params.get(name) or params.get("pageSize" if name == "page_size" else name)
            if raw in (None, ""):
                out.append(default)
                continue
            if not raw.isdigit() or int(raw) < 1:
                raise BrokerAPIError(f"{name} must be a positive integer", status_code=400)
            if maximum and int(raw) > maximum:
                raise BrokerAPIError(f"{name} must be at most {maximum}", status_code=400)
            out.append(int(raw))
        return out[0], out[1]

    def paginate(self, qs, key: str, render) -> dict[str, Any]:
        page, size = self.page()
        total = qs.count()
        rows = list(qs[(page - 1) * size : page * size]) if (page - 1) * size < total else []
        return {
            key: [render(r) for r in rows],
            "total": total,
            "page": page,
            "page_size": size,
            "total_pages": -(-total // size),
        }
