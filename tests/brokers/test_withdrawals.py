"""Withdrawals and OTC: the state machine, money through the ledger, refusals, and concurrency on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.test import override_settings
from django.utils import timezone

from brokers.errors import BadRequest, BrokerError, Conflict, Forbidden, NotFound
from brokers.models import Transfer, Withdrawal, WithdrawalEvent
from brokers.services import clients as client_services
from brokers.services import withdrawals as services
from brokers.tasks.withdrawals import withdrawals_advance_task
from exchanges.ledger import services as ledger
from exchanges.ledger.selectors import ledger_violations
from tests.helpers import run_in_parallel

from .conftest import USER_WALLET, api_for, balance, fund, make_broker

B = "/api/v1/broker"


def setup_tree():
    """parent (white-label) -> sub (sub-broker) -> client u1 with 100 DCT; rival elsewhere."""
    parent, parent_key = make_broker("parent")
    sub, sub_key = make_broker("sub", parent=parent)
    rival, rival_key = make_broker("rival")
    fund(sub, "500")
    client = client_services.client_create(broker=sub, user_id="u1", wallet_address=USER_WALLET)
    client_services.client_deposit(broker=sub, client=client, amount=D("100"))
    return parent, parent_key, sub, sub_key, rival, rival_key, client


def request(client, amount="50"):
    w, _ = services.withdrawal_request(client=client, amount=D(amount), wallet_address=USER_WALLET)
    return w


def expire_cooling(w):
    Withdrawal.objects.filter(pk=w.pk).update(cooling_ends_at=timezone.now() - timedelta(seconds=1))


def money():
    from exchanges.ledger.models import Hold, LedgerAccount

    return (
        sorted(LedgerAccount.objects.values_list("pk", "balance", "held")),
        sorted(Hold.objects.values_list("pk", "remaining", "status")),
        Transfer.objects.count(),
        sorted(Withdrawal.objects.values_list("pk", "status", "locked_by_id")),
    )


# --- request -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_withdraw_endpoint_holds_the_funds_and_starts_pending_with_fee_and_net():
    *_, sub_key, _rival, _rk, client = setup_tree()
    r = api_for(sub_key).post(B + "/clients/u1/withdraw", {"amount": 100, "wallet_address": USER_WALLET}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["status"], body["amount"], body["fee"], body["netAmount"]) == ("pending", 100.0, 1.0, 99.0)
    assert body["userWalletAddress"] == USER_WALLET
    assert balance(client.account) == (D("100"), D("100"))  # held, not yet gone
    listed = api_for(sub_key).get(B + "/clients/u1/withdrawals").json()["withdrawals"]
    assert [w["id"] for w in listed] == [body["id"]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body,needle",
    [
        ({"amount": 100.01, "wallet_address": USER_WALLET}, "Insufficient balance"),
        ({"amount": -1, "wallet_address": USER_WALLET}, "positive"),
        ({"amount": "x", "wallet_address": USER_WALLET}, "number"),
        ({"wallet_address": USER_WALLET}, "amount is required"),
        ({"amount": 10, "wallet_address": "0x123"}, "wallet_address"),
        ({"amount": "0.00000001", "wallet_address": USER_WALLET}, "fee"),
    ],
)
def test_bad_withdrawal_requests_answer_400_and_hold_nothing(body, needle):
    *_, sub_key, _rival, _rk, _client = setup_tree()
    before = money()
    r = api_for(sub_key).post(B + "/clients/u1/withdraw", body, format="json")
    assert r.status_code == 400, r.content
    assert needle in r.json()["error"]
    assert money() == before


# --- lock / unlock -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_lock_answers_wallet_net_amount_and_timeout_then_a_second_broker_gets_409():
    parent, parent_key, sub, sub_key, *_rest, client = setup_tree()
    w = request(client, "100")
    r = api_for(sub_key).post(f"{B}/withdrawal/{w.pk}/lock")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["ok"] is True and body["status"] == "broker_locked"
    assert (body["userWalletAddress"], body["amount"], body["timeoutHours"]) == (USER_WALLET, 99.0, 24)
    before = money()
    r2 = api_for(parent_key).post(f"{B}/withdrawal/{w.pk}/lock")
    assert r2.status_code == 409 and "already been locked" in r2.json()["error"]
    # only the locking broker may unlock
    r3 = api_for(parent_key).post(f"{B}/withdrawal/{w.pk}/unlock")
    assert r3.status_code == 403 and r3.json() == {"error": "Only the broker that locked this withdrawal can unlock it"}
    assert money() == before
    r4 = api_for(sub_key).post(f"{B}/withdrawal/{w.pk}/unlock")
    assert r4.status_code == 200 and r4.json()["status"] == "pending"
    w.refresh_from_db()
    assert (w.locked_by_id, w.locked_at) == (None, None)
    # now the parent may take it
    assert api_for(parent_key).post(f"{B}/withdrawal/{w.pk}/lock").status_code == 200
    events = list(WithdrawalEvent.objects.filter(withdrawal=w).values_list("from_status", "to_status"))
    locked, pending = ("pending", "broker_locked"), ("broker_locked", "pending")
    assert events == [("", "pending"), locked, pending, locked]


@pytest.mark.django_db
def test_lock_is_refused_after_the_cooling_period_and_without_a_bound_wallet():
    *_, sub_key, _rival, _rk, client = setup_tree()
    nowallet, nowallet_key = make_broker("nowallet", wallet="")
    w = request(client)
    before = money()
    r = api_for(nowallet_key).post(f"{B}/withdrawal/{w.pk}/lock")
    assert r.status_code == 400 and "wallet" in r.json()["error"]
    expire_cooling(w)
    r = api_for(sub_key).post(f"{B}/withdrawal/{w.pk}/lock")
    assert r.status_code == 400 and "Cooling period has ended" in r.json()["error"]
    assert money() == before


@pytest.mark.django_db
def test_unknown_or_malformed_withdrawal_ids_are_404_and_rival_cannot_see_pending():
    *_, sub_key, _rival, rival_key, client = setup_tree()
    w = request(client)
    for wid in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        assert api_for(sub_key).get(f"{B}/withdrawal/{wid}").status_code == 404
        assert api_for(sub_key).post(f"{B}/withdrawal/{wid}/lock").status_code == 404
    assert [x["id"] for x in api_for(sub_key).get(B + "/withdrawals/pending").json()["withdrawals"]] == [str(w.pk)]
    assert api_for(rival_key).get(B + "/withdrawals/pending").json()["withdrawals"] == []


@pytest.mark.django_db
def test_unlocking_a_withdrawal_that_is_not_locked_is_409():
    *_, sub_key, _rival, _rk, client = setup_tree()
    w = request(client)
    r = api_for(sub_key).post(f"{B}/withdrawal/{w.pk}/unlock")
    assert r.status_code == 409


# --- OTC completion and lock expiry -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_broker_complete_credits_the_locking_broker_net_and_the_platform_the_fee_once():
    parent, parent_key, sub, sub_key, *_rest, client = setup_tree()
    w = request(client, "100")
    services.withdrawal_lock(broker=parent, withdrawal_id=w.pk)
    parent_before = balance(parent.account)[0]
    done = services.withdrawal_broker_complete(withdrawal_id=w.pk, tx_hash="0xabc", amount=D("99"))
    assert done.status == "broker_completed" and done.tx_hash == "0xabc"
    assert balance(parent.account)[0] == parent_before + D("99")
    assert balance(client.account) == (D("0"), D("0"))
    assert balance(ledger.fee_account(asset="DCT"))[0] == D("1")
    again = services.withdrawal_broker_complete(withdrawal_id=w.pk, tx_hash="0xabc")
    assert again.status == "broker_completed"
    assert balance(parent.account)[0] == parent_before + D("99")
    with pytest.raises(Conflict):
        services.withdrawal_broker_complete(withdrawal_id=w.pk, tx_hash="0xother")
    otc = Transfer.objects.get(withdrawal=w)
    assert (otc.kind, otc.broker_id, otc.amount, otc.fee) == ("otc_settlement", parent.pk, D("100"), D("1"))
    assert ledger_violations() == []


@pytest.mark.django_db
def test_complete_refuses_a_withdrawal_that_is_not_locked_and_a_tx_hash_used_twice():
    *_, sub, _sub_key, _rival, _rk, client = setup_tree()
    w1, w2 = request(client, "30"), request(client, "30")
    with pytest.raises(Conflict):
        services.withdrawal_broker_complete(withdrawal_id=w1.pk, tx_hash="0x1")
    services.withdrawal_lock(broker=sub, withdrawal_id=w1.pk)
    services.withdrawal_lock(broker=sub, withdrawal_id=w2.pk)
    services.withdrawal_broker_complete(withdrawal_id=w1.pk, tx_hash="0x1")
    with pytest.raises(Conflict):
        services.withdrawal_broker_complete(withdrawal_id=w2.pk, tx_hash="0x1")
    w2.refresh_from_db()
    assert w2.status == "broker_locked"


@pytest.mark.django_db
def test_lock_expire_releases_to_pending_only_after_the_timeout():
    *_, sub, _sub_key, _rival, _rk, client = setup_tree()
    w = request(client)
    services.withdrawal_lock(broker=sub, withdrawal_id=w.pk)
    with pytest.raises(Conflict):
        services.withdrawal_lock_expire(withdrawal_id=w.pk)
    Withdrawal.objects.filter(pk=w.pk).update(locked_at=timezone.now() - timedelta(hours=24, seconds=1))
    released = services.withdrawal_lock_expire(withdrawal_id=w.pk)
    assert (released.status, released.locked_by_id) == ("pending", None)
    assert services.withdrawal_lock_expire(withdrawal_id=w.pk).status == "pending"  # safe twice
    assert balance(client.account) == (D("100"), D("50"))  # still held


# --- the platform's path -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_after_cooling_the_beat_task_sends_to_processing_and_the_platform_pays(eager_celery):
    *_, sub, _sub_key, _rival, _rk, client = setup_tree()
    w = request(client, "40")
    locked = request(client, "20")
    services.withdrawal_lock(broker=sub, withdrawal_id=locked.pk)
    withdrawals_advance_task.delay()
    w.refresh_from_db()
    assert w.status == "pending"  # cooling not over
    expire_cooling(w)
    Withdrawal.objects.filter(pk=locked.pk).update(cooling_ends_at=timezone.now() - timedelta(seconds=1))
    withdrawals_advance_task.delay()
    withdrawals_advance_task.delay()  # twice: nothing twice
    w.refresh_from_db()
    assert w.status == "completed"
    assert balance(client.account) == (D("60"), D("20"))
    assert Transfer.objects.filter(withdrawal=w, kind="payout").count() == 1
    statuses = list(WithdrawalEvent.objects.filter(withdrawal=w).values_list("to_status", flat=True))
    assert statuses == ["pending", "processing", "completed"]
    locked.refresh_from_db()
    assert locked.status == "broker_locked"  # a locked one is the broker's, not the platform's
    assert ledger_violations() == []


@pytest.mark.django_db
def test_user_cancel_during_cooling_releases_the_hold_and_is_refused_after():
    *_, _sub_key, _rival, _rk, client = setup_tree()
    w = request(client, "40")
    cancelled = services.withdrawal_cancel(withdrawal_id=w.pk, client=client)
    assert cancelled.status == "cancelled"
    assert balance(client.account) == (D("100"), D("0"))
    w2 = request(client, "40")
    expire_cooling(w2)
    with pytest.raises(BadRequest):
        services.withdrawal_cancel(withdrawal_id=w2.pk, client=client)


@pytest.mark.django_db
def test_exchange_withdrawal_handler_creates_the_withdrawal_for_the_traders_broker_client():
    from django.conf import settings
    from django.utils.module_loading import import_string

    *_, _sub_key, _rival, _rk, client = setup_tree()
    handler = import_string(settings.EXCHANGE_WITHDRAWAL_HANDLER)
    out = handler(trader=client.trader, asset="dct", amount=D("10"), address=USER_WALLET, mode="live", hold=None)
    assert out["status"] == "pending" and out["user_id"] == "u1" and out["netAmount"] == D("9.9")
    assert balance(client.account) == (D("100"), D("10"))
    with pytest.raises(BadRequest):
        handler(trader=client.trader, asset="DCT", amount=D("10"), address=USER_WALLET, mode="paper", hold=None)
    # a hold the exchange placed is adopted, not doubled
    hold = ledger.hold_place(account=client.account, amount=D("5"), reference="exchange-withdraw:1")
    handler(trader=client.trader, asset="DCT", amount=D("5"), address=USER_WALLET, mode="live", hold=hold)
    assert balance(client.account) == (D("100"), D("15"))


@pytest.mark.django_db
def test_the_database_refuses_a_lock_without_a_broker():
    from django.db import IntegrityError, transaction

    *_, _sub_key, _rival, _rk, client = setup_tree()
    w = request(client)
    with pytest.raises(IntegrityError), transaction.atomic():
        Withdrawal.objects.filter(pk=w.pk).update(status="broker_locked")


@pytest.mark.django_db
@override_settings(BROKER_WITHDRAWAL_COOLING_SECONDS=60)
def test_cooling_period_is_a_setting():
    *_, _sub_key, _rival, _rk, client = setup_tree()
    w = request(client)
    assert timedelta(seconds=59) < w.cooling_ends_at - w.created_at <= timedelta(seconds=61)


# --- PostgreSQL: real parallel connections -------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_locks_by_many_brokers_give_one_lock_and_409s():
    parent, _pk, sub, _sk, _rival, _rk, client = setup_tree()
    subs = [make_broker(f"sub-{i}", parent=parent)[0] for i in range(6)]
    lockers = [parent, sub, *subs]
    w = request(client)
    results = run_in_parallel(*[(lambda b=b: services.withdrawal_lock(broker=b, withdrawal_id=w.pk)) for b in lockers])
    won = [r for r in results if isinstance(r, Withdrawal)]
    lost = [r for r in results if isinstance(r, BrokerError)]
    # subs of the parent cannot see a withdrawal of "sub"'s client: they get 404, the others race
    assert len(won) == 1, results
    assert all(isinstance(r, (Conflict, NotFound)) for r in lost), results
    assert sum(isinstance(r, Conflict) for r in lost) == 1  # parent and sub raced; one lost with 409
    w.refresh_from_db()
    assert w.status == "broker_locked" and w.locked_by_id == won[0].locked_by_id
    assert WithdrawalEvent.objects.filter(withdrawal=w, to_status="broker_locked").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_completions_credit_once_and_concurrent_unlocks_by_another_broker_fail():
    parent, _pk, sub, _sk, _rival, _rk, client = setup_tree()
    w = request(client, "100")
    services.withdrawal_lock(broker=sub, withdrawal_id=w.pk)
    sub_before = balance(sub.account)[0]
    results = run_in_parallel(
        *[(lambda: services.withdrawal_broker_complete(withdrawal_id=w.pk, tx_hash="0xfeed")) for _ in range(6)],
        *[(lambda: services.withdrawal_unlock(broker=parent, withdrawal_id=w.pk)) for _ in range(3)],
    )
    assert all(isinstance(r, Withdrawal) and r.status == "broker_completed" for r in results[:6]), results
    assert all(isinstance(r, (Forbidden, Conflict)) for r in results[6:]), results
    assert balance(sub.account)[0] == sub_before + D("99")
    assert Transfer.objects.filter(withdrawal=w).count() == 1
    assert ledger_violations() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_unlock_by_another_broker_and_lock_keep_the_lock_with_its_owner():
    parent, _pk, sub, _sk, _rival, _rk, client = setup_tree()
    w = request(client)
    services.withdrawal_lock(broker=sub, withdrawal_id=w.pk)
    results = run_in_parallel(
        *[(lambda: services.withdrawal_unlock(broker=parent, withdrawal_id=w.pk)) for _ in range(4)],
        *[(lambda: services.withdrawal_lock(broker=parent, withdrawal_id=w.pk)) for _ in range(4)],
    )
    assert all(isinstance(r, Forbidden) for r in results[:4]), results
    assert all(isinstance(r, Conflict) for r in results[4:]), results
    w.refresh_from_db()
    assert (w.status, w.locked_by_id) == ("broker_locked", sub.pk)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_deposits_never_overdraw_the_broker():
    broker, _ = make_broker("tight")
    fund(broker, "100")
    client = client_services.client_create(broker=broker, user_id="u1")
    results = run_in_parallel(
        *[(lambda: client_services.client_deposit(broker=broker, client=client, amount=D("15"))) for _ in range(10)]
    )
    ok = [r for r in results if isinstance(r, tuple)]
    assert len(ok) == 6 and all(isinstance(r, BadRequest) for r in results if not isinstance(r, tuple)), results
    assert balance(broker.account) == (D("10"), D("0"))
    assert balance(client.account) == (D("90"), D("0"))
    assert ledger_violations() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_deposit_key_move_money_once():
    broker, _ = make_broker("retry")
    fund(broker, "100")
    client = client_services.client_create(broker=broker, user_id="u1")
    results = run_in_parallel(
        *[
            (lambda: client_services.client_deposit(broker=broker, client=client, amount=D("7"), idempotency_key="k1"))
            for _ in range(8)
        ]
    )
    assert all(isinstance(r, tuple) for r in results), results
    assert len({r[0].pk for r in results}) == 1
    assert balance(client.account) == (D("7"), D("0"))


@pytest.mark.django_db
def test_complete_for_a_lock_that_was_released_and_taken_again_credits_nobody():
    parent, _pk, sub, _sk, _rival, _rk, client = setup_tree()
    w = request(client)
    first = services.withdrawal_lock(broker=sub, withdrawal_id=w.pk)
    seen_at, seen_by = first.locked_at, first.locked_by_id
    services.withdrawal_unlock(broker=sub, withdrawal_id=w.pk)
    services.withdrawal_lock(broker=parent, withdrawal_id=w.pk)
    before = money()
    with pytest.raises(Conflict):
        services.withdrawal_broker_complete(withdrawal_id=w.pk, tx_hash="0x9", locked_at=seen_at, locked_by_id=seen_by)
    assert money() == before


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_beat_runs_pay_each_due_withdrawal_once():
    *_, _sub_key, _rival, _rk, client = setup_tree()
    due = [request(client, "10") for _ in range(5)]
    for w in due:
        expire_cooling(w)
    results = run_in_parallel(*[services.withdrawals_advance for _ in range(4)])
    assert all(isinstance(r, dict) for r in results), results
    assert sum(r["completed"] for r in results) == 5  # between them, each paid once
    assert sum(r["processing"] for r in results) == 5
    assert set(Withdrawal.objects.values_list("status", flat=True)) == {"completed"}
    assert Transfer.objects.filter(kind="payout").count() == 5
    assert balance(client.account) == (D("50"), D("0"))
    assert ledger_violations() == []


@pytest.mark.django_db
def test_the_clients_broker_cancels_for_its_user_during_cooling_only():
    parent, parent_key, _sub, sub_key, _rival, rival_key, client = setup_tree()
    w = request(client, "30")
    before = money()
    assert api_for(parent_key).post(f"{B}/withdrawal/{w.pk}/cancel").status_code == 404  # not its user
    assert api_for(rival_key).post(f"{B}/withdrawal/{w.pk}/cancel").status_code == 404
    assert money() == before
    r = api_for(sub_key).post(f"{B}/withdrawal/{w.pk}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert balance(client.account) == (D("100"), D("0"))
    w2 = request(client, "30")
    services.withdrawal_lock(broker=parent, withdrawal_id=w2.pk)
    assert api_for(sub_key).post(f"{B}/withdrawal/{w2.pk}/cancel").status_code == 409  # locked: no
    w3 = request(client, "30")
    expire_cooling(w3)
    assert api_for(sub_key).post(f"{B}/withdrawal/{w3.pk}/cancel").status_code == 400  # cooling over
