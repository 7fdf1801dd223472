"""One exception handler for every API family; each family picks its error shape.

A view (or its base class) sets ``error_style``:

* ``"mm"`` (default): ``{"error": "<code>", "message": "...", "parameter": "<name>"}``; ``parameter``
  is present when one request parameter is at fault.
* other families register their own renderers in ``ERROR_RENDERERS``.

Every 4xx raised inside DRF goes through here, so no family leaks DRF's default ``{"detail": ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback


class APIError(exceptions.APIException):
    """A 4xx with an explicit machine code, message and optional parameter name."""

    def __init__(self, code: str, message: str, *, status_code: int = 400, parameter: str | None = None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.parameter = parameter


log = logging.getLogger(__name__)


class Unavailable(exceptions.APIException):
    """503: the database could not serve the request now (no pooled connection free in time, the server
    unreachable, a lock or statement timeout, a deadlock victim). The failed statement's transaction is
    rolled back; the client may try again after ``Retry-After``."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The service is busy, try again shortly"
    default_code = "service_unavailable"
    wait = 1


def invalid_parameter(parameter: str, message: str) -> APIError:
    return APIError("invalid_parameter", f"{parameter}: {message}", parameter=parameter)


_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "service_unavailable",
}


def _first_error(detail: Any, path: str = "") -> tuple[str | None, str]:
    """Flatten DRF's nested validation detail to (parameter, message) of its first error."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else None
            sub_param, msg = _first_error(value, key)
            return (sub_param or name), msg
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], path)
    return (path or None), str(detail)


def describe(exc: exceptions.APIException) -> tuple[str, str, str | None]:
    """(code, message, parameter) for any DRF exception."""
    if isinstance(exc, APIError):
        return exc.error_code, str(exc.detail), exc.parameter
    if isinstance(exc, exceptions.ValidationError):
        parameter, message = _first_error(exc.detail)
        if parameter:
            return "invalid_parameter", f"{parameter}: {message}", parameter
        return "bad_request", message, None
    code = _DEFAULT_CODES.get(exc.status_code, "error")
    detail = exc.detail
    message = str(detail.get("detail", detail)) if isinstance(detail, dict) else str(detail)
    return code, message, None


def render_mm(exc: exceptions.APIException) -> dict[str, Any]:
    code, message, parameter = describe(exc)
    body: dict[str, Any] = {"error": code, "message": message}
    if parameter:
        body["parameter"] = parameter
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        body["retryAfter"] = int(exc.wait + 0.999)
    return body


def render_broker(exc: exceptions.APIException) -> dict[str, Any]:
    """The broker API and SSO (seed 003): ``{"error": "<message>"}``, plus any fields the exception
    carries in ``extra`` (e.g. the existing ``username`` on a 409 for a duplicate client)."""
    _code, message, _parameter = describe(exc)
    return {"error": message, **(getattr(exc, "extra", None) or {})}


def render_exchange(exc: exceptions.APIException) -> dict[str, Any]:
    """The house exchange API (seed 004's SDK reads ``error.code``/``error.message``):
    ``{"error": {"code": "...", "message": "...", "parameter"?: "...", "retry_after"?: n}}``."""
    code, message, parameter = describe(exc)
    if isinstance(exc, exceptions.ParseError):
        code = "malformed_json"
    elif isinstance(exc, Unavailable):
        code = "busy"  # the exchange's 503 code (the order gateway answers a busy book with it too)
    body: dict[str, Any] = {"code": code, "message": message}
    if parameter:
        body["parameter"] = parameter
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        body["retry_after"] = int(exc.wait + 0.999)
    return {"error": body}


ERROR_RENDERERS: dict[str, Callable[[exceptions.APIException], dict[str, Any]]] = {
    "mm": render_mm,
    "exchange": render_exchange,
    "broker": render_broker,
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, OperationalError):
        # A transient database failure is the server's, not the caller's and not a bug: 503 + Retry-After
        # in the family's error shape (logged, since someone should look at the database or the pool size).
        log.warning("database unavailable in %s: %s", context.get("view").__class__.__name__, exc, exc_info=exc)
        exc = Unavailable()
    if not isinstance(exc, exceptions.APIException):
        return None  # a real bug: let Django's 500 handling log it loudly

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait + 0.999))  # type: ignore[attr-defined]

    view = context.get("view")
    style = getattr(view, "error_style", "mm")
    body = ERROR_RENDERERS.get(style, render_mm)(exc)
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


# --- Django-level handlers, for requests that never reach a DRF view ----------------------------------


def json_not_found(request, exception=None):
    return JsonResponse({"error": "not_found", "message": f"No endpoint at {request.path}"}, status=404)


def json_server_error(request):
    return JsonResponse(
        {"error": "internal_error", "message": "Internal server error"}, status=status.HTTP_500_INTERNAL_SERVER_ERROR
    )
