"""Refusals of the brokerage services. Each means nothing was changed; the API renders them as
``{"error": message}`` with ``status``."""

from __future__ import annotations


class BrokerError(Exception):
    status = 400

    def __init__(self, message: str, **extra) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra  # more fields for the error body (e.g. the existing username on a 409)


class BadRequest(BrokerError):
    status = 400


class Forbidden(BrokerError):
    status = 403


class NotFound(BrokerError):
    status = 404


class Conflict(BrokerError):
    status = 409
