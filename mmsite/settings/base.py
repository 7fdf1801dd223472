"""Base settings, read from the environment.

No variables set: the embedded default (SQLite, in-memory channel layer, local-memory cache,
Celery tasks run in-process). ``DATABASE_URL`` switches the database (PostgreSQL through
psycopg 3); ``REDIS_URL`` switches Celery, the Channels layer, the cache and the throttle
store to Redis, each in its own database number so that they never see each other's keys.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)
# The development default is deliberately not secret; production.py refuses to run without one.
SECRET_KEY = env.str("SECRET_KEY", default="dev-insecure-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Key for credentials encrypted at rest (Fernet). Derived from SECRET_KEY when not set.
FIELD_ENCRYPTION_KEY = env.str("FIELD_ENCRYPTION_KEY", default="")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "channels",
    "mmsite",
    "exchanges",
    "hedging",
    "trading",
    "brokers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mmsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "mmsite.asgi.application"

# --- Database ---------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.postgresql":
    _db.setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    _db.setdefault("CONN_HEALTH_CHECKS", True)
    # JIT compiles big aggregate plans for 100+ ms and never pays back on web requests.
    # PGOPTIONS (libpq's variable) replaces this when set, e.g. '-c jit=off -c work_mem=64MB'.
    _db.setdefault("OPTIONS", {})["options"] = env.str("PGOPTIONS", default="-c jit=off")
    # Parallel test runs (several developers on one machine) need distinct test databases.
    _db.setdefault("TEST", {})["NAME"] = "test_mmsite" + env.str("TEST_DB_SUFFIX", default="")
    # DB_POOL=N: a psycopg connection pool of up to N per process (daphne runs each request in its own
    # thread, so CONN_MAX_AGE keeps one connection per finished thread open until garbage collection and
    # exhausts max_connections under load; a pool shares a few across threads). Off by default.
    if env.int("DB_POOL", default=0) > 0:
        _db["CONN_MAX_AGE"] = 0
        _db["OPTIONS"]["pool"] = {"min_size": 1, "max_size": env.int("DB_POOL"), "timeout": 10}
else:
    _db.setdefault("OPTIONS", {})["timeout"] = 20
    # The embedded loop (bin/run) writes from several threads: take the write lock at BEGIN (a
    # deferred transaction that upgrades fails at once with "database is locked" instead of
    # waiting), and WAL so that readers never wait for a writer.
    _db["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    _db["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
IS_POSTGRES = _db["ENGINE"] == "django.db.backends.postgresql"
# Covering indexes (INCLUDE) are a PostgreSQL feature for the hot read paths; SQLite, the embedded
# default, builds them without the extra columns, which is fine for a laptop-sized database.
SILENCED_SYSTEM_CHECKS = [] if IS_POSTGRES else ["models.W040"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: one server, separate databases per use ----------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")


def _redis_db(url: str, db: int) -> str:
    """Return ``url`` pointing at database ``db`` (replacing any path the URL had)."""
    base = url.rstrip("/")
    scheme, rest = base.split("://", 1)
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/{db}"


# --- Cache (also the throttle store) ---------------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _redis_db(REDIS_URL, env.int("REDIS_CACHE_DB", default=1)),
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="mmsite"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Channels ---------------------------------------------------------------------------------
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis's layer with a 2 s blocking pop, below redis-py 8's 5 s default read timeout
            # (the two 5 s timers raced, redis/redis-py#4091): mmsite/channel_layer.py.
            "BACKEND": "mmsite.channel_layer.RedisChannelLayer",
            "CONFIG": {
                "hosts": [_redis_db(REDIS_URL, env.int("REDIS_CHANNELS_DB", default=2))],
                "prefix": env.str("CHANNELS_PREFIX", default="asgi"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = _redis_db(REDIS_URL, env.int("REDIS_CELERY_DB", default=0)) if REDIS_URL else "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 90
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TIMEZONE = "UTC"
# Each area's tasks on its own queue (Procfile's worker consumes them all; scale them apart by
# running workers with -Q placement, -Q fills,hedging, ...). Unlisted tasks go to "default".
CELERY_TASK_ROUTES = {
    "trading.order_place": {"queue": "placement"},
    "trading.orders_resolve_unknown": {"queue": "placement"},
    "trading.quotes_cancel_not_quotable": {"queue": "placement"},
    "trading.fills_*": {"queue": "fills"},
    "trading.reconcile_*": {"queue": "fills"},
    "trading.quote_repost": {"queue": "placement"},
    "hedging.*": {"queue": "hedging"},
    "trading.settlement.*": {"queue": "settlement"},
    # The stale-input check must not wait behind slow tasks: its own queue (a worker can take it alone).
    "trading.health.*": {"queue": "health"},
}
CELERY_BEAT_SCHEDULE = {
    # Settle finished or voided fixtures whose orders or placed bets are still undecided.
    "settlement-sweep": {"task": "trading.settlement.sweep", "schedule": 60.0, "options": {"expires": 55}},
    # Soft-pause every client when the odds feed or a venue stream goes stale; lift it on recovery.
    "health-check": {"task": "trading.health.check", "schedule": 2.0, "options": {"expires": 2.0}},
    # Recompute stale PnL days (marked by database triggers) so /pnl reads rollups, not live joins.
    "pnl-days-refresh": {"task": "trading.pnl_days_refresh", "schedule": 60.0, "options": {"expires": 55}},
    # Orders whose placement answer was lost: ask the venue, never resend blindly.
    "orders-resolve-unknown": {"task": "trading.orders_resolve_unknown", "schedule": 15.0, "options": {"expires": 14}},
    # Pull fills from every active account's venue (the venue streams push them too; dedupe absorbs both).
    "fills-poll-all": {"task": "trading.fills_poll_all", "schedule": 5.0, "options": {"expires": 4.5}},
    # Compare every account's open orders and fills with its venue (adopt, cancel orphans, apply missed fills).
    "venues-reconcile": {"task": "trading.reconcile_all", "schedule": 60.0, "options": {"expires": 55}},
    # Resolve pending bets and hedge recent fills whose hedge task was lost.
    "hedge-sweep": {"task": "hedging.hedge_sweep", "schedule": 30.0, "options": {"expires": 29}},
    # Quotes on fixtures that kicked off (pre-match only) or stopped being quotable.
    "quotes-cancel-not-quotable": {
        "task": "trading.quotes_cancel_not_quotable",
        "schedule": 5.0,
        "options": {"expires": 4.5},
    },
}

# --- Auth, i18n, static -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- REST framework -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["mmsite.api.renderers.FastJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "mmsite.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "mmsite.api.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": False,
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "mmsite API",
    "DESCRIPTION": (
        "One platform, several API families: the MM client API (`/api/v1/`, `X-API-Key`), "
        "the house exchange API, the market-maker liquidity API, the broker API and SSO. "
        "See docs/api/ in the repository for field definitions."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Platform knobs -------------------------------------------------------------------------------
# MM client API: requests per minute per client, and WebSocket connections per key.
MM_API_RATE_PER_MINUTE = env.int("MM_API_RATE_PER_MINUTE", default=100)
MM_WS_MAX_CONNECTIONS_PER_KEY = env.int("MM_WS_MAX_CONNECTIONS_PER_KEY", default=5)
MM_WS_HEARTBEAT_SECONDS = env.float("MM_WS_HEARTBEAT_SECONDS", default=25.0)

# Engine inputs: a source silent for longer than this soft-pauses the clients it concerns
# (trading.services.health; docs/engine.md "Soft pause").
FEED_STALE_SECONDS = env.float("FEED_STALE_SECONDS", default=10.0)
VENUE_STREAM_STALE_SECONDS = env.float("VENUE_STREAM_STALE_SECONDS", default=10.0)
# Exchanges on which the feed ingest maps every feed outcome to a venue market by itself (the
# simulated venue); real venues are mapped by operators (OutcomeMarket in the console).
FEED_AUTO_MARKET_EXCHANGES = env.list("FEED_AUTO_MARKET_EXCHANGES", default=["simulated"])
# Settlement waits until a final fixture has been quiet this long (no status or score write), so
# that a score corrected just after the final whistle is settled right (docs/settlement.md).
SETTLEMENT_GRACE_SECONDS = env.float("SETTLEMENT_GRACE_SECONDS", default=0.0)

# --- Brokerage: webhooks (docs/webhooks.md) and chain verification (docs/chain-verification.md) -----
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=30.0)
WEBHOOK_RETRY_MAX_DELAY_SECONDS = env.float("WEBHOOK_RETRY_MAX_DELAY_SECONDS", default=6 * 3600.0)
WEBHOOK_RETRY_WINDOW_HOURS = env.float("WEBHOOK_RETRY_WINDOW_HOURS", default=72.0)
# JSON-RPC endpoint of the chain the brokers pay USDC on, and the token contract (empty: verification off).
CHAIN_RPC_URL = env.str("CHAIN_RPC_URL", default="")
CHAIN_USDC_ADDRESS = env.str("CHAIN_USDC_ADDRESS", default="")
CHAIN_USDC_DECIMALS = env.int("CHAIN_USDC_DECIMALS", default=6)
CHAIN_CHECK_INTERVAL_MINUTES = env.float("CHAIN_CHECK_INTERVAL_MINUTES", default=30.0)
CHAIN_LOCK_TIMEOUT_HOURS = env.int("CHAIN_LOCK_TIMEOUT_HOURS", default=24)
CHAIN_CONFIRMATIONS = env.int("CHAIN_CONFIRMATIONS", default=3)
CHAIN_RPC_TIMEOUT_SECONDS = env.float("CHAIN_RPC_TIMEOUT_SECONDS", default=10.0)
CHAIN_LOGS_MAX_BLOCK_RANGE = env.int("CHAIN_LOGS_MAX_BLOCK_RANGE", default=2000)
# The OTC lock timeout the brokerage states in the lock answer is the chain check's timeout.
BROKER_OTC_TIMEOUT_HOURS = CHAIN_LOCK_TIMEOUT_HOURS
CELERY_TASK_ROUTES.update(
    {
        "brokers.webhook_deliver": {"queue": "webhooks"},
        "brokers.webhooks_sweep": {"queue": "webhooks"},
        "brokers.fill_webhooks_sweep": {"queue": "webhooks"},
        "brokers.withdrawal_chain_check": {"queue": "chain"},
        "brokers.withdrawals_chain_check": {"queue": "chain"},
    }
)
CELERY_BEAT_SCHEDULE.update(
    {
        # Webhook retries that fell due, and deliveries whose task message was lost.
        "webhooks-sweep": {"task": "brokers.webhooks_sweep", "schedule": 15.0, "options": {"expires": 14}},
        # Fill webhooks of recent trades whose after-commit receiver never ran (idempotent per trade and side).
        "fill-webhooks-sweep": {"task": "brokers.fill_webhooks_sweep", "schedule": 60.0, "options": {"expires": 55}},
        # Look for the on-chain payment of every OTC-locked withdrawal; release locks past their timeout.
        "withdrawals-chain-check": {
            "task": "brokers.withdrawals_chain_check",
            "schedule": CHAIN_CHECK_INTERVAL_MINUTES * 60.0,
            "options": {"expires": CHAIN_CHECK_INTERVAL_MINUTES * 60.0 - 5},
        },
    }
)

# --- Brokerage: brokers, withdrawals, SSO (docs/brokerage.md, docs/api/broker.md) ---------------------
BROKER_ASSET = env.str("BROKER_ASSET", default="DCT")
BROKER_WITHDRAWAL_COOLING_SECONDS = env.int("BROKER_WITHDRAWAL_COOLING_SECONDS", default=300)
BROKER_WITHDRAWAL_FEE_BPS = env.int("BROKER_WITHDRAWAL_FEE_BPS", default=100)
BROKER_API_RATE_PER_MINUTE = env.int("BROKER_API_RATE_PER_MINUTE", default=1200)
BROKER_SSO_RATE_PER_MINUTE = env.int("BROKER_SSO_RATE_PER_MINUTE", default=120)
BROKER_SSO_MAX_TOKEN_LIFETIME_SECONDS = env.int("BROKER_SSO_MAX_TOKEN_LIFETIME_SECONDS", default=3600)
# The house exchange's withdraw endpoint hands the request to the brokerage (OTC state machine).
EXCHANGE_WITHDRAWAL_HANDLER = "brokers.services.withdrawals.exchange_withdrawal_request"
CELERY_TASK_ROUTES.update({"brokers.withdrawals_advance": {"queue": "settlement"}})
CELERY_TASK_ROUTES.update({"brokers.withdrawal_platform_pay": {"queue": "settlement"}})
CELERY_BEAT_SCHEDULE.update(
    {
        # Pending withdrawals past their cooling period go to the platform, which pays them.
        "withdrawals-advance": {"task": "brokers.withdrawals_advance", "schedule": 15.0, "options": {"expires": 14}},
    }
)

# --- House exchange API (docs/api/exchange.md) --------------------------------------------------------
# JWT secret of exchange access/refresh tokens (HS256); derived from SECRET_KEY when empty.
EXCHANGE_JWT_SECRET = env.str("EXCHANGE_JWT_SECRET", default="")
# Rate limits per trader tier (seed 004: 30/min public per IP, 60/min authenticated, 10 orders/s per
# pair, 30 orders/min per user). A tier missing a key falls back to "standard". JSON in the environment.
EXCHANGE_RATE_LIMITS = env.json(
    "EXCHANGE_RATE_LIMITS",
    default={
        "standard": {
            "public_per_minute": 30,
            "authenticated_per_minute": 60,
            "orders_per_second_per_pair": 10,
            "orders_per_minute": 30,
        },
        "market_maker": {
            "public_per_minute": 600,
            "authenticated_per_minute": 3000,
            "orders_per_second_per_pair": 100,
            "orders_per_minute": 6000,
        },
    },
)
CELERY_BEAT_SCHEDULE.update(
    {
        # Good-till-time orders expire on the book's next command; this sweep expires them on quiet books.
        "exchange-expire-due": {"task": "exchanges.orders_expire_due", "schedule": 1.0, "options": {"expires": 5}},
    }
)

# --- House exchange algos and streams (docs/exchange-algos.md, docs/exchange-streams.md) ------------------
# TWAP slices and the dead-man's switch sweep: every second, on their own queue (a slow settlement or
# webhook backlog must never hold back a cancel-on-disconnect).
CELERY_TASK_ROUTES.update({"exchanges.twap_*": {"queue": "algos"}, "exchanges.deadman_*": {"queue": "algos"}})
CELERY_BEAT_SCHEDULE.update(
    {
        "exchange-twap-run-due": {"task": "exchanges.twap_run_due", "schedule": 1.0, "options": {"expires": 2}},
        "exchange-deadman-sweep": {"task": "exchanges.deadman_sweep", "schedule": 1.0, "options": {"expires": 2}},
    }
)
# Streams: connections per IP per channel (seed: 5), the bbo conflation interval (seed: 50 ms).
# The order gateway (exchanges/api/gateway.py): place and cancel answered beside Django's request cycle
# and batched per book into one transaction. On by default with PostgreSQL; with SQLite (the embedded
# default, one writer at a time anyway) those requests go through the regular views.
EXCHANGE_ORDER_GATEWAY = env.bool(
    "EXCHANGE_ORDER_GATEWAY", default=DATABASES["default"]["ENGINE"].endswith("postgresql")
)
# One thread measured best on one hot book (two take turns on the book's lock and split the batches).
EXCHANGE_GATEWAY_THREADS = env.int("EXCHANGE_GATEWAY_THREADS", default=1)
# sys.setswitchinterval for a process serving orders (0: Python's 5 ms): the gateway thread gets the GIL
# back sooner after each database round trip.
EXCHANGE_GATEWAY_SWITCH_INTERVAL = env.float("EXCHANGE_GATEWAY_SWITCH_INTERVAL", default=0.0005)
# The matcher process (manage.py run_order_matcher) listens on this Unix socket; web processes with it set
# hand their place and cancel requests to it (and serve them themselves while it is unreachable).
EXCHANGE_MATCHER_SOCKET = env.str("EXCHANGE_MATCHER_SOCKET", default="")
EXCHANGE_WS_MAX_CONNECTIONS_PER_IP = env.int("EXCHANGE_WS_MAX_CONNECTIONS_PER_IP", default=5)
EXCHANGE_BBO_INTERVAL_MS = env.int("EXCHANGE_BBO_INTERVAL_MS", default=50)
# Unsent bytes a stream connection may have queued in daphne before it is closed 4008 "slow_consumer"
# (docs/exchange-streams.md); 0: no bound.
EXCHANGE_WS_MAX_BUFFER_BYTES = env.int("EXCHANGE_WS_MAX_BUFFER_BYTES", default=1 << 20)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
if not REDIS_URL:
    # Embedded default: tasks run in-process, and a line per task success would drown the live loop's
    # log (bin/run). Task failures still log at ERROR. Production workers log as Celery configures them.
    LOGGING["loggers"]["celery.app.trace"] = {"level": env.str("TASK_LOG_LEVEL", default="WARNING")}
