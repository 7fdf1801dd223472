"""Withdrawals and OTC fulfilment: the seed's state machine (docs/brokerage.md).

::

    pending ──lock──> broker_locked ──chain match──> broker_completed
       │  ^               │
       │  └──unlock/expire┘
       ├──cancel (user, during cooling)──> cancelled
       └──cooling over──> processing ──platform pays──> completed

Every transition locks the withdrawal row (``SELECT … FOR UPDATE``, :func:`lock_withdrawal`),
checks the state it expects, writes the new state, a :class:`WithdrawalEvent` and the webhook
events in one transaction. Money: the request places a ledger hold of ``amount`` on the client's
account; ``broker_completed`` captures it (``net_amount`` to the OTC broker, ``fee`` to the
platform), ``completed`` captures it to the outside world (net) and the platform (fee),
``cancelled`` releases it. Lock order: the withdrawal row, then (inside the ledger) the accounts
ascending by id, then the hold.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from brokers import conf
from brokers.amounts import withdrawal_fee
from brokers.choices import FINAL_WITHDRAWAL_STATUSES, TransferKind, WithdrawalStatus
from brokers.errors import BadRequest, BrokerError, Conflict, Forbidden, NotFound
from brokers.models import Broker, BrokerClient, Transfer, Withdrawal, WithdrawalEvent
from brokers.services import events
from brokers.services.brokers import validate_wallet
from exchanges.ledger import services as ledger
from exchanges.ledger.choices import Mode
from exchanges.ledger.exceptions import InsufficientFunds, LedgerError

logger = logging.getLogger(__name__)

S = WithdrawalStatus


def lock_withdrawal(withdrawal_id) -> Withdrawal:
    """``SELECT … FOR UPDATE`` one withdrawal (with its client and brokers); call inside ``atomic()``."""
    from brokers.selectors import parse_withdrawal_id

    pk = parse_withdrawal_id(withdrawal_id)
    try:
        return (
            Withdrawal.objects.select_for_update(of=("self",))
            .select_related("client", "broker", "locked_by")
            .get(pk=pk)
        )
    except Withdrawal.DoesNotExist as exc:
        raise NotFound("Withdrawal not found") from exc


def _record(w: Withdrawal, *, from_status: str, broker: Broker | None, actor: str, detail: dict | None = None) -> None:
    WithdrawalEvent.objects.create(
        withdrawal=w, from_status=from_status, to_status=w.status, broker=broker, actor=actor, detail=detail or {}
    )
    if w.status in FINAL_WITHDRAWAL_STATUSES and w.hold_id:
        # A withdrawal asked for through the exchange's withdraw endpoint: its row there follows.
        from exchanges.services.withdrawals import withdrawal_finished

        withdrawal_finished(hold_id=w.hold_id, status="cancelled" if w.status == S.CANCELLED else "completed")


# --- request and cancel ------------------------------------------------------------------------------------


@transaction.atomic
def withdrawal_request(
    *,
    client: BrokerClient,
    amount: Decimal,
    wallet_address: str,
    idempotency_key: str | None = None,
    actor: str = "",
    hold=None,
) -> tuple[Withdrawal, bool]:
    """A withdrawal of ``amount`` from ``client``'s DCT balance to ``wallet_address``, held in the ledger.

    Starts ``pending`` for the cooling period. The fee (``BROKER_WITHDRAWAL_FEE_BPS``, rounded up)
    comes out of the amount. ``hold``: an open ledger hold of exactly ``amount`` on the client's
    account that the caller already placed (the exchange's withdraw endpoint), adopted instead of
    placing one. Refused with :class:`BadRequest` when the available balance is short. Retrying with
    the same ``idempotency_key`` returns the first withdrawal (``created`` False).
    """
    wallet_address = validate_wallet(wallet_address)
    if not wallet_address:
        raise BadRequest("wallet_address is required (the user's wallet to receive USDC)")
    fee = withdrawal_fee(amount, conf.withdrawal_fee_bps())
    if fee >= amount:
        raise BadRequest(f"amount {amount} does not cover the withdrawal fee {fee}")
    key = idempotency_key or f"auto:{uuid.uuid4()}"
    if len(key) > 200:
        raise BadRequest("idempotency key: at most 200 characters")
    existing = Withdrawal.objects.filter(client=client, idempotency_key=key).first()
    if existing is not None:
        if existing.amount != amount or existing.wallet_address != wallet_address:
            raise Conflict("Idempotency-Key already used for a different request")
        return existing, False
    withdrawal_id = uuid.uuid4()
    if hold is None:
        try:
            hold = ledger.hold_place(
                account=client.account, amount=amount, reference=f"broker-withdrawal:{withdrawal_id}"
            )
        except InsufficientFunds as exc:
            raise BadRequest(
                f"Insufficient balance: available {exc.available}, requested {amount}", available=str(exc.available)
            ) from exc
    elif hold.account_id != client.account_id or hold.remaining != amount:
        raise BadRequest("the hold does not cover this withdrawal")
    now = timezone.now()
    try:
        with transaction.atomic():
            w = Withdrawal.objects.create(
                id=withdrawal_id,
                broker_id=client.broker_id,
                client=client,
                asset=client.account.asset,
                amount=amount,
                fee=fee,
                net_amount=amount - fee,
                wallet_address=wallet_address,
                hold=hold,
                cooling_ends_at=now + conf.cooling_period(),
                timeout_hours=conf.otc_timeout_hours(),
                idempotency_key=key,
            )
    except IntegrityError:  # the same key, concurrently
        existing = Withdrawal.objects.filter(client=client, idempotency_key=key).first()
        if existing is None:
            raise
        raise Conflict("a withdrawal with this Idempotency-Key is being created") from None
    _record(w, from_status="", broker=None, actor=actor, detail={"fee": str(fee)})
    events.emit_withdrawal(w)
    return w, True


def exchange_withdrawal_request(*, trader, asset: str, amount: Decimal, address: str, mode: str, hold=None) -> dict:
    """The house exchange's withdraw endpoint (``settings.EXCHANGE_WITHDRAWAL_HANDLER``).

    Creates the withdrawal for the trader's broker client. ``hold``: the ledger hold the exchange
    placed for it, or None to place one here. Raises :class:`BadRequest` (a trader with no broker,
    paper mode, another asset, a short balance) with nothing changed.
    """
    if mode != Mode.LIVE:
        raise BadRequest("paper balances cannot be withdrawn")
    client = BrokerClient.objects.select_related("account", "broker").filter(trader=trader).first()
    if client is None:
        raise BadRequest("withdrawals are available to broker clients only")
    if asset.upper() != client.account.asset:
        raise BadRequest(f"only {client.account.asset} can be withdrawn")
    w, _ = withdrawal_request(client=client, amount=amount, wallet_address=address, actor="exchange", hold=hold)
    return withdrawal_row(w)


@transaction.atomic
def withdrawal_cancel(*, withdrawal_id, client: BrokerClient | None = None, actor: str = "") -> Withdrawal:
    """The user cancels a ``pending`` withdrawal during the cooling period; the hold is released."""
    w = lock_withdrawal(withdrawal_id)
    if client is not None and w.client_id != client.pk:
        raise NotFound("Withdrawal not found")
    if w.status == S.CANCELLED:
        return w
    if w.status != S.PENDING:
        raise Conflict(f"Withdrawal is {w.status}: only a pending withdrawal can be cancelled")
    if timezone.now() >= w.cooling_ends_at:
        raise BadRequest("Cooling period has ended: the platform is processing this withdrawal")
    ledger.hold_release(hold=w.hold)
    w.status = S.CANCELLED
    w.completed_at = timezone.now()
    w.save(update_fields=["status", "completed_at", "updated_at"])
    _record(w, from_status=S.PENDING, broker=None, actor=actor)
    events.emit_withdrawal(w)
    return w


# --- OTC lock ----------------------------------------------------------------------------------------------


@transaction.atomic
def withdrawal_lock(*, broker: Broker, withdrawal_id, actor: str = "") -> Withdrawal:
    """``broker`` locks a pending withdrawal to pay the user on chain (first come, first served).

    The withdrawal must be visible to ``broker`` (its client's broker is ``broker`` or below it),
    else :class:`NotFound`. :class:`Conflict` if another broker holds the lock or the state is not
    ``pending``; :class:`BadRequest` after the cooling period or without a bound wallet.
    """
    if not broker.wallet_address:
        raise BadRequest("Broker wallet address is not bound: bind a walletAddress before locking withdrawals")
    w = lock_withdrawal(withdrawal_id)
    if not w.broker.is_in_subtree_of(broker):
        raise NotFound("Withdrawal not found")
    if w.status == S.BROKER_LOCKED:
        if w.locked_by_id == broker.pk:
            return w  # a retried lock by the same broker: the lock it already has
        raise Conflict("This withdrawal has already been locked by another broker")
    if w.status == S.PROCESSING or (w.status == S.PENDING and timezone.now() >= w.cooling_ends_at):
        raise BadRequest("Cooling period has ended: the platform is processing this withdrawal")
    if w.status != S.PENDING:
        raise Conflict(f"Withdrawal is {w.status}: only a pending withdrawal can be locked")
    w.status = S.BROKER_LOCKED
    w.locked_by = broker
    w.locked_at = timezone.now()
    w.timeout_hours = conf.otc_timeout_hours()
    w.save(update_fields=["status", "locked_by", "locked_at", "timeout_hours", "updated_at"])
    _record(w, from_status=S.PENDING, broker=broker, actor=actor)
    events.emit_withdrawal(w, also=broker)
    return w


def _release_lock(w: Withdrawal, *, broker: Broker | None, actor: str, reason: str) -> Withdrawal:
    previous = w.locked_by
    w.status = S.PENDING
    w.locked_by = None
    w.locked_at = None
    w.save(update_fields=["status", "locked_by", "locked_at", "updated_at"])
    _record(w, from_status=S.BROKER_LOCKED, broker=broker, actor=actor, detail={"reason": reason})
    events.emit_withdrawal(w, also=previous)
    return w


@transaction.atomic
def withdrawal_unlock(*, broker: Broker, withdrawal_id, actor: str = "") -> Withdrawal:
    """The locking broker releases its lock: back to ``pending``. :class:`Forbidden` for any other broker."""
    w = lock_withdrawal(withdrawal_id)
    if not w.broker.is_in_subtree_of(broker):
        raise NotFound("Withdrawal not found")
    if w.status != S.BROKER_LOCKED:
        raise Conflict(f"Withdrawal is {w.status}: only a locked withdrawal can be unlocked")
    if w.locked_by_id != broker.pk:
        raise Forbidden("Only the broker that locked this withdrawal can unlock it")
    return _release_lock(w, broker=broker, actor=actor, reason="unlocked")


def lock_expires_at(w: Withdrawal):
    return w.locked_at + timedelta(hours=w.timeout_hours) if w.locked_at else None


@transaction.atomic
def withdrawal_lock_expire(*, withdrawal_id) -> Withdrawal:
    """Chain verification found no payment within ``timeout_hours`` of the lock: back to ``pending``.

    Safe to run twice: a withdrawal that is no longer locked is returned unchanged. Refuses
    (:class:`Conflict`) to release a lock before its timeout.
    """
    w = lock_withdrawal(withdrawal_id)
    if w.status != S.BROKER_LOCKED:
        return w
    if timezone.now() < lock_expires_at(w):
        raise Conflict(f"the lock expires at {lock_expires_at(w).isoformat()}")
    return _release_lock(w, broker=None, actor="chain", reason="timeout")


def _capture(
    w: Withdrawal, *, kind: str, broker: Broker, to_account_id: int, actor: str, idempotency: str, memo: str
) -> Transfer:
    """Take the whole hold: ``net_amount`` to ``to_account_id``, ``fee`` to the platform; one transfer row."""
    t = Transfer.objects.create(
        broker=broker,
        client=w.client,
        withdrawal=w,
        kind=kind,
        asset=w.asset,
        amount=w.amount,
        fee=w.fee,
        idempotency_key=idempotency,
        actor=actor,
        memo=memo,
    )
    fees = ledger.fee_account(asset=w.asset)
    txn = ledger.hold_capture(
        hold=w.hold,
        amount=w.amount,
        to_account=to_account_id,
        fee_account=fees,
        fee=w.fee,
        idempotency_key=f"broker-transfer:{t.pk}",
        kind=f"broker_{kind}",
        memo=memo,
    )
    Transfer.objects.filter(pk=t.pk).update(ledger_transaction=txn)
    t.ledger_transaction = txn
    return t


@transaction.atomic
def withdrawal_broker_complete(
    *, withdrawal_id, tx_hash: str, amount: Decimal | None = None, locked_at=None, locked_by_id=None
) -> Withdrawal:
    """The chain shows the locking broker paid the user: credit the DCT to that broker, ``broker_completed``.

    Idempotent on ``tx_hash``: completing again with the same hash returns the withdrawal unchanged;
    another hash, or a withdrawal that is not ``broker_locked``, is a :class:`Conflict`. ``amount``
    is the USDC amount seen on chain (recorded in the history). ``locked_at``/``locked_by_id``: the
    lock the chain read was made for; if the withdrawal was unlocked and locked again since (by
    another broker, whose wallet was not the one checked), :class:`Conflict` and nothing is credited.
    """
    tx_hash = (tx_hash or "").strip()
    if not tx_hash:
        raise BadRequest("tx_hash is required")
    w = lock_withdrawal(withdrawal_id)
    if w.status == S.BROKER_COMPLETED:
        if w.tx_hash == tx_hash:
            return w
        raise Conflict(f"withdrawal already completed by transaction {w.tx_hash}")
    if w.status != S.BROKER_LOCKED:
        raise Conflict(f"Withdrawal is {w.status}: only a locked withdrawal can be completed")
    if (locked_at is not None and w.locked_at != locked_at) or (
        locked_by_id is not None and w.locked_by_id != locked_by_id
    ):
        raise Conflict("the withdrawal was locked again since the chain was read")
    if Withdrawal.objects.filter(tx_hash=tx_hash).exclude(pk=w.pk).exists():
        raise Conflict(f"transaction {tx_hash} already settled another withdrawal")
    broker = w.locked_by
    t = _capture(
        w,
        kind=TransferKind.OTC_SETTLEMENT,
        broker=broker,
        to_account_id=broker.account_id,
        actor="chain",
        idempotency=f"otc:{w.pk}",
        memo=f"OTC settlement {tx_hash}",
    )
    w.status = S.BROKER_COMPLETED
    w.tx_hash = tx_hash
    w.completed_at = timezone.now()
    w.save(update_fields=["status", "tx_hash", "completed_at", "updated_at"])
    _record(
        w,
        from_status=S.BROKER_LOCKED,
        broker=broker,
        actor="chain",
        detail={"tx_hash": tx_hash, "chain_amount": str(amount) if amount is not None else None},
    )
    events.emit_withdrawal(w, also=broker)
    events.emit_transfer(t)
    return w


# --- the platform's path: cooling over -> processing -> completed ----------------------------------------


@transaction.atomic
def withdrawal_start_processing(*, withdrawal_id) -> Withdrawal:
    """A ``pending`` withdrawal whose cooling period is over goes to the platform: ``processing``."""
    w = lock_withdrawal(withdrawal_id)
    if w.status != S.PENDING or timezone.now() < w.cooling_ends_at:
        return w
    w.status = S.PROCESSING
    w.save(update_fields=["status", "updated_at"])
    _record(w, from_status=S.PENDING, broker=None, actor="platform")
    events.emit_withdrawal(w)
    w.changed_now = True
    return w


@transaction.atomic
def withdrawal_platform_pay(*, withdrawal_id) -> Withdrawal:
    """The platform pays a ``processing`` withdrawal: the held DCT leaves to the outside world, ``completed``.

    Safe to run twice (a completed withdrawal is returned unchanged).
    """
    w = lock_withdrawal(withdrawal_id)
    if w.status != S.PROCESSING:
        return w
    world = ledger.world_account(asset=w.asset)
    t = _capture(
        w,
        kind=TransferKind.PAYOUT,
        broker=w.broker,
        to_account_id=world.pk,
        actor="platform",
        idempotency=f"payout:{w.pk}",
        memo=f"platform payout to {w.wallet_address}",
    )
    w.status = S.COMPLETED
    w.completed_at = timezone.now()
    w.save(update_fields=["status", "completed_at", "updated_at"])
    _record(w, from_status=S.PROCESSING, broker=None, actor="platform")
    events.emit_withdrawal(w)
    events.emit_transfer(t)
    w.changed_now = True  # this call made the transition (a concurrent run's call returns it unchanged)
    return w


def withdrawals_advance(*, now=None, limit: int = 500) -> dict[str, int]:
    """Move every due ``pending`` withdrawal to ``processing`` and pay every ``processing`` one.

    Returns how many this run moved and paid (withdrawals another run handled meanwhile are not counted).

    Each withdrawal in its own transaction, so one failure does not hold up the rest. Safe to run
    concurrently and twice (each step re-checks the state under the row lock).
    """
    now = now or timezone.now()
    due = list(
        Withdrawal.objects.filter(status=S.PENDING, cooling_ends_at__lte=now)
        .order_by("cooling_ends_at")
        .values_list("pk", flat=True)[:limit]
    )
    started = sum(_step(withdrawal_start_processing, pk) for pk in due)
    paying = Withdrawal.objects.filter(status=S.PROCESSING).order_by("updated_at").values_list("pk", flat=True)
    paid = sum(_step(withdrawal_platform_pay, pk) for pk in list(paying[:limit]))
    return {"processing": started, "completed": paid}


def _step(fn, pk) -> bool:
    """Run one transition; a refusal is logged and skipped (the next run tries again), never fatal to the batch."""
    try:
        return bool(getattr(fn(withdrawal_id=pk), "changed_now", False))
    except (BrokerError, LedgerError):
        logger.exception("withdrawal %s: %s refused", pk, fn.__name__)
        return False


def withdrawal_row(w: Withdrawal) -> dict:
    """The API's view of a withdrawal (seed names where the seed shows them)."""
    return {
        "id": str(w.pk),
        "withdrawal_id": str(w.pk),
        "user_id": w.client.user_id,
        "broker_id": str(w.broker_id),
        "status": w.status,
        "asset": w.asset,
        "amount": w.amount,
        "fee": w.fee,
        "netAmount": w.net_amount,
        "userWalletAddress": w.wallet_address,
        "cooling_ends_at": w.cooling_ends_at.isoformat(),
        "locked_by_broker_id": str(w.locked_by_id) if w.locked_by_id else None,
        "locked_at": w.locked_at.isoformat() if w.locked_at else None,
        "timeoutHours": w.timeout_hours,
        "tx_hash": w.tx_hash,
        "created_at": w.created_at.isoformat(),
        "completed_at": w.completed_at.isoformat() if w.completed_at else None,
    }
