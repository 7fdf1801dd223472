"""Platform-wide behaviour: the OpenAPI document, JSON errors outside views, production settings."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]

#: Every MM client API endpoint of seeds 000/001 (method, path).
MM_ENDPOINTS = [
    ("get", "/api/v1/me"),
    ("get", "/api/v1/trading/status"),
    ("post", "/api/v1/trading/pause"),
    ("post", "/api/v1/trading/resume"),
    ("post", "/api/v1/trading/stop"),
    ("post", "/api/v1/trading/start"),
    ("get", "/api/v1/orders"),
    ("get", "/api/v1/orders/{order_id}"),
    ("get", "/api/v1/orders/open"),
    ("get", "/api/v1/orders/summary"),
    ("post", "/api/v1/orders/cancel-all"),
    ("post", "/api/v1/orders/{order_id}/cancel"),
    ("get", "/api/v1/bets"),
    ("get", "/api/v1/bets/{bet_id}"),
    ("get", "/api/v1/bets/summary"),
    ("get", "/api/v1/fixtures"),
    ("get", "/api/v1/fixtures/{fixture_id}"),
    ("get", "/api/v1/positions"),
    ("get", "/api/v1/positions/summary"),
    ("get", "/api/v1/pnl"),
    ("get", "/api/v1/accounts"),
]


#: Every house exchange endpoint of seed 004 plus amend, cancel all, kill switch, fees and login.
EXCHANGE_ENDPOINTS = [
    *[("get", f"/api/v1/exchange/{p}") for p in ("pairs", "markets", "time", "fee-schedule", "my-fees")],
    ("delete", "/api/v1/exchange/orders/all"),
    *[
        ("get", f"/api/v1/exchange/{{symbol}}/{p}")
        for p in ("stats", "chart", "venues", "book", "book/hybrid", "bbo", "trades", "ticker")
    ],
    *[("get", f"/api/v1/exchange/{{symbol}}/{p}") for p in ("orders/history", "orders/open", "trades/mine", "balance")],
    ("post", "/api/v1/exchange/{symbol}/orders"),
    ("delete", "/api/v1/exchange/{symbol}/orders"),
    ("get", "/api/v1/exchange/{symbol}/orders/{order_id}"),
    ("delete", "/api/v1/exchange/{symbol}/orders/{order_id}"),
    ("patch", "/api/v1/exchange/{symbol}/orders/{order_id}"),
    ("post", "/api/v1/exchange/{symbol}/orders/batch"),
    ("delete", "/api/v1/exchange/{symbol}/orders/batch"),
    ("post", "/api/v1/exchange/{symbol}/withdraw"),
    ("post", "/auth/login"),
    ("post", "/auth/refresh"),
]


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    return yaml.safe_load(out.read_text())


def test_openapi_schema_validates_without_warnings_and_lists_every_mm_endpoint(schema):
    missing = [(m, p) for m, p in MM_ENDPOINTS + EXCHANGE_ENDPOINTS if m not in schema["paths"].get(p, {})]
    assert missing == []
    assert schema["components"]["securitySchemes"]["ClientApiKey"]["name"] == "X-API-Key"


def test_every_mm_operation_documents_its_success_response_body(schema):
    for method, path in MM_ENDPOINTS:
        op = schema["paths"][path][method]
        ok = op["responses"].get("200", {})
        assert "content" in ok, f"{method.upper()} {path} has no documented 200 body"


def test_docs_ui_and_schema_are_served(client):
    assert client.get("/api/docs/").status_code == 200
    resp = client.get("/api/schema/")
    assert resp.status_code == 200 and b"openapi" in resp.content


def test_unknown_api_path_is_a_json_404(client):
    resp = client.get("/api/v1/no-such-thing")
    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"


def _manage(*args, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DJANGO_SETTINGS_MODULE")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = _manage("check", DJANGO_SETTINGS_MODULE="mmsite.settings.production", ALLOWED_HOSTS="x.example")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_check_deploy_passes_with_production_settings():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SETTINGS_MODULE="mmsite.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="mm.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_beat_entry_names_a_registered_task_and_every_route_a_known_queue():
    from django.conf import settings

    from mmsite.celery import app

    app.loader.import_default_modules()
    missing = [e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] not in app.tasks]
    assert missing == []
    procfile_queues = (ROOT / "Procfile").read_text().split("-Q ", 1)[1].split()[0].split(",")
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed <= set(procfile_queues), "a routed queue that no Procfile worker consumes"
