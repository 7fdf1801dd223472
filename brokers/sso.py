"""SSO: a broker's backend signs a JWT for its user; we validate it and log the trader in.

Validation (``sso_verify``): the token's header is read only to find no surprises; the tenant is
looked up from the *unverified* ``tenant_code`` claim to choose the key, then the token is decoded
with that broker's secret and the algorithm pinned to HS256 (``algorithms=["HS256"]``: ``alg: none``
and any other algorithm are refused whatever the header says). ``exp`` is required and must lie in
the future (no leeway by default) and at most ``BROKER_SSO_MAX_TOKEN_LIFETIME_SECONDS`` ahead, so
a token is a short-lived credential and a replay past its expiry is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

import jwt
from django.core.cache import cache
from django.utils import timezone

from brokers import conf
from brokers.errors import BadRequest, BrokerError
from brokers.models import Broker, BrokerClient
from brokers.services.brokers import broker_sso_secret
from brokers.services.clients import client_get_or_create

logger = logging.getLogger(__name__)

ALGORITHM = "HS256"


class SSOError(BrokerError):
    status = 401


@dataclass(frozen=True)
class SSOLogin:
    client: BrokerClient
    created: bool
    session_token: str
    logout_redirect_url: str


def _http_url(value, *, field: str) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or len(value) > 500:
        raise SSOError(f"{field} must be an http(s) URL")
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SSOError(f"{field} must be an http(s) URL")
    return value


def sso_verify(token: str) -> tuple[Broker, dict]:
    """The broker and the verified claims of ``token``; :class:`SSOError` (401) for any bad token."""
    if not token or not isinstance(token, str) or len(token) > 8192:
        raise SSOError("token is required")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise SSOError("Invalid SSO token: malformed") from exc
    tenant_code = unverified.get("tenant_code")
    if not isinstance(tenant_code, str) or not tenant_code:
        raise SSOError("Invalid SSO token: tenant_code is required")
    broker = Broker.objects.select_related("account").filter(tenant_code=tenant_code).first()
    secret = broker_sso_secret(broker) if broker is not None else None
    if broker is None or not secret:
        raise SSOError("Invalid SSO token: unknown tenant_code")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp"], "verify_exp": True},
            leeway=conf.sso_leeway_seconds(),
        )
    except jwt.ExpiredSignatureError as exc:
        raise SSOError("Invalid SSO token: expired") from exc
    except jwt.PyJWTError as exc:
        raise SSOError(f"Invalid SSO token: {exc}") from exc
    exp = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
    if exp - timezone.now() > conf.sso_max_token_lifetime():
        raise SSOError("Invalid SSO token: exp is too far in the future (issue short-lived tokens)")
    if claims.get("tenant_code") != tenant_code:  # cannot differ once verified; belt and braces
        raise SSOError("Invalid SSO token: tenant_code mismatch")
    jti = claims.get("jti")
    if jti is not None:
        # A token with an id is single-use: remembered (in Redis in production) until it expires.
        if not isinstance(jti, str) or not jti or len(jti) > 128:
            raise SSOError("Invalid SSO token: jti must be a non-empty string")
        ttl = max(int((exp - timezone.now()).total_seconds()) + conf.sso_leeway_seconds() + 1, 1)
        if not cache.add(f"sso:jti:{broker.pk}:{jti}", 1, timeout=ttl):
            raise SSOError("Invalid SSO token: already used")
    return broker, claims


def session_token_for(trader) -> str:
    """The house exchange's session JWT for ``trader`` (what its API and private stream accept)."""
    from exchanges.api.authentication import issue_jwt

    return issue_jwt(trader)


def sso_login(token: str) -> SSOLogin:
    """Verify ``token`` and create or find the trader of its ``user_id`` (the same user_id, the same account)."""
    broker, claims = sso_verify(token)
    user_id = claims.get("user_id")
    email = claims.get("email") or ""
    if not isinstance(email, str) or len(email) > 254:
        raise SSOError("Invalid SSO token: email must be a string")
    wallet = claims.get("wallet_address") or ""
    if not isinstance(wallet, str):
        raise SSOError("Invalid SSO token: wallet_address must be a string")
    logout_url = _http_url(claims.get("logout_redirect_url"), field="logout_redirect_url")
    try:
        client, created = client_get_or_create(
            broker=broker, user_id=user_id, email=email, wallet_address=wallet, logout_redirect_url=logout_url
        )
    except BadRequest as exc:
        raise SSOError(f"Invalid SSO token: {exc.message}") from exc
    return SSOLogin(
        client=client,
        created=created,
        session_token=session_token_for(client.trader),
        logout_redirect_url=logout_url or broker.logout_redirect_url,
    )
