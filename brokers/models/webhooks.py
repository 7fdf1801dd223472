"""The webhook outbox: endpoints, deliveries and their attempts."""

from django.db import models  # noqa: F401

__all__: list[str] = []
