"""Webhook signing recipes (pure: no Django, no I/O).

The seed's scheme, kept byte for byte so the seed's Node verifier accepts our deliveries:

    X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>

The secret is used as its UTF-8 bytes (Node's ``createHmac('sha256', secret)`` with a string key).
On top of it, for replay protection (docs/webhooks.md):

- the body is an envelope ``{"id", "event", "timestamp", "data"}``: ``id`` is the event's UUID (the
  same on every retry), ``timestamp`` the event's creation time in Unix seconds. Both are covered by
  the seed's signature, so a receiver can drop an ``id`` it has seen;
- ``X-Webhook-Id`` and ``X-Webhook-Event`` repeat ``id`` and ``event`` for receivers that route
  before parsing;
- ``X-Webhook-Timestamp`` is the time of *this attempt* (Unix seconds) and
  ``X-Webhook-Timestamp-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>``
  authenticates it, so a receiver may refuse anything older than a few minutes and keep seen ids only
  for that window (retries carry a fresh timestamp over the unchanged body).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
TIMESTAMP_SIGNATURE_HEADER = "X-Webhook-Timestamp-Signature"
EVENT_ID_HEADER = "X-Webhook-Id"
EVENT_TYPE_HEADER = "X-Webhook-Event"
PREFIX = "sha256="
SECRET_PREFIX = "whsec_"
#: Default freshness window a receiver applies to ``X-Webhook-Timestamp``.
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookVerificationError(ValueError):
    """A delivery that a receiver must refuse (bad signature, stale timestamp, replayed id)."""


def new_secret() -> str:
    """A fresh endpoint secret (256 bits of randomness), shown to the broker once."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>`` over the raw body: the value of ``X-Webhook-Signature``."""
    return PREFIX + _hmac_hex(secret, body)


def sign_timestamped(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` over ``b"<timestamp>." + body``: the value of ``X-Webhook-Timestamp-Signature``."""
    return PREFIX + _hmac_hex(secret, str(int(timestamp)).encode("ascii") + b"." + body)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money stays exact: a string, never a float
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serializable in a webhook: {type(value).__name__}")


def encode_envelope(*, event_id: uuid.UUID | str, event_type: str, timestamp: int, data: Mapping[str, Any]) -> bytes:
    """The exact bytes of a webhook body (compact JSON, keys sorted, Decimals as strings).

    The bytes are stored in the outbox and sent unchanged on every attempt.
    """
    envelope = {"id": str(event_id), "event": event_type, "timestamp": int(timestamp), "data": dict(data)}
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), default=_json_default).encode("utf-8")


def delivery_headers(
    *, secret: str, event_id: uuid.UUID | str, event_type: str, body: bytes, now: int
) -> dict[str, str]:
    """Headers of one delivery attempt made at Unix time ``now``."""
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
        TIMESTAMP_HEADER: str(int(now)),
        TIMESTAMP_SIGNATURE_HEADER: sign_timestamped(secret, now, body),
        EVENT_ID_HEADER: str(event_id),
        EVENT_TYPE_HEADER: event_type,
    }


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    """The seed's check, in constant time: does ``signature`` sign ``body`` with ``secret``?"""
    if not signature:
        return False
    return hmac.compare_digest(signature.encode("utf-8"), sign(secret, body).encode("utf-8"))


def verify_delivery(
    *,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    seen: Callable[[str], bool],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> dict[str, Any]:
    """What a careful receiver does; returns the parsed event or raises ``WebhookVerificationError``.

    ``headers`` is looked up case-insensitively. ``seen(event_id)`` answers whether the receiver has
    already accepted that id (and remembers it when it answers False). Order: the body signature,
    the timestamp signature, freshness, then the id, so a forged request never consumes an id.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if not verify_signature(secret, body, lowered.get(SIGNATURE_HEADER.lower())):
        raise WebhookVerificationError("invalid signature")
    raw_ts = lowered.get(TIMESTAMP_HEADER.lower(), "")
    if not raw_ts.isdigit():
        raise WebhookVerificationError("missing timestamp")
    ts = int(raw_ts)
    ts_sig = lowered.get(TIMESTAMP_SIGNATURE_HEADER.lower(), "")
    if not hmac.compare_digest(ts_sig.encode("utf-8"), sign_timestamped(secret, ts, body).encode("utf-8")):
        raise WebhookVerificationError("invalid timestamp signature")
    if abs(now - ts) > tolerance_seconds:
        raise WebhookVerificationError("stale timestamp")
    event = json.loads(body)
    if seen(str(event["id"])):
        raise WebhookVerificationError("replayed event id")
    return event
