"""The brokerage console (Django admin), scoped per broker."""

from . import admin_webhooks  # noqa: F401
