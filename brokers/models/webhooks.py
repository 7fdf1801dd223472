"""The webhook outbox: endpoints, deliveries and their attempts.

A delivery row is written in the same transaction as the event it reports (``webhook_emit``), with
the exact body bytes that every attempt sends; each attempt is logged before its POST. Rows change
only through ``brokers.services.webhooks``.
"""

import uuid

from django.db import models

from mmsite.crypto import decrypt_json

__all__ = [
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDeliveryQuerySet",
    "WebhookDeliveryStatus",
    "WebhookEndpoint",
]


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending"  # not yet attempted, or an attempt is in flight
    DELIVERED = "delivered", "delivered"  # a 2xx answer
    FAILED = "failed", "failed"  # the last attempt failed; another is scheduled at next_attempt_at
    DEAD = "dead", "dead"  # retry window over; only a redelivery from the console sends it again


class WebhookEndpoint(models.Model):
    """Where a broker receives its webhooks. The secret is encrypted at rest and shown only once."""

    broker = models.OneToOneField("brokers.Broker", on_delete=models.CASCADE, related_name="webhook_endpoint")
    url = models.URLField(max_length=500)
    secret_encrypted = models.TextField(editable=False)
    active = models.BooleanField(default=True)
    secret_rotated_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.broker} -> {self.url}"

    @property
    def secret(self) -> str:
        """The plaintext secret, for signing only (never rendered)."""
        return str(decrypt_json(self.secret_encrypted))


class WebhookDeliveryQuerySet(models.QuerySet):
    def visible_to(self, broker_ids):
        """Deliveries of the given brokers (the console's scoping for broker staff)."""
        return self.filter(broker_id__in=broker_ids)


class WebhookDelivery(models.Model):
    """One event for one broker, and the state of getting it delivered."""

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    broker = models.ForeignKey("brokers.Broker", on_delete=models.CASCADE, related_name="webhook_deliveries")
    event_type = models.CharField(max_length=64)  # "client.created", "withdrawal.broker_locked", "fill", ...
    body = models.BinaryField(editable=False)  # the exact bytes every attempt sends
    status = models.CharField(
        max_length=16, choices=WebhookDeliveryStatus.choices, default=WebhookDeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # An attempt in flight holds the delivery until then; another worker may claim it only after.
    claimed_until = models.DateTimeField(null=True, blank=True)
    # Retries stop (status dead) when the next one would fall after this (3 days after the event).
    give_up_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # the sweep: due deliveries that still need an attempt
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=models.Q(status__in=["pending", "failed"]),
            ),
            models.Index(fields=["broker", "-created_at"], name="webhook_delivery_broker"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "delivered", "failed", "dead"]),
                name="webhook_delivery_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} ({self.status})"

    @property
    def body_text(self) -> str:
        return bytes(self.body).decode("utf-8")


class WebhookAttempt(models.Model):
    """One POST of a delivery: written before the request is sent, completed with its outcome."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    url = models.URLField(max_length=500)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["delivery_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_unique"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.http_status or self.error or 'in flight'}"

    @property
    def succeeded(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300
