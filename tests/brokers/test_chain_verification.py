"""Chain verification of OTC withdrawals against a real local EVM (eth-tester on py-evm) served over
JSON-RPC on loopback, with a real ERC-20 token deployed in the test: the Celery task reads it through
web3's HTTPProvider exactly as it reads a production node."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

pytest.importorskip("eth_tester")

from brokers.chain.devnet import Devnet  # noqa: E402
from brokers.chain.verify import withdrawal_chain_check  # noqa: E402
from brokers.choices import TransferKind, WithdrawalStatus  # noqa: E402
from brokers.models import Transfer, Withdrawal  # noqa: E402
from brokers.services.clients import client_create, client_deposit  # noqa: E402
from brokers.services.withdrawals import withdrawal_lock, withdrawal_request  # noqa: E402
from brokers.tasks.chain import withdrawals_chain_check_task  # noqa: E402
from tests.brokers.conftest import fund, make_broker  # noqa: E402

USDC = 10**6
CONFIRMATIONS = 2


class Chain:
    def __init__(self, devnet: Devnet, token: str):
        self.devnet, self.token = devnet, token
        self.deployer, self.broker_wallet, self.user_wallet, self.stranger = devnet.accounts[:4]

    def pay(self, sender: str, receiver: str, units: int, *, not_before: dt.datetime | None = None) -> str:
        """A USDC transfer mined in a block at or after ``not_before``, then confirmed."""
        if not_before is not None:
            self.devnet.set_next_block_time(math.ceil(not_before.timestamp()) + 1)
        tx_hash = self.devnet.transfer(self.token, sender, receiver, units)
        self.devnet.mine(CONFIRMATIONS)
        return tx_hash.lower()


@pytest.fixture
def chain(settings):
    devnet = Devnet().start()
    token = devnet.deploy_token()
    c = Chain(devnet, token)
    devnet.mint(token, c.broker_wallet, 10_000 * USDC)
    devnet.mint(token, c.stranger, 10_000 * USDC)
    settings.CHAIN_RPC_URL = devnet.url
    settings.CHAIN_USDC_ADDRESS = token
    settings.CHAIN_USDC_DECIMALS = 6
    settings.CHAIN_CONFIRMATIONS = CONFIRMATIONS
    settings.BROKER_WITHDRAWAL_FEE_BPS = 100  # 1 %: a withdrawal of 100 DCT nets 99
    yield c
    devnet.stop()


def _withdrawal(chain: Chain, *, name="otc", amount="100") -> tuple:
    broker, _raw = make_broker(name, wallet=chain.broker_wallet)
    fund(broker, "1000")
    client = client_create(broker=broker, user_id=f"user-{name}", wallet_address=chain.user_wallet)
    client_deposit(broker=broker, client=client, amount=Decimal("500"), idempotency_key=f"dep-{name}")
    w, _ = withdrawal_request(client=client, amount=Decimal(amount), wallet_address=chain.user_wallet)
    return broker, client, w


@pytest.fixture
def locked(chain, db):
    broker, client, w = _withdrawal(chain)
    w = withdrawal_lock(broker=broker, withdrawal_id=w.pk)
    assert w.net_amount == Decimal("99")
    return broker, w


def _balance(broker) -> Decimal:
    broker.account.refresh_from_db()
    return broker.account.balance


def test_matching_transfer_completes_the_withdrawal_and_credits_the_broker_once(chain, locked, eager_celery):
    broker, w = locked
    before = _balance(broker)
    tx_hash = chain.pay(chain.broker_wallet, chain.user_wallet, 99 * USDC, not_before=w.locked_at)

    assert withdrawals_chain_check_task() == 1
    assert withdrawals_chain_check_task() == 0  # nothing locked any more
    assert withdrawal_chain_check(withdrawal_id=w.pk) == "not_locked"  # and a late duplicate task

    w.refresh_from_db()
    assert w.status == WithdrawalStatus.BROKER_COMPLETED
    assert w.tx_hash == tx_hash
    assert _balance(broker) - before == Decimal("99")
    assert Transfer.objects.filter(withdrawal=w, kind=TransferKind.OTC_SETTLEMENT).count() == 1
    detail = w.events.filter(to_status=WithdrawalStatus.BROKER_COMPLETED).get().detail
    assert Decimal(detail["chain_amount"]) == Decimal("99")  # the USDC seen on chain, in the history


def test_payment_within_one_percent_matches(chain, locked):
    broker, w = locked
    chain.pay(chain.broker_wallet, chain.user_wallet, 98_010_000, not_before=w.locked_at)  # 99 * 0.99
    assert withdrawal_chain_check(withdrawal_id=w.pk) == "completed"


def test_short_payment_does_not_complete(chain, locked):
    broker, w = locked
    before = _balance(broker)
    chain.pay(chain.broker_wallet, chain.user_wallet, 98 * USDC, not_before=w.locked_at)  # < 98.01
    assert withdrawal_chain_check(withdrawal_id=w.pk) == "waiting"
    w.refresh_from_db()
    assert (w.status, w.tx_hash, _balance(broker)) == (WithdrawalStatus.BROKER_LOCKED, None, before)


def test_payment_from_another_wallet_does_not_complete(chain, locked):
    broker, w = locked
    chain.pay(chain.stranger, chain.user_wallet, 99 * USDC, not_before=w.locked_at)
    chain.pay(chain.broker_wallet, chain.stranger, 99 * USDC)  # the right sender, the wrong receiver
    assert withdrawal_chain_check(withdrawal_id=w.pk) == "waiting"
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.BROKER_LOCKED


def test_payment_before_the_lock_does_not_complete(chain, db):
    broker, client, w = _withdrawal(chain)
    chain.pay(chain.broker_wallet, chain.user_wallet, 99 * USDC)
    paid_at = chain.devnet.latest_block()["timestamp"]
    while time.time() < paid_at + 1.05:  # the lock comes at least a second after the payment's block
        time.sleep(0.05)
    w = withdrawal_lock(broker=broker, withdrawal_id=w.pk)
    chain.devnet.set_next_block_time(math.ceil(w.locked_at.timestamp()) + 1)
    chain.devnet.mine(CONFIRMATIONS + 1)  # blocks after the lock exist, without a payment in them

    assert withdrawal_chain_check(withdrawal_id=w.pk) == "waiting"
    # the same amount paid again after the lock does complete it
    tx_hash = chain.pay(chain.broker_wallet, chain.user_wallet, 99 * USDC, not_before=w.locked_at)
    assert withdrawal_chain_check(withdrawal_id=w.pk) == "completed"
    w.refresh_from_db()
    assert w.tx_hash == tx_hash


def test_unconfirmed_payment_waits_for_confirmations(chain, locked):
    broker, w = locked
    chain.devnet.set_next_block_time(math.ceil(w.locked_at.timestamp()) + 1)
    chain.devnet.transfer(chain.token, chain.broker_wallet, chain.user_wallet, 99 * USDC)
    assert withdrawal_chain_check(withdrawal_id=w.pk) == "waiting"
    chain.devnet.mine(CONFIRMATIONS)
    assert withdrawal_chain_check(withdrawal_id=w.pk) == "completed"


def test_no_payment_within_the_timeout_releases_the_lock_to_pending(chain, locked, eager_celery):
    broker, w = locked
    assert withdrawal_chain_check(withdrawal_id=w.pk) == "waiting"  # not timed out yet: kept
    Withdrawal.objects.filter(pk=w.pk).update(locked_at=timezone.now() - dt.timedelta(hours=24, seconds=1))

    assert withdrawals_chain_check_task() == 1
    w.refresh_from_db()
    assert (w.status, w.locked_by_id, w.locked_at) == (WithdrawalStatus.PENDING, None, None)
    assert withdrawal_chain_check(withdrawal_id=w.pk) == "not_locked"


def test_a_timed_out_lock_is_kept_while_the_chain_cannot_be_read(chain, locked):
    broker, w = locked
    Withdrawal.objects.filter(pk=w.pk).update(locked_at=timezone.now() - dt.timedelta(hours=25))
    chain.devnet.stop()  # the node is down
    assert withdrawal_chain_check(withdrawal_id=w.pk) == "unreadable"
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.BROKER_LOCKED


def test_one_transaction_never_settles_two_withdrawals(chain, db):
    broker, client, first = _withdrawal(chain, name="twice")
    second, _ = withdrawal_request(client=client, amount=Decimal("100"), wallet_address=chain.user_wallet)
    first = withdrawal_lock(broker=broker, withdrawal_id=first.pk)
    second = withdrawal_lock(broker=broker, withdrawal_id=second.pk)
    one = chain.pay(chain.broker_wallet, chain.user_wallet, 99 * USDC, not_before=second.locked_at)

    results = {withdrawal_chain_check(withdrawal_id=first.pk), withdrawal_chain_check(withdrawal_id=second.pk)}
    assert results == {"completed", "waiting"}
    assert Withdrawal.objects.filter(tx_hash=one).count() == 1

    two = chain.pay(chain.broker_wallet, chain.user_wallet, 99 * USDC)
    for w in (first, second):
        withdrawal_chain_check(withdrawal_id=w.pk)
    assert set(Withdrawal.objects.filter(pk__in=[first.pk, second.pk]).values_list("tx_hash", flat=True)) == {one, two}


def test_without_an_rpc_url_nothing_changes(chain, locked, settings):
    broker, w = locked
    settings.CHAIN_RPC_URL = ""
    Withdrawal.objects.filter(pk=w.pk).update(locked_at=timezone.now() - dt.timedelta(hours=25))
    assert withdrawal_chain_check(withdrawal_id=w.pk) == "disabled"
    w.refresh_from_db()
    assert w.status == WithdrawalStatus.BROKER_LOCKED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_checks_credit_the_broker_once(chain):
    broker, _client, w = _withdrawal(chain, name="race")
    w = withdrawal_lock(broker=broker, withdrawal_id=w.pk)
    chain.pay(chain.broker_wallet, chain.user_wallet, 99 * USDC, not_before=w.locked_at)
    before = _balance(broker)
    barrier = threading.Barrier(4)
    results: list[str] = []

    def worker():
        try:
            barrier.wait()
            results.append(withdrawal_chain_check(withdrawal_id=w.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("completed") >= 1
    assert set(results) <= {"completed", "not_locked"}
    assert _balance(broker) - before == Decimal("99")
    assert Transfer.objects.filter(withdrawal=w, kind=TransferKind.OTC_SETTLEMENT).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_payment_checked_for_two_withdrawals_at_once_settles_one(chain):
    broker, client, first = _withdrawal(chain, name="pair")
    second, _ = withdrawal_request(client=client, amount=Decimal("100"), wallet_address=chain.user_wallet)
    first = withdrawal_lock(broker=broker, withdrawal_id=first.pk)
    second = withdrawal_lock(broker=broker, withdrawal_id=second.pk)
    tx_hash = chain.pay(chain.broker_wallet, chain.user_wallet, 99 * USDC, not_before=second.locked_at)
    before = _balance(broker)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def worker(withdrawal_id):
        try:
            barrier.wait()
            results.append(withdrawal_chain_check(withdrawal_id=withdrawal_id))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(w.pk,)) for w in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["completed", "waiting"]
    assert Withdrawal.objects.filter(tx_hash=tx_hash).count() == 1
    assert Withdrawal.objects.filter(status=WithdrawalStatus.BROKER_LOCKED).count() == 1
    assert _balance(broker) - before == Decimal("99")


def test_chain_check_runs_every_30_minutes_on_the_chain_queue_and_webhooks_on_theirs():
    from django.conf import settings

    from mmsite.celery import app

    beat = {e["task"]: e for e in settings.CELERY_BEAT_SCHEDULE.values()}
    assert beat["brokers.withdrawals_chain_check"]["schedule"] == settings.CHAIN_CHECK_INTERVAL_MINUTES * 60 == 1800
    assert beat["brokers.webhooks_sweep"]["schedule"] <= 60
    route = app.amqp.router.route
    assert route({}, "brokers.withdrawal_chain_check")["queue"].name == "chain"
    assert route({}, "brokers.withdrawals_chain_check")["queue"].name == "chain"
    assert route({}, "brokers.webhook_deliver")["queue"].name == "webhooks"
    assert settings.BROKER_OTC_TIMEOUT_HOURS == settings.CHAIN_LOCK_TIMEOUT_HOURS == 24
