"""The console for broker staff: each broker's staff sees and acts on its own subtree only, on every page."""

from __future__ import annotations

import re
from decimal import Decimal as D

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from brokers.models import BrokerApiKey, BrokerClient, Transfer, Withdrawal
from brokers.services import brokers as broker_services
from brokers.services import clients as client_services
from brokers.services import withdrawals as withdrawal_services

from .conftest import USER_WALLET, balance, fund, make_broker

pytestmark = pytest.mark.django_db


def world(prefix: str, wallet: str):
    """A broker ``<prefix>`` with a sub-broker, clients, a deposit, a withdrawal, a key and a staff login."""
    broker, _ = make_broker(f"{prefix}-broker", wallet=wallet)
    sub, _ = make_broker(f"{prefix}-sub", parent=broker, wallet=wallet)
    fund(broker, "100")
    client = client_services.client_create(broker=broker, user_id=f"{prefix}-user", wallet_address=USER_WALLET)
    sub_client = client_services.client_create(broker=sub, user_id=f"{prefix}-subuser")
    client_services.client_deposit(broker=broker, client=client, amount=D("50"), memo=f"{prefix}-memo")
    w, _ = withdrawal_services.withdrawal_request(client=client, amount=D("10"), wallet_address=USER_WALLET)
    user = get_user_model().objects.create_user(username=f"{prefix}-staff", password="pw-123456789")
    staff = broker_services.broker_staff_add(broker=broker, user=user)
    try:
        from brokers.services.webhooks import webhook_emit, webhook_endpoint_set

        webhook_endpoint_set(broker=broker, url=f"https://{prefix}.example/hook")
        webhook_emit(broker=broker, event_type="test.event", data={"marker": f"{prefix}-hook"})
    except ImportError:
        pass
    return {
        "broker": broker,
        "sub": sub,
        "client": client,
        "sub_client": sub_client,
        "withdrawal": w,
        "staff": staff,
        "key": BrokerApiKey.objects.filter(broker=broker).first(),
        "transfer": Transfer.objects.filter(broker=broker).first(),
    }


def login(username: str) -> Client:
    c = Client()
    assert c.login(username=username, password="pw-123456789")
    return c


def brokers_admins():
    return [(model, ma) for model, ma in admin.site._registry.items() if model._meta.app_label == "brokers"]


def markers(w) -> list[str]:
    """Strings that appear only in ``w``'s rows."""
    return [
        w["broker"].name,
        w["sub"].name,
        w["client"].user_id,
        w["sub_client"].user_id,
        str(w["withdrawal"].pk),
        w["key"].prefix,
    ]


@pytest.fixture
def two_worlds():
    return world("acme", "0x" + "a1" * 20), world("zeta", "0x" + "b2" * 20)


def test_broker_staff_see_only_their_subtree_on_every_changelist_and_change_view(two_worlds):
    acme, zeta = two_worlds
    for me, other in ((acme, zeta), (zeta, acme)):
        c = login(me["staff"].user.username)
        assert c.get(reverse("admin:index")).status_code == 200
        for model, model_admin in brokers_admins():
            url = reverse(f"admin:brokers_{model._meta.model_name}_changelist")
            r = c.get(url)
            assert r.status_code == 200, (url, r.status_code)
            body = r.content.decode()
            for m in markers(other):
                assert m not in body, (url, m)
            # every row of the other world, opened by id, is "not found" (a redirect to the index)
            for obj in model_admin.get_queryset(_platform_request()).all():
                if not _belongs(obj, model_admin, other["broker"]):
                    continue
                change = reverse(f"admin:brokers_{model._meta.model_name}_change", args=[obj.pk])
                r = c.get(change)
                assert r.status_code == 302 and r["Location"] == reverse("admin:index"), (change, r.status_code)
                history = reverse(f"admin:brokers_{model._meta.model_name}_history", args=[obj.pk])
                assert c.get(history).status_code == 302
        # their own rows open
        own = reverse("admin:brokers_brokerclient_change", args=[me["client"].pk])
        assert c.get(own).status_code == 200
        own_sub_client = reverse("admin:brokers_brokerclient_change", args=[me["sub_client"].pk])
        assert c.get(own_sub_client).status_code == 200  # the subtree, not just the broker


def _platform_request():
    class R:
        user = get_user_model()(is_superuser=True, is_staff=True, is_active=True)

    return R()


def _belongs(obj, model_admin, broker) -> bool:
    path = model_admin.broker_path if hasattr(model_admin, "broker_path") else "broker"
    target = obj
    for part in [p for p in path.split("__") if p]:
        target = getattr(target, part)
    return target.path.startswith(broker.path)


def test_foreign_key_choices_autocomplete_and_filters_are_scoped(two_worlds):
    acme, zeta = two_worlds
    c = login(acme["staff"].user.username)
    add = c.get(reverse("admin:brokers_brokerapikey_add"))
    assert add.status_code == 200
    body = add.content.decode()
    assert "acme-broker" in body and "acme-sub" in body and "zeta-broker" not in body
    auto = c.get(
        reverse("admin:autocomplete"),
        {"app_label": "brokers", "model_name": "brokerstaff", "field_name": "broker", "term": ""},
    )
    assert auto.status_code == 200
    names = {r["text"] for r in auto.json()["results"]}
    assert names == {"acme-broker", "acme-sub"}
    filtered = c.get(reverse("admin:brokers_withdrawal_changelist")).content.decode()
    assert "zeta" not in filtered


def test_broker_staff_create_a_key_shown_once_for_their_subtree_only(two_worlds):
    acme, zeta = two_worlds
    c = login(acme["staff"].user.username)
    r = c.post(
        reverse("admin:brokers_brokerapikey_add"),
        {"broker": str(acme["sub"].pk), "name": "k", "scopes": ["balance:read"]},
    )
    assert r.status_code == 200 and "no-store" in r["Cache-Control"]
    raw = re.search(r"bk_[0-9a-f]{10}_[\w-]+", r.content.decode()).group(0)
    key = BrokerApiKey.objects.get(prefix=BrokerApiKey.parse_prefix(raw))
    assert key.broker_id == acme["sub"].pk and key.key_hash == BrokerApiKey.hash_key(raw)
    r = c.post(
        reverse("admin:brokers_brokerapikey_add"),
        {"broker": str(zeta["broker"].pk), "name": "k", "scopes": ["balance:read"]},
    )
    assert r.status_code == 200 and "Select a valid choice" in r.content.decode()
    assert not BrokerApiKey.objects.filter(broker=zeta["broker"], name="k").exists()
    # revoke through the action, and an attempt on the other world's key changes nothing
    changelist = reverse("admin:brokers_brokerapikey_changelist")
    c.post(changelist, {"action": "revoke_keys", "_selected_action": [key.pk, zeta["key"].pk]})
    key.refresh_from_db()
    zeta["key"].refresh_from_db()
    assert key.revoked_at is not None and zeta["key"].revoked_at is None


def test_deposit_and_lock_unlock_actions_go_through_services_within_scope(two_worlds):
    acme, zeta = two_worlds
    c = login(acme["staff"].user.username)
    url = reverse("admin:brokers_brokerclient_deposit", args=[acme["client"].pk])
    before = balance(acme["client"].account)[0]
    r = c.post(url, {"amount": "5", "memo": "console", "idempotency_key": "console:1"})
    assert r.status_code == 302
    assert balance(acme["client"].account)[0] == before + D("5")
    r = c.post(url, {"amount": "-5"})
    assert r.status_code == 200 and balance(acme["client"].account)[0] == before + D("5")
    r = c.post(url, {"amount": "100000"})
    assert "Insufficient broker balance" in r.content.decode()
    other = reverse("admin:brokers_brokerclient_deposit", args=[zeta["client"].pk])
    zeta_before = balance(zeta["client"].account)[0]
    assert c.post(other, {"amount": "1"}).status_code == 302  # "not found": redirected to the index
    assert balance(zeta["client"].account)[0] == zeta_before

    changelist = reverse("admin:brokers_withdrawal_changelist")
    ids = [acme["withdrawal"].pk, zeta["withdrawal"].pk]
    c.post(changelist, {"action": "lock", "_selected_action": ids})
    acme["withdrawal"].refresh_from_db()
    zeta["withdrawal"].refresh_from_db()
    assert (acme["withdrawal"].status, acme["withdrawal"].locked_by_id) == ("broker_locked", acme["broker"].pk)
    assert zeta["withdrawal"].status == "pending"
    c.post(changelist, {"action": "unlock", "_selected_action": ids})
    acme["withdrawal"].refresh_from_db()
    assert acme["withdrawal"].status == "pending"


def test_platform_staff_see_everything(two_worlds):
    acme, zeta = two_worlds
    get_user_model().objects.create_superuser(username="root", password="pw-123456789")
    c = login("root")
    body = c.get(reverse("admin:brokers_brokerclient_changelist")).content.decode()
    assert "acme-user" in body and "zeta-user" in body
    assert c.get(reverse("admin:brokers_withdrawal_change", args=[zeta["withdrawal"].pk])).status_code == 200
    assert Withdrawal.objects.count() == 2 and BrokerClient.objects.count() == 4


def test_broker_staff_see_no_other_app_in_the_console(two_worlds):
    acme, _zeta = two_worlds
    c = login(acme["staff"].user.username)
    body = c.get(reverse("admin:index")).content.decode()
    assert "/admin/brokers/" in body
    assert "/admin/trading/" not in body and "/admin/auth/" not in body
    assert c.get("/admin/auth/user/").status_code == 403


def test_platform_staff_add_broker_staff_through_the_service(two_worlds):
    acme, _zeta = two_worlds
    get_user_model().objects.create_superuser(username="root", password="pw-123456789")
    newbie = get_user_model().objects.create_user(username="newbie", password="pw-123456789")
    c = login("root")
    r = c.post(reverse("admin:brokers_brokerstaff_add"), {"user": newbie.pk, "broker": str(acme["sub"].pk)})
    assert r.status_code == 302, r.content
    newbie.refresh_from_db()
    assert newbie.is_staff and newbie.broker_staff.broker_id == acme["sub"].pk
    body = login("newbie").get(reverse("admin:brokers_brokerclient_changelist")).content.decode()
    assert "acme-subuser" in body and "acme-user" not in body  # the sub-broker's subtree only


def test_only_platform_staff_fund_a_broker_from_the_console(two_worlds):
    acme, _zeta = two_worlds
    url = reverse("admin:brokers_broker_fund", args=[acme["broker"].pk])
    before = balance(acme["broker"].account)[0]
    assert login(acme["staff"].user.username).post(url, {"amount": "5"}).status_code == 403
    get_user_model().objects.create_superuser(username="root", password="pw-123456789")
    root = login("root")
    assert root.post(url, {"amount": "5", "idempotency_key": "console:f1"}).status_code == 302
    assert root.post(url, {"amount": "5", "idempotency_key": "console:f1"}).status_code == 302  # a resubmit
    assert balance(acme["broker"].account)[0] == before + D("5")


def test_an_ancestor_upgrading_a_sub_brokers_client_keeps_the_service_broker_as_parent(two_worlds):
    acme, zeta = two_worlds
    c = login(acme["staff"].user.username)  # staff of acme, above acme-sub
    changelist = reverse("admin:brokers_brokerclient_changelist")
    c.post(changelist, {"action": "upgrade_to_broker", "_selected_action": [acme["sub_client"].pk, zeta["client"].pk]})
    upgraded = acme["sub_client"].upgraded_to
    assert upgraded.parent_id == acme["sub"].pk  # the original service broker, not the caller's
    assert upgraded.account_id == acme["sub_client"].account_id
    assert not hasattr(BrokerClient.objects.get(pk=zeta["client"].pk), "upgraded_to")  # out of scope: untouched
