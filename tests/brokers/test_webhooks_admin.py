"""The webhook console: deliveries with their attempts, redelivery, endpoints whose secret is shown
only once (on creation and rotation), all within the staff's broker."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from brokers.models import WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from brokers.services import brokers as broker_services
from brokers.services.webhooks import webhook_deliver, webhook_emit, webhook_endpoint_set
from tests.brokers.conftest import make_broker
from tests.brokers.test_webhooks import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _staff(broker, name) -> Client:
    user = get_user_model().objects.create_user(username=name, password="pw-123456789", is_staff=True)
    broker_services.broker_staff_add(broker=broker, user=user)
    c = Client()
    assert c.login(username=name, password="pw-123456789")
    return c


@pytest.fixture
def world(receiver):
    acme, _ = make_broker("acme-hooks")
    zeta, _ = make_broker("zeta-hooks")
    secrets = {b.pk: webhook_endpoint_set(broker=b, url=receiver.url) for b in (acme, zeta)}
    receiver.script = [(500, 0)]
    failed = webhook_emit(broker=acme, event_type="deposit", data={"marker": "acme-deposit"})
    webhook_deliver(delivery_id=failed.pk)
    other = webhook_emit(broker=zeta, event_type="deposit", data={"marker": "zeta-deposit"})
    return {"acme": acme, "zeta": zeta, "secrets": secrets, "failed": failed, "other": other}


def test_delivery_page_shows_the_body_and_every_attempt_and_never_a_secret(world):
    c = _staff(world["acme"], "acme-ops")
    body = c.get(reverse("admin:brokers_webhookdelivery_change", args=[world["failed"].pk])).content.decode()
    assert "acme-deposit" in body and "HTTP 500" in body
    assert world["secrets"][world["acme"].pk] not in body
    listing = c.get(reverse("admin:brokers_webhookdelivery_changelist")).content.decode()
    assert str(world["failed"].event_id) in listing and str(world["other"].event_id) not in listing
    r = c.get(reverse("admin:brokers_webhookdelivery_change", args=[world["other"].pk]))
    assert r.status_code == 302  # another broker's delivery is "not found"


def test_redeliver_action_sends_again_within_scope(world, receiver, eager_celery, django_capture_on_commit_callbacks):
    c = _staff(world["acme"], "acme-ops")
    url = reverse("admin:brokers_webhookdelivery_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        r = c.post(
            url,
            {"action": "redeliver", "_selected_action": [world["failed"].pk, world["other"].pk]},
        )
    assert r.status_code == 302
    failed, other = (WebhookDelivery.objects.get(pk=d.pk) for d in (world["failed"], world["other"]))
    assert failed.status == WebhookDeliveryStatus.DELIVERED and failed.attempts == 2
    assert other.attempts == 0  # not in this staff's scope: untouched
    assert [r["headers"]["X-Webhook-Id"] for r in receiver.requests] == [str(failed.event_id)] * 2


def test_endpoint_secret_is_shown_once_on_rotation_and_never_on_the_endpoint_page(world):
    c = _staff(world["acme"], "acme-ops")
    endpoint = WebhookEndpoint.objects.get(broker=world["acme"])
    page = c.get(reverse("admin:brokers_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert world["secrets"][world["acme"].pk] not in page and endpoint.secret_encrypted not in page

    r = c.post(
        reverse("admin:brokers_webhookendpoint_changelist"),
        {"action": "rotate_secret", "_selected_action": [endpoint.pk]},
    )
    assert r.status_code == 200 and "no-store" in r["Cache-Control"]
    endpoint.refresh_from_db()
    assert endpoint.secret != world["secrets"][world["acme"].pk]
    assert endpoint.secret in r.content.decode()
    page = c.get(reverse("admin:brokers_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert endpoint.secret not in page


def test_broker_staff_set_an_endpoint_for_their_own_broker_only(receiver):
    acme, _ = make_broker("acme-new")
    zeta, _ = make_broker("zeta-new")
    c = _staff(acme, "acme-new-ops")
    add = reverse("admin:brokers_webhookendpoint_add")
    refused = c.post(add, {"broker": zeta.pk, "url": receiver.url})
    assert refused.status_code == 200 and not WebhookEndpoint.objects.filter(broker=zeta).exists()
    r = c.post(add, {"broker": acme.pk, "url": receiver.url})
    assert r.status_code == 200 and "no-store" in r["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get(broker=acme)
    assert endpoint.secret in r.content.decode()
