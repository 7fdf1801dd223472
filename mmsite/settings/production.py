"""Production hardening on top of ``base``; every secret must come from the environment."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import DATABASES, IS_POSTGRES, env

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY or SECRET_KEY.startswith("dev-insecure"):
    raise ImproperlyConfigured("SECRET_KEY must be set in the environment for production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# A connection pool per process by default: daphne runs each request's sync code in a thread of its
# own, and with persistent connections every finished thread keeps one open until garbage collection,
# which exhausts PostgreSQL's max_connections under load. DB_POOL=0 turns it off; base.py applies a
# DB_POOL set in the environment, this only supplies the production default.
_pool_size = env.int("DB_POOL", default=10)
if IS_POSTGRES and _pool_size > 0 and "pool" not in DATABASES["default"]["OPTIONS"]:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": 1, "max_size": _pool_size, "timeout": 10}

# The server processes' garbage collector (mmsite/gc_tuning.py): the startup heap frozen, fewer and
# cheaper collections. GC_THRESHOLDS= (empty) keeps Python's defaults.
GC_THRESHOLDS = tuple(int(x) for x in env.list("GC_THRESHOLDS", default=["50000", "20", "100"]) if x)
