"""The ``brokers`` app's models, one module per area.

- ``core``: brokers, broker staff, broker API keys, broker clients (traders), transfers, withdrawals
- ``webhooks``: the webhook outbox: endpoints, deliveries and their attempts
"""

from .core import *  # noqa: F403
from .webhooks import *  # noqa: F403
