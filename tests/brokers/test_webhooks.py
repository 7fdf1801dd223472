"""Webhook outbox and delivery: real HTTP POSTs to receivers on loopback (a threaded http.server, and
the seed's Node verifier run with ``node``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.db import connection, transaction
from django.utils import timezone

from brokers import signing
from brokers.models import WebhookAttempt, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from brokers.services.webhooks import (
    webhook_backoff,
    webhook_deliver,
    webhook_emit,
    webhook_endpoint_set,
    webhook_redeliver,
)
from brokers.tasks.webhooks import webhook_deliver_task, webhooks_sweep_task
from tests.brokers.conftest import make_broker

NODE_DIR = Path(__file__).parent / "node_verifier"
SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "003_8ad2a3563c13f1c8.txt"


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request; answers from ``script`` (a list of
    ``(status, delay_seconds)``, then 200), or through ``verify`` when set (a replay-checking receiver)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[tuple[int, float]] = []
        self.verify = None  # callable(headers, body) -> status
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append({"headers": dict(self.headers.items()), "body": body})
                    status, delay = receiver.script.pop(0) if receiver.script else (200, 0)
                if receiver.verify is not None:
                    status = receiver.verify(dict(self.headers.items()), body)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, format, *args):  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def broker(db):
    broker, _raw = make_broker("hooked")
    return broker


@pytest.fixture
def endpoint_secret(broker, receiver):
    return webhook_endpoint_set(broker=broker, url=receiver.url)


@pytest.fixture
def fast_webhooks(settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    return settings


def _emit(broker, event_type="deposit", data=None) -> WebhookDelivery:
    with transaction.atomic():
        return webhook_emit(broker=broker, event_type=event_type, data=data or {"user_id": "u1", "amount": "5.00"})


def _make_due(delivery: WebhookDelivery) -> None:
    """Time passes until the next attempt is due (the clock is not mocked: the row is moved)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))


# --- endpoints -----------------------------------------------------------------------------------------


def test_endpoint_secret_is_returned_once_and_stored_encrypted(broker, receiver):
    secret = webhook_endpoint_set(broker=broker, url=receiver.url)
    endpoint = WebhookEndpoint.objects.get(broker=broker)
    assert secret.startswith("whsec_")
    assert secret not in endpoint.secret_encrypted
    assert endpoint.secret == secret
    rotated = webhook_endpoint_set(broker=broker, url=receiver.url)
    assert rotated != secret
    assert WebhookEndpoint.objects.get(broker=broker).secret == rotated


def test_endpoint_url_must_be_http(broker):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        webhook_endpoint_set(broker=broker, url="ftp://example.invalid/hook")


# --- the outbox ----------------------------------------------------------------------------------------


def test_no_endpoint_no_outbox_row(broker):
    assert webhook_emit(broker=broker, event_type="deposit", data={}) is None
    assert WebhookDelivery.objects.count() == 0


def test_committed_event_is_posted_after_commit_signed_as_the_seed_shows(
    broker, receiver, endpoint_secret, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            delivery = webhook_emit(broker=broker, event_type="deposit", data={"user_id": "u1", "amount": "5.00"})
            assert receiver.requests == []  # nothing leaves before the commit

    assert len(receiver.requests) == 1
    sent = receiver.requests[0]
    delivery.refresh_from_db()
    assert sent["body"] == bytes(delivery.body)  # the exact stored bytes
    expected = "sha256=" + __import__("hmac").new(endpoint_secret.encode(), sent["body"], "sha256").hexdigest()
    assert sent["headers"]["X-Webhook-Signature"] == expected
    body = json.loads(sent["body"])
    assert body["id"] == sent["headers"]["X-Webhook-Id"] == str(delivery.event_id)
    assert body["event"] == sent["headers"]["X-Webhook-Event"] == "deposit"
    assert body["data"] == {"user_id": "u1", "amount": "5.00"}
    assert abs(int(sent["headers"]["X-Webhook-Timestamp"]) - time.time()) < 60
    assert delivery.status == WebhookDeliveryStatus.DELIVERED and delivery.attempts == 1
    attempt = delivery.attempt_log.get()
    assert (attempt.number, attempt.http_status, attempt.error) == (1, 200, "")
    assert attempt.duration_ms is not None and attempt.finished_at is not None


def test_rolled_back_event_is_never_recorded_nor_sent(
    broker, receiver, endpoint_secret, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                webhook_emit(broker=broker, event_type="deposit", data={})
                raise RuntimeError("the deposit failed")
    assert callbacks == []
    assert WebhookDelivery.objects.count() == 0
    assert receiver.requests == []


# --- retries -------------------------------------------------------------------------------------------


def test_backoff_doubles_from_30_seconds_and_is_capped_at_6_hours():
    assert [webhook_backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert webhook_backoff(10).total_seconds() == 30 * 2**9
    assert webhook_backoff(11).total_seconds() == 6 * 3600
    assert webhook_backoff(500).total_seconds() == 6 * 3600
    # over 3 days that is about twenty attempts
    elapsed, attempts = 0.0, 1
    while elapsed + webhook_backoff(attempts).total_seconds() <= 72 * 3600:
        elapsed += webhook_backoff(attempts).total_seconds()
        attempts += 1
    assert 15 <= attempts <= 25


def test_500_is_retried_with_exponential_backoff_until_delivered(broker, receiver, endpoint_secret):
    receiver.script = [(500, 0), (503, 0)]
    delivery = _emit(broker)

    before = timezone.now()
    d = webhook_deliver(delivery_id=delivery.pk)
    assert d.status == WebhookDeliveryStatus.FAILED and d.last_error == "HTTP 500"
    assert before + dt.timedelta(seconds=30) <= d.next_attempt_at <= timezone.now() + dt.timedelta(seconds=33.1)
    assert webhook_deliver(delivery_id=delivery.pk) is None  # not due yet: no request
    assert len(receiver.requests) == 1

    _make_due(delivery)
    before = timezone.now()
    d = webhook_deliver(delivery_id=delivery.pk)
    assert d.status == WebhookDeliveryStatus.FAILED
    assert before + dt.timedelta(seconds=60) <= d.next_attempt_at <= timezone.now() + dt.timedelta(seconds=66.1)

    _make_due(delivery)
    d = webhook_deliver(delivery_id=delivery.pk)
    assert d.status == WebhookDeliveryStatus.DELIVERED
    assert list(d.attempt_log.values_list("number", "http_status")) == [(1, 500), (2, 503), (3, 200)]
    # every attempt sent the same body and event id
    assert len({r["body"] for r in receiver.requests}) == 1
    assert len({r["headers"]["X-Webhook-Id"] for r in receiver.requests}) == 1


def test_timeout_is_a_failed_attempt_and_the_sweep_retries_it(
    broker, receiver, endpoint_secret, fast_webhooks, eager_celery
):
    receiver.script = [(200, 1.5)]  # answers after the 0.5 s timeout
    delivery = _emit(broker)
    d = webhook_deliver(delivery_id=delivery.pk)
    assert d.status == WebhookDeliveryStatus.FAILED
    attempt = d.attempt_log.get()
    assert attempt.http_status is None and attempt.error.startswith("timeout")
    assert 400 <= attempt.duration_ms < 1500

    assert webhooks_sweep_task() == 0  # not due yet
    _make_due(delivery)
    assert webhooks_sweep_task() == 1
    d.refresh_from_db()
    assert d.status == WebhookDeliveryStatus.DELIVERED and d.attempts == 2


def test_connection_refused_is_a_failed_attempt(broker, fast_webhooks):
    r = Receiver()
    url = r.url
    r.stop()  # nothing listens there now
    webhook_endpoint_set(broker=broker, url=url)
    d = webhook_deliver(delivery_id=_emit(broker).pk)
    assert d.status == WebhookDeliveryStatus.FAILED and "ConnectionError" in d.last_error


def test_delivery_dies_when_the_next_retry_would_fall_after_3_days_and_can_be_redelivered(
    broker, receiver, endpoint_secret
):
    receiver.script = [(500, 0)]
    delivery = _emit(broker)
    assert delivery.give_up_at - delivery.created_at >= dt.timedelta(hours=72) - dt.timedelta(seconds=1)
    # the event is nearly 3 days old: its next retry would fall outside the window
    WebhookDelivery.objects.filter(pk=delivery.pk).update(give_up_at=timezone.now() + dt.timedelta(seconds=20))
    d = webhook_deliver(delivery_id=delivery.pk)
    assert d.status == WebhookDeliveryStatus.DEAD
    assert webhooks_sweep_task() == 0  # dead rows are not retried

    d = webhook_redeliver(delivery_id=delivery.pk)
    assert d.status == WebhookDeliveryStatus.PENDING
    d = webhook_deliver(delivery_id=delivery.pk)
    assert d.status == WebhookDeliveryStatus.DELIVERED
    assert list(d.attempt_log.values_list("number", "http_status")) == [(1, 500), (2, 200)]


def test_a_redirect_is_not_followed_and_counts_as_a_failure(broker, receiver, endpoint_secret):
    receiver.script = [(302, 0)]
    d = webhook_deliver(delivery_id=_emit(broker).pk)
    assert d.status == WebhookDeliveryStatus.FAILED and d.last_error == "HTTP 302"


# --- at most one attempt at a time ---------------------------------------------------------------------


def test_task_run_twice_delivers_once(broker, receiver, endpoint_secret, eager_celery):
    delivery = _emit(broker)
    assert webhook_deliver_task.delay(delivery.pk).get() == "delivered"
    assert webhook_deliver_task.delay(delivery.pk).get() is None
    assert len(receiver.requests) == 1
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1


def test_an_attempt_in_flight_is_not_claimed_again(broker, receiver, endpoint_secret):
    delivery = _emit(broker)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_until=timezone.now() + dt.timedelta(seconds=30))
    assert webhook_deliver(delivery_id=delivery.pk) is None
    assert receiver.requests == []
    # a worker that died mid-POST: its claim expires, and the delivery is attempted again
    WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_until=timezone.now() - dt.timedelta(seconds=1))
    assert webhook_deliver(delivery_id=delivery.pk).status == WebhookDeliveryStatus.DELIVERED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_post_one_attempt(receiver):
    broker, _raw = make_broker("concurrent-hooks")
    webhook_endpoint_set(broker=broker, url=receiver.url)
    receiver.script = [(200, 0.5)]  # a slow receiver: the second worker arrives mid-POST
    delivery = _emit(broker)
    barrier = threading.Barrier(4)
    results = []

    def worker():
        try:
            barrier.wait()
            results.append(webhook_deliver(delivery_id=delivery.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(receiver.requests) == 1
    assert sum(r is not None for r in results) == 1
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1


# --- replay protection at the receiver -----------------------------------------------------------------


def test_receiver_rejects_a_replayed_delivery_and_an_old_timestamp(broker, receiver, endpoint_secret):
    seen: set[str] = set()

    def check(headers, body, *, now=None):
        def was_seen(event_id):
            if event_id in seen:
                return True
            seen.add(event_id)
            return False

        try:
            signing.verify_delivery(
                secret=endpoint_secret, headers=headers, body=body, now=now or int(time.time()), seen=was_seen
            )
        except signing.WebhookVerificationError:
            return 400
        return 200

    receiver.verify = check
    d = webhook_deliver(delivery_id=_emit(broker).pk)
    assert d.status == WebhookDeliveryStatus.DELIVERED
    captured = receiver.requests[0]

    # an attacker replays the captured request byte for byte
    replay = requests.post(receiver.url, data=captured["body"], headers=captured["headers"], timeout=5)
    assert replay.status_code == 400
    # the same request, captured and held back past the receiver's 5-minute window
    assert (
        check(captured["headers"], captured["body"], now=int(captured["headers"]["X-Webhook-Timestamp"]) + 301) == 400
    )
    # a genuine retry of a new event is accepted: a fresh timestamp over the unchanged body
    receiver.script = []
    assert webhook_deliver(delivery_id=_emit(broker).pk).status == WebhookDeliveryStatus.DELIVERED


# --- the seed's Node verifier --------------------------------------------------------------------------


def test_node_verifier_is_the_seeds_code_verbatim():
    if not SEED.exists():
        pytest.skip("the seed documents are not beside the repository")
    seed_lines = SEED.read_text(encoding="utf-8").splitlines()
    start = seed_lines.index("const crypto = require('crypto');")
    ours = (NODE_DIR / "verify_webhook.js").read_text(encoding="utf-8").splitlines()
    assert ours[:11] == seed_lines[start : start + 11]
    assert ours[10] == "}"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def node_receiver(broker):
    """The seed's verifier behind a Node HTTP receiver, with the secret our endpoint got: ``(proc, secret)``."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    port = _free_port()
    secret = webhook_endpoint_set(broker=broker, url=f"http://127.0.0.1:{port}/webhook")
    proc = subprocess.Popen(
        [node, str(NODE_DIR / "receiver.js")],
        env={**os.environ, "WEBHOOK_SECRET": secret, "PORT": str(port)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().split() == ["listening", str(port)]
        yield proc, secret
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _node_verdicts(proc, count: int) -> list[dict]:
    return [json.loads(proc.stdout.readline()) for _ in range(count)]


def test_seed_node_verifier_accepts_our_deliveries_and_rejects_a_tampered_body(broker, node_receiver):
    proc, secret = node_receiver
    first = _emit(broker, "client.created", {"user_id": "u1", "username": "sso_x_u1"})
    second = _emit(broker, "deposit", {"user_id": "u1", "amount": "12.345678"})
    assert webhook_deliver(delivery_id=first.pk).status == WebhookDeliveryStatus.DELIVERED
    assert webhook_deliver(delivery_id=second.pk).status == WebhookDeliveryStatus.DELIVERED
    assert _node_verdicts(proc, 2) == [
        {"accepted": True, "id": str(first.event_id), "event": "client.created"},
        {"accepted": True, "id": str(second.event_id), "event": "deposit"},
    ]

    # the same signed request with one byte of the body changed is refused by the seed's code
    endpoint = WebhookEndpoint.objects.get(broker=broker)
    body = bytes(second.body)
    headers = signing.delivery_headers(
        secret=secret, event_id=second.event_id, event_type="deposit", body=body, now=int(time.time())
    )
    tampered = body.replace(b"12.345678", b"92.345678")
    resp = requests.post(endpoint.url, data=tampered, headers=headers, timeout=5)
    assert (resp.status_code, resp.text) == (401, "Invalid signature")
    assert _node_verdicts(proc, 1)[0]["accepted"] is False
    # and the untampered one still passes (the refusal was the tampering, not the request)
    assert requests.post(endpoint.url, data=body, headers=headers, timeout=5).status_code == 200
    _node_verdicts(proc, 1)


def test_after_a_secret_rotation_the_old_secret_no_longer_verifies(broker, node_receiver):
    proc, _old = node_receiver
    endpoint = WebhookEndpoint.objects.get(broker=broker)
    webhook_endpoint_set(broker=broker, url=endpoint.url)  # the receiver still has the old secret
    d = webhook_deliver(delivery_id=_emit(broker).pk)
    assert d.status == WebhookDeliveryStatus.FAILED
    assert d.attempt_log.get().http_status == 401
    assert _node_verdicts(proc, 1)[0]["accepted"] is False


def test_an_undecryptable_secret_is_a_failed_attempt_not_a_stuck_claim(broker, receiver, endpoint_secret):
    WebhookEndpoint.objects.filter(broker=broker).update(secret_encrypted="not-a-fernet-token")
    d = webhook_deliver(delivery_id=_emit(broker).pk)
    assert d.status == WebhookDeliveryStatus.FAILED and d.claimed_until is None
    assert "cannot be decrypted" in d.attempt_log.get().error
    assert receiver.requests == []
