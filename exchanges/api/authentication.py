"""Authentication of the exchange API: ``Authorization: Bearer <JWT>`` or ``X-API-Key`` (trader keys).

JWTs are HS256 with ``settings.EXCHANGE_JWT_SECRET`` (derived from ``SECRET_KEY`` when unset); the
algorithm is pinned here and never read from the token; ``exp``, ``iat``, ``sub`` and ``typ`` are
required. Access tokens (``typ=access``) authenticate requests and the private stream; refresh tokens
(``typ=refresh``) only buy new access tokens at ``/auth/refresh``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from datetime import timedelta

import jwt
from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from exchanges.models import Trader, TraderApiKey

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
ISSUER = "mmsite-exchange"
ACCESS_TTL = timedelta(minutes=15)
REFRESH_TTL = timedelta(days=7)


def _secret() -> str:
    configured = getattr(settings, "EXCHANGE_JWT_SECRET", "")
    if configured:
        return configured
    return hashlib.sha256(("exchange-jwt:" + settings.SECRET_KEY).encode()).hexdigest()


def issue_jwt(trader: Trader, *, ttl: timedelta = ACCESS_TTL, typ: str = "access") -> str:
    """A signed token for ``trader`` valid for ``ttl``."""
    now = timezone.now()
    payload = {
        "sub": str(trader.pk),
        "typ": typ,
        "iss": ISSUER,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(payload, _secret(), algorithm=ALGORITHM)


def decode_jwt(token: str, *, typ: str = "access") -> dict | None:
    """The claims of a valid token of type ``typ``, or None (bad signature, expired, wrong type, malformed)."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        return None
    try:
        claims = jwt.decode(
            token,
            _secret(),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "typ", "iss"]},
        )
    except jwt.PyJWTError:
        return None
    if claims.get("typ") != typ:
        return None
    return claims


def _jwt_subject(token: str, typ: str) -> int | None:
    claims = decode_jwt(token, typ=typ)
    if claims is None:
        return None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.isdigit() or len(sub) > 18:
        return None
    return int(sub)


def authenticate_jwt(token: str, *, typ: str = "access") -> Trader | None:
    """The trader an access token belongs to, or None. The trader (an active user) is remembered by this
    process for ``KEY_CACHE_SECONDS``, as API keys are: a deactivated user's tokens stop within it."""
    pk = _jwt_subject(token, typ)
    if pk is None:
        return None
    return cached_trader_by_id(pk) or trader_by_id(pk)


def cached_trader_by_id(pk: int) -> Trader | None:
    """The active trader ``pk`` if this process checked it in the last ``KEY_CACHE_SECONDS`` (no query)."""
    hit = _JWT_TRADERS.get(pk)
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def trader_by_id(pk: int) -> Trader | None:
    """The trader ``pk`` if its user is active, read from the database and remembered by this process (as
    API keys are; a revocation clears it everywhere within about a second)."""
    trader = Trader.objects.select_related("user").filter(pk=pk, user__is_active=True).first()
    if trader is not None:
        _ensure_watcher()
        if len(_JWT_TRADERS) > 10_000:
            _JWT_TRADERS.clear()
        _JWT_TRADERS[pk] = (time.monotonic() + KEY_CACHE_SECONDS, trader)
    return trader


#: A key checked against the database is trusted by this process for this long at most; a revocation
#: through ``trader_key_revoke`` (or a deactivated user) reaches every process within about a second
#: (``credentials_changed``, below).
KEY_CACHE_SECONDS = 10.0
_KEYS: dict[str, tuple[float, Trader]] = {}
_JWT_TRADERS: dict[int, tuple[float, Trader]] = {}


def api_key_cache_clear() -> None:
    _KEYS.clear()
    _JWT_TRADERS.clear()


# --- revocation across processes ---------------------------------------------------------------------------
#
# Each process trusts a credential it has checked for KEY_CACHE_SECONDS. A revocation (a key revoked, a
# trader's user deactivated) bumps a generation number in the shared cache (Redis in production); every
# process that authenticates traders watches it from a small daemon thread, once a second, and forgets its
# cached credentials when it moves. So a revoked key stops working everywhere within about a second, and
# no request ever waits on the cache for it.

GENERATION_KEY = "xauth:credentials-generation"
GENERATION_POLL_SECONDS = 1.0
_watcher: dict[int, threading.Thread] = {}
_watcher_lock = threading.Lock()


def credentials_changed() -> None:
    """A credential was revoked: this process forgets its cached ones now, every other within a second."""
    from django.core.cache import cache

    api_key_cache_clear()
    try:
        if not cache.add(GENERATION_KEY, 1, timeout=None):
            cache.incr(GENERATION_KEY)
    except Exception:  # noqa: BLE001 - the cache is down: other processes fall back to KEY_CACHE_SECONDS
        log.warning("could not announce a credential revocation to other processes", exc_info=True)


def _generation() -> object:
    from django.core.cache import cache

    try:
        return cache.get(GENERATION_KEY)
    except Exception:  # noqa: BLE001
        return None


def _watch() -> None:
    seen = _generation()
    while True:
        time.sleep(GENERATION_POLL_SECONDS)
        now = _generation()
        if now != seen:
            seen = now
            api_key_cache_clear()


def _ensure_watcher() -> None:
    """Start this process's generation watcher (once per process; a forked child starts its own)."""
    pid = os.getpid()
    if pid in _watcher:
        return
    with _watcher_lock:
        if pid not in _watcher:
            t = threading.Thread(target=_watch, name="credentials-generation", daemon=True)
            _watcher[pid] = t
            t.start()


def cached_trader(*, api_key: str | None = None, bearer: str | None = None) -> Trader | None:
    """The trader of an API key or access token **if this process already knows it** (no database
    access, for the order gateway's event loop); None when it would have to ask the database (the
    caller then lets the regular API path answer, which also fills the cache) or the credential is bad."""
    now = time.monotonic()
    if api_key is not None:
        hit = _KEYS.get(TraderApiKey.hash_key(api_key.strip()))
    elif bearer is not None:
        pk = _jwt_subject(bearer, "access")
        return None if pk is None else cached_trader_by_id(pk)
    else:
        return None
    if hit is not None and hit[0] > now:
        return hit[1]
    return None


def authenticate_api_key(raw_key: str | None) -> Trader | None:
    """The trader of an active API key, or None if missing, malformed, unknown or revoked."""
    if not raw_key:
        return None
    raw_key = raw_key.strip()
    digest = TraderApiKey.hash_key(raw_key)
    hit = _KEYS.get(digest)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    trader = _authenticate_api_key_db(raw_key)
    if trader is not None:
        _ensure_watcher()
        if len(_KEYS) > 10_000:
            _KEYS.clear()
        _KEYS[digest] = (now + KEY_CACHE_SECONDS, trader)
    return trader


def _authenticate_api_key_db(raw_key: str) -> Trader | None:
    key = TraderApiKey.resolve(raw_key, select_related=("trader__user",))
    if key is None or not key.trader.user.is_active:
        return None
    return key.trader


class BearerJWTAuthentication(BaseAuthentication):
    """``Authorization: Bearer <JWT>``."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        trader = authenticate_jwt(token.strip())
        if trader is None:
            raise exceptions.AuthenticationFailed("Invalid or expired token")
        return trader, "jwt"

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="exchange"'


class TraderApiKeyAuthentication(BaseAuthentication):
    """``X-API-Key: evt_…`` (or an older ``tk_…`` key)."""

    def authenticate(self, request):
        raw = request.META.get("HTTP_X_API_KEY")
        if raw is None:
            return None
        trader = authenticate_api_key(raw)
        if trader is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key")
        return trader, "api_key"

    def authenticate_header(self, request) -> str:
        return "X-API-Key"


class IsTrader(BasePermission):
    message = "Authentication required: send Authorization: Bearer <token> or X-API-Key"

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Trader)


class BearerJWTScheme(OpenApiAuthenticationExtension):
    target_class = "exchanges.api.authentication.BearerJWTAuthentication"
    name = "ExchangeBearer"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "from POST /auth/login"}


class TraderApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "exchanges.api.authentication.TraderApiKeyAuthentication"
    name = "TraderApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "trader API key (evt_<64 hex>), issued by `manage.py create_trader`",
        }
