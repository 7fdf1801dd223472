"""Webhooks: endpoints, the outbox and delivery (docs/webhooks.md).

- ``webhook_endpoint_set`` stores a broker's URL and a new secret (encrypted at rest) and returns the
  secret, the only time it is ever shown.
- ``webhook_emit`` writes the outbox row inside the caller's transaction and asks for delivery once
  that transaction commits: an event that rolls back is never sent, one that commits is never lost
  (the beat sweep delivers rows whose task message was lost).
- ``webhook_deliver`` makes one attempt: it claims the row under a row lock (so two workers never POST
  the same attempt at once), logs the attempt, commits, POSTs with a short timeout, then records the
  outcome. A worker that dies mid-POST leaves a claim that expires; the sweep then tries again, so a
  receiver may see an event twice and dedupes on its id (at-least-once).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import uuid
from typing import Any

import requests
from django.conf import settings
from django.core.validators import URLValidator
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from brokers import signing
from brokers.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from mmsite.crypto import encrypt_json

logger = logging.getLogger(__name__)

_RETRYABLE = (WebhookDeliveryStatus.PENDING, WebhookDeliveryStatus.FAILED)
_USER_AGENT = "mmsite-webhooks/1"


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def webhook_timeout_seconds() -> float:
    return float(_setting("WEBHOOK_TIMEOUT_SECONDS", 5.0))


def webhook_retry_window() -> dt.timedelta:
    return dt.timedelta(hours=float(_setting("WEBHOOK_RETRY_WINDOW_HOURS", 72)))


def webhook_backoff(attempt_number: int) -> dt.timedelta:
    """Delay before the attempt after attempt ``attempt_number`` (1-based), without jitter.

    ``base * 2 ** (n - 1)``, capped: 30 s, 1 min, 2 min, ... 4 h 16 min, then every 6 h (defaults).
    """
    base = float(_setting("WEBHOOK_RETRY_BASE_SECONDS", 30))
    cap = float(_setting("WEBHOOK_RETRY_MAX_DELAY_SECONDS", 6 * 3600))
    exponent = min(max(attempt_number - 1, 0), 40)
    return dt.timedelta(seconds=min(cap, base * (2**exponent)))


def _with_jitter(delay: dt.timedelta) -> dt.timedelta:
    # up to +10 % so that a receiver that comes back is not hit by every queued retry at once
    return delay * (1 + random.uniform(0, 0.1))  # noqa: S311


# --- endpoints ---------------------------------------------------------------------------------------


def webhook_endpoint_set(*, broker, url: str) -> str:
    """Set (or replace) the broker's webhook URL with a new secret; returns the secret, shown once.

    Calling it again rotates the secret: deliveries not yet made are signed with the new one.
    """
    URLValidator(schemes=["http", "https"])(url)
    secret = signing.new_secret()
    now = timezone.now()
    WebhookEndpoint.objects.update_or_create(
        broker=broker,
        defaults={"url": url, "secret_encrypted": encrypt_json(secret), "active": True, "secret_rotated_at": now},
    )
    return secret


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, url: str, active: bool) -> WebhookEndpoint:
    """Change the URL or switch the endpoint on or off, keeping its secret."""
    URLValidator(schemes=["http", "https"])(url)
    endpoint.url = url
    endpoint.active = active
    endpoint.save(update_fields=["url", "active", "updated_at"])
    return endpoint


def webhook_endpoint_deactivate(*, broker) -> bool:
    """Stop emitting events to the broker (rows already in the outbox wait, and die after the window)."""
    return WebhookEndpoint.objects.filter(broker=broker, active=True).update(active=False) > 0


# --- the outbox --------------------------------------------------------------------------------------


#: Namespace of event ids derived from an event key (``webhook_emit(..., event_key=...)``).
EVENT_ID_NAMESPACE = uuid.UUID("6f1d8a52-4b0e-4c1e-9a7e-5d2b8c3f9e10")


def webhook_emit(
    *, broker, event_type: str, data: dict[str, Any], event_key: str | None = None
) -> WebhookDelivery | None:
    """Write the event to the outbox in the caller's transaction; deliver after it commits.

    ``broker`` is a Broker or its primary key. Returns None (and writes nothing) when the broker has no
    active endpoint. ``data`` must be JSON-serializable; Decimals become strings, datetimes ISO 8601.

    ``event_key``: a key naming the event itself (``"fill:<trade id>:taker"``). The event id is then
    derived from it (UUID 5 of broker and key), so emitting the same event twice writes one row and
    returns the first; without a key every call is a new event.
    """
    broker_id = getattr(broker, "pk", broker)
    if not WebhookEndpoint.objects.filter(broker_id=broker_id, active=True).exists():
        return None
    now = timezone.now()
    if event_key is not None:
        event_id = uuid.uuid5(EVENT_ID_NAMESPACE, f"{broker_id}:{event_key}")
        existing = WebhookDelivery.objects.filter(event_id=event_id).first()
        if existing is not None:
            return existing
    else:
        event_id = uuid.uuid4()
    body = signing.encode_envelope(event_id=event_id, event_type=event_type, timestamp=int(now.timestamp()), data=data)
    fields = {
        "event_id": event_id,
        "broker_id": broker_id,
        "event_type": event_type,
        "body": body,
        "next_attempt_at": now,
        "give_up_at": now + webhook_retry_window(),
    }
    if event_key is None:
        delivery = WebhookDelivery.objects.create(**fields)
    else:
        try:
            with transaction.atomic():  # a savepoint: a concurrent emit of the same event may win
                delivery = WebhookDelivery.objects.create(**fields)
        except IntegrityError:
            return WebhookDelivery.objects.get(event_id=event_id)
    transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def _enqueue(delivery_id: int) -> None:
    from brokers.tasks.webhooks import webhook_deliver_task  # tasks import services: import late

    try:
        webhook_deliver_task.delay(delivery_id)
    except (KombuOperationalError, OSError):
        # the row is committed: the beat sweep delivers it; never fail the caller after its commit
        logger.warning("webhook delivery %s not queued; the sweep will send it", delivery_id, exc_info=True)


def webhook_deliveries_due(*, now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """Ids of deliveries whose next attempt is due and that no worker holds, oldest first."""
    now = now or timezone.now()
    qs = (
        WebhookDelivery.objects.filter(status__in=_RETRYABLE, next_attempt_at__lte=now)
        .exclude(claimed_until__gt=now)
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)
    )
    return list(qs[:limit])


# --- delivery ----------------------------------------------------------------------------------------


def _claim(delivery_id: int) -> tuple[WebhookDelivery, WebhookAttempt, WebhookEndpoint | None] | None:
    """Lock the delivery row, check that an attempt is due and unclaimed, log the attempt, claim it.

    Runs in its own transaction (``SELECT ... FOR UPDATE`` on the delivery) and commits before the POST,
    so the attempt is on record before it is made and no transaction stays open over the network.
    """
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None or delivery.status not in _RETRYABLE or delivery.next_attempt_at > now:
            return None
        if delivery.claimed_until is not None and delivery.claimed_until > now:
            return None  # another worker's attempt is in flight
        endpoint = WebhookEndpoint.objects.filter(broker_id=delivery.broker_id, active=True).first()
        delivery.attempts += 1
        # the claim outlives the request's timeout, so it only expires when the worker is gone
        delivery.claimed_until = now + dt.timedelta(seconds=webhook_timeout_seconds() * 2 + 30)
        delivery.save(update_fields=["attempts", "claimed_until", "updated_at"])
        attempt = WebhookAttempt.objects.create(
            delivery=delivery, number=delivery.attempts, url=endpoint.url if endpoint else "", started_at=now
        )
    return delivery, attempt, endpoint


def _post(endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> tuple[int | None, str, str]:
    body = bytes(delivery.body)
    try:
        secret = endpoint.secret
    except ValueError:  # FIELD_ENCRYPTION_KEY changed: a failed attempt on record, not a stuck claim
        logger.error("webhook secret of %s cannot be decrypted; rotate it", endpoint)
        return None, "endpoint secret cannot be decrypted (rotate it)", ""
    headers = signing.delivery_headers(
        secret=secret,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        body=body,
        now=int(time.time()),
    )
    headers["User-Agent"] = _USER_AGENT
    timeout = webhook_timeout_seconds()
    try:
        # redirects are not followed: a 3xx is a failed attempt (the body must reach the URL set)
        resp = requests.post(endpoint.url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        return None, f"timeout after {timeout:g}s", ""
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500], ""
    return resp.status_code, "", resp.text[:200]


def webhook_deliver(*, delivery_id: int) -> WebhookDelivery | None:
    """Make one attempt at a due delivery. Returns the delivery, or None when there was nothing to do
    (already delivered, dead, not yet due, or claimed by another worker). Safe to call twice."""
    claimed = _claim(delivery_id)
    if claimed is None:
        return None
    delivery, attempt, endpoint = claimed
    started = time.monotonic()
    if endpoint is None:
        http_status, error, excerpt = None, "no active webhook endpoint", ""
    else:
        http_status, error, excerpt = _post(endpoint, delivery)
    duration_ms = int((time.monotonic() - started) * 1000)
    if http_status is not None and not 200 <= http_status < 300 and not error:
        error = f"HTTP {http_status}"
    return _record(
        delivery.pk, attempt.pk, http_status=http_status, error=error, excerpt=excerpt, duration_ms=duration_ms
    )


def _record(
    delivery_id: int, attempt_id: int, *, http_status: int | None, error: str, excerpt: str, duration_ms: int
) -> WebhookDelivery:
    """Complete the attempt row and move the delivery on (delivered, failed with a retry time, or dead)."""
    now = timezone.now()
    ok = http_status is not None and 200 <= http_status < 300
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        attempt = WebhookAttempt.objects.get(pk=attempt_id)
        attempt.finished_at = now
        attempt.http_status = http_status
        attempt.error = error[:500]
        attempt.duration_ms = duration_ms
        attempt.response_excerpt = excerpt[:500]
        attempt.save(update_fields=["finished_at", "http_status", "error", "duration_ms", "response_excerpt"])
        if delivery.attempts != attempt.number or delivery.status not in _RETRYABLE:
            # a later attempt (after our claim expired) or a redelivery owns the row now
            return delivery
        fields = ["status", "claimed_until", "last_error", "updated_at"]
        delivery.claimed_until = None
        if ok:
            delivery.status = WebhookDeliveryStatus.DELIVERED
            delivery.delivered_at = now
            delivery.last_error = ""
            fields.append("delivered_at")
        else:
            delivery.last_error = error[:500]
            next_at = now + _with_jitter(webhook_backoff(attempt.number))
            if next_at > delivery.give_up_at:
                delivery.status = WebhookDeliveryStatus.DEAD
                logger.warning("webhook %s dead after %s attempts: %s", delivery.event_id, attempt.number, error)
            else:
                delivery.status = WebhookDeliveryStatus.FAILED
                delivery.next_attempt_at = next_at
                fields.append("next_attempt_at")
        delivery.save(update_fields=fields)
    return delivery


class RedeliveryRefused(ValueError):
    pass


def webhook_redeliver(*, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again now (any status), with a fresh 3-day retry window.

    The body and event id are unchanged: a receiver that already processed it drops it as a replay.
    Refused while an attempt is in flight.
    """
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.claimed_until is not None and delivery.claimed_until > now:
            raise RedeliveryRefused("an attempt is in flight")
        delivery.status = WebhookDeliveryStatus.PENDING
        delivery.next_attempt_at = now
        delivery.give_up_at = now + webhook_retry_window()
        delivery.claimed_until = None
        delivery.save(update_fields=["status", "next_attempt_at", "give_up_at", "claimed_until", "updated_at"])
        transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


# --- fills of the house exchange ---------------------------------------------------------------------


def _fill_payload(trade, *, role: str, client) -> dict[str, Any]:
    order = trade.taker_order if role == "taker" else trade.maker_order
    side = trade.taker_side if role == "taker" else ("sell" if trade.taker_side == "buy" else "buy")
    return {
        "trade_id": trade.trade_id,
        "user_id": client.user_id,
        "symbol": trade.market.symbol,
        "side": side,
        "role": role,
        "price": trade.price,
        "quantity": trade.quantity,
        "fee": trade.taker_fee if role == "taker" else trade.maker_fee,
        # the exchange charges a buyer in the base asset and a seller in the quote asset
        "fee_asset": trade.market.base_asset if side == "buy" else trade.market.quote_asset,
        "order_id": order.order_id,
        "client_order_id": order.client_order_id or None,
        "executed_at": trade.created_at,
    }


def webhook_fills_recent_ids(*, since: dt.datetime, until: dt.datetime, limit: int = 5000) -> list[int]:
    """Ids of live trades in ``[since, until)`` with a broker client on either side (the fill sweep)."""
    from brokers.models import BrokerClient
    from exchanges.models import ExchangeTrade

    clients = BrokerClient.objects.values("trader_id")
    return list(
        ExchangeTrade.objects.filter(mode="live", created_at__gte=since, created_at__lt=until)
        .filter(models.Q(taker_trader_id__in=clients) | models.Q(maker_trader_id__in=clients))
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )


def webhook_fills_emit(*, trade_ids: list[int]) -> list[WebhookDelivery]:
    """A ``fill`` event to the broker of each trader (taker and maker) of the given live trades.

    Traders who are not broker clients are skipped. Idempotent: each (trade, side) is one event id.
    Call inside a transaction (the outbox rows and their on-commit delivery).
    """
    from brokers.models import BrokerClient
    from exchanges.models import ExchangeTrade

    trades = list(
        ExchangeTrade.objects.filter(pk__in=trade_ids, mode="live")
        .select_related("market", "taker_order", "maker_order")
        .order_by("pk")
    )
    trader_ids = {t.taker_trader_id for t in trades} | {t.maker_trader_id for t in trades}
    clients = {c.trader_id: c for c in BrokerClient.objects.filter(trader_id__in=trader_ids)}
    out: list[WebhookDelivery] = []
    for trade in trades:
        for role, trader_id in (("taker", trade.taker_trader_id), ("maker", trade.maker_trader_id)):
            client = clients.get(trader_id)
            if client is None:
                continue
            delivery = webhook_emit(
                broker=client.broker_id,
                event_type="fill",
                data=_fill_payload(trade, role=role, client=client),
                event_key=f"fill:{trade.trade_id}:{role}",
            )
            if delivery is not None:
                out.append(delivery)
    return out
