"""The pure webhook signing recipes (brokers.signing): the seed's scheme plus replay protection."""

import hashlib
import hmac
import json
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers import signing

SECRET = "whsec_test-secret"


def _delivery(body: bytes, now: int, secret: str = SECRET) -> dict[str, str]:
    return signing.delivery_headers(secret=secret, event_id="e-1", event_type="deposit", body=body, now=now)


def test_signature_is_sha256_prefix_and_hex_hmac_of_the_raw_body():
    body = b'{"event":"deposit"}'
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signing.sign(SECRET, body) == expected
    assert signing.verify_signature(SECRET, body, expected)


@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=199), st.integers(1, 255))
def test_any_change_to_the_body_breaks_the_signature(body, pos, flip):
    signature = signing.sign(SECRET, body)
    pos %= len(body)
    tampered = body[:pos] + bytes([body[pos] ^ flip]) + body[pos + 1 :]
    assert not signing.verify_signature(SECRET, tampered, signature)


def test_wrong_secret_or_missing_signature_is_refused():
    body = b"{}"
    assert not signing.verify_signature("other", body, signing.sign(SECRET, body))
    assert not signing.verify_signature(SECRET, body, None)
    assert not signing.verify_signature(SECRET, body, "")


def test_envelope_carries_id_event_timestamp_and_data_with_exact_decimals():
    event_id = uuid.uuid4()
    body = signing.encode_envelope(
        event_id=event_id, event_type="deposit", timestamp=1700000000, data={"amount": Decimal("100.10")}
    )
    parsed = json.loads(body)
    assert parsed == {"id": str(event_id), "event": "deposit", "timestamp": 1700000000, "data": {"amount": "100.10"}}
    # deterministic bytes: the same inputs always give the same body (what the outbox stores)
    again = signing.encode_envelope(
        event_id=event_id, event_type="deposit", timestamp=1700000000, data={"amount": Decimal("100.10")}
    )
    assert body == again


def test_envelope_refuses_values_that_are_not_json():
    with pytest.raises(TypeError):
        signing.encode_envelope(event_id="x", event_type="deposit", timestamp=1, data={"x": object()})


def test_headers_carry_id_event_timestamp_and_both_signatures():
    body = b'{"id":"e-1"}'
    headers = _delivery(body, now=1700000123)
    assert headers["X-Webhook-Signature"] == signing.sign(SECRET, body)
    assert headers["X-Webhook-Timestamp"] == "1700000123"
    assert headers["X-Webhook-Id"] == "e-1"
    assert headers["X-Webhook-Event"] == "deposit"
    expected_ts = hmac.new(SECRET.encode(), b"1700000123." + body, hashlib.sha256).hexdigest()
    assert headers["X-Webhook-Timestamp-Signature"] == "sha256=" + expected_ts


class _Seen:
    def __init__(self):
        self.ids: set[str] = set()

    def __call__(self, event_id: str) -> bool:
        if event_id in self.ids:
            return True
        self.ids.add(event_id)
        return False


def _body(event_id="e-1") -> bytes:
    return signing.encode_envelope(event_id=event_id, event_type="deposit", timestamp=1700000000, data={})


def test_receiver_accepts_a_fresh_delivery_once_and_refuses_its_replay():
    body, seen = _body(), _Seen()
    headers = _delivery(body, now=1700000000)
    assert signing.verify_delivery(secret=SECRET, headers=headers, body=body, now=1700000001, seen=seen)["id"] == "e-1"
    with pytest.raises(signing.WebhookVerificationError, match="replayed"):
        signing.verify_delivery(secret=SECRET, headers=headers, body=body, now=1700000002, seen=seen)


def test_receiver_refuses_an_old_timestamp_and_a_forged_fresh_one():
    body, seen = _body(), _Seen()
    old = _delivery(body, now=1700000000)
    with pytest.raises(signing.WebhookVerificationError, match="stale"):
        signing.verify_delivery(secret=SECRET, headers=old, body=body, now=1700000000 + 301, seen=seen)
    forged = dict(old, **{"X-Webhook-Timestamp": str(1700000000 + 301)})  # attacker bumps the clock
    with pytest.raises(signing.WebhookVerificationError, match="timestamp signature"):
        signing.verify_delivery(secret=SECRET, headers=forged, body=body, now=1700000000 + 301, seen=seen)
    assert seen.ids == set()  # refused requests never consume the id


def test_receiver_refuses_a_bad_body_signature_before_anything_else():
    body = _body()
    headers = _delivery(body, now=5, secret="another")
    with pytest.raises(signing.WebhookVerificationError, match="invalid signature"):
        signing.verify_delivery(secret=SECRET, headers=headers, body=body, now=5, seen=_Seen())


def test_new_secrets_are_prefixed_and_unique():
    a, b = signing.new_secret(), signing.new_secret()
    assert a.startswith("whsec_") and len(a) > 40 and a != b
