"""Settings are driven by the environment; see ``base``.

``mmsite.settings`` is the default module: the embedded stack when no variables are set,
the production stack when ``DATABASE_URL`` and ``REDIS_URL`` are. ``mmsite.settings.production``
adds the deployment hardening (and refuses to start without ``SECRET_KEY``).
"""

from .base import *  # noqa: F401,F403
