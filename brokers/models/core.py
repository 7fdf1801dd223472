"""Brokers, their keys, clients, transfers and withdrawals."""

from django.db import models  # noqa: F401

__all__: list[str] = []
