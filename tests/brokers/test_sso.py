"""SSO: broker-signed JWTs, HS256 pinned, exp required, tenant must match; the same user_id is one trader."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from django.test import Client

from brokers.models import BrokerClient
from brokers.services.brokers import broker_sso_secret_set
from exchanges.models import Trader

from .conftest import make_broker

pytestmark = pytest.mark.django_db

SECRET = "s" * 40


@pytest.fixture
def tenant():
    broker, _ = make_broker("rock", tenant_code="rock-3")
    broker.logout_redirect_url = "https://broker.example/bye"
    broker.save(update_fields=["logout_redirect_url"])
    broker_sso_secret_set(broker=broker, secret=SECRET)
    return broker


def token(claims=None, *, key=SECRET, alg="HS256", exp_in=300, drop_exp=False):
    payload = {"user_id": "42", "tenant_code": "rock-3", "email": "u42@example.com"}
    if not drop_exp:
        payload["exp"] = int(time.time()) + exp_in
    payload.update(claims or {})
    return jwt.encode(payload, key, algorithm=alg)


def unsigned(claims):
    """``alg: none``: a header and a payload, no signature."""

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def sso_get(t):
    return Client().get("/api/auth/sso", {"token": t})


def sso_post(t):
    return Client().post("/api/auth/sso/token", {"token": t}, content_type="application/json")


def test_sso_redirects_to_the_trading_page_with_the_session_token_for_local_storage(tenant):
    r = sso_get(token({"logout_redirect_url": "https://app.example/logout"}))
    assert r.status_code == 302
    url = urlparse(r["Location"])
    assert url.path == "/trade/"
    fragment = parse_qs(url.fragment)
    session = fragment["auth_token"][0]
    assert fragment["logout"] == ["https://app.example/logout"]
    client = BrokerClient.objects.get(broker=tenant, user_id="42")
    assert client.trader.user.username == f"sso_{tenant.short}_42"
    assert client.email == "u42@example.com"
    from exchanges.api.authentication import authenticate_jwt

    assert authenticate_jwt(session) == client.trader  # the exchange API accepts it
    page = Client().get("/trade/")
    assert page.status_code == 200 and b"auth_token" in page.content and b"st-trading-widget" in page.content


def test_the_same_user_id_twice_is_one_trader_and_matches_the_api_created_account(tenant):
    from brokers.services.clients import client_create

    client_create(broker=tenant, user_id="7")
    for _ in range(2):
        assert sso_get(token({"user_id": 7})).status_code == 302
        assert sso_post(token({"user_id": "7"})).status_code == 200
    assert BrokerClient.objects.filter(broker=tenant, user_id="7").count() == 1
    assert Trader.objects.filter(user__username=f"sso_{tenant.short}_7").count() == 1


def test_widget_token_endpoint_answers_json_with_cors(tenant):
    r = sso_post(token())
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True and body["token"] and body["user"]["user_id"] == "42"
    assert body["logout_redirect_url"] == "https://broker.example/bye"  # the broker's default
    assert r["Access-Control-Allow-Origin"] == "*"
    pre = Client().options("/api/auth/sso/token")
    assert pre.status_code == 204 and pre["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: unsigned({"user_id": "42", "tenant_code": "rock-3", "exp": int(time.time()) + 300}), "Invalid SSO"),
        (lambda: token(key="w" * 40), "Signature verification failed"),
        (lambda: token(exp_in=-1), "expired"),
        (lambda: token(drop_exp=True), "exp"),
        (lambda: token({"tenant_code": "nope"}), "unknown tenant_code"),
        (lambda: token({"tenant_code": None}), "tenant_code is required"),
        (lambda: token(alg="HS512", key="k" * 64), "alg value is not allowed"),
        (lambda: token(exp_in=10 * 24 * 3600), "too far in the future"),
        (lambda: token({"user_id": "bad id!"}), "user_id"),
        (lambda: token({"logout_redirect_url": "javascript:alert(1)"}), "logout_redirect_url"),
        (lambda: "not-a-jwt", "malformed"),
    ],
    ids=[
        "alg-none",
        "wrong-key",
        "expired",
        "no-exp",
        "unknown-tenant",
        "no-tenant",
        "other-alg",
        "long-lived",
        "bad-user-id",
        "bad-logout-url",
        "garbage",
    ],
)
def test_bad_tokens_are_refused_on_both_endpoints_and_create_nothing(tenant, make, needle):
    t = make()
    for r in (sso_get(t), sso_post(t)):
        assert r.status_code == 401, r.content
        assert needle.lower() in r.json()["error"].lower()
    assert not BrokerClient.objects.exists()


def test_a_token_replayed_after_its_expiry_is_refused(tenant):
    # exp is whole seconds: int(now) + 1 can be a few milliseconds away, so give the first use 3 seconds
    # (a loaded machine) and wait until exp has surely passed.
    exp = int(time.time()) + 3
    t = token({"exp": exp})
    assert sso_post(t).status_code == 200
    time.sleep(max(0.0, exp - time.time()) + 1.1)
    r = sso_post(t)
    assert r.status_code == 401 and "expired" in r.json()["error"]


def test_a_tenant_without_a_secret_refuses_every_token():
    make_broker("nosecret", tenant_code="t-0")
    r = sso_post(token({"tenant_code": "t-0"}))
    assert r.status_code == 401


def test_missing_token_is_refused():
    assert Client().get("/api/auth/sso").status_code == 401
    assert Client().post("/api/auth/sso/token", {}, content_type="application/json").status_code == 400


def test_the_widget_demo_page_and_script_are_served():
    r = Client().get("/widget/?broker=abc")
    assert r.status_code == 200 and b"<st-trading-widget" in r.content
    from django.contrib.staticfiles import finders

    assert finders.find("brokers/widget.js")


def test_widget_token_for_another_broker_than_the_widgets_is_refused(tenant):
    other, _ = make_broker("other")
    r = Client().post(
        "/api/auth/sso/token", {"token": token(), "broker_uid": str(other.pk)}, content_type="application/json"
    )
    assert r.status_code == 401 and "another broker" in r.json()["error"]
    ok = Client().post(
        "/api/auth/sso/token", {"token": token(), "broker_uid": str(tenant.pk)}, content_type="application/json"
    )
    assert ok.status_code == 200


def test_a_token_with_a_jti_is_single_use(tenant):
    t = token({"jti": "abc-1"})
    assert sso_post(t).status_code == 200
    r = sso_get(t)
    assert r.status_code == 401 and "already used" in r.json()["error"]
    assert sso_post(token({"jti": "abc-2"})).status_code == 200


def test_the_widget_script_parses():
    import shutil
    import subprocess

    from django.contrib.staticfiles import finders

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    result = subprocess.run([node, "--check", finders.find("brokers/widget.js")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
