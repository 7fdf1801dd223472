"""Every write to the ledger. Keyword-only; each function is one ``transaction.atomic()``.

Lock order (the only one, so two writers never deadlock): the accounts involved, ascending by id
(:func:`lock_accounts`), then the hold if any (:func:`lock_hold`). A refusal raises a
:class:`~exchanges.ledger.exceptions.LedgerError` subclass before anything is written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .choices import OPEN_HOLD_STATUSES, QUANTUM, HoldStatus, Mode, OwnerType, TxKind
from .exceptions import HoldNotOpen, IdempotencyConflict, InsufficientFunds, InvalidLegs, LedgerError
from .models import Hold, LedgerAccount, LedgerTransaction, Posting

Leg = tuple[LedgerAccount | int, Decimal]
ZERO = Decimal("0")

WORLD = "world"
FEES = "fees"


_NO_SAVEPOINTS: ContextVar[bool] = ContextVar("ledger_no_savepoints", default=False)


@contextmanager
def savepoints_off() -> Iterator[None]:
    """Ledger calls made inside this block, within the caller's transaction, take no savepoint of their
    own (two round trips fewer each). Only for a caller that rolls back its **whole** transaction on any
    ledger error (the matching service does); outside a transaction nothing changes.
    """
    token = _NO_SAVEPOINTS.set(True)
    try:
        yield
    finally:
        _NO_SAVEPOINTS.reset(token)


def _atomic():
    """Each service's ``transaction.atomic()``: a savepoint when nested, unless :func:`savepoints_off`."""
    return transaction.atomic(savepoint=not _NO_SAVEPOINTS.get())


# --- accounts ----------------------------------------------------------------------------------------------


def account_get_or_create(
    *, owner_type: str, owner_id: str, asset: str, mode: str = Mode.LIVE, is_system: bool = False
) -> LedgerAccount:
    """The account of ``owner`` for ``asset`` in ``mode`` (live and paper are separate accounts)."""
    if mode not in Mode.values:
        raise InvalidLegs(f"unknown mode {mode!r}")
    if not owner_type or not owner_id or not asset:
        raise InvalidLegs("owner_type, owner_id and asset are required")
    account, _ = LedgerAccount.objects.get_or_create(
        owner_type=owner_type,
        owner_id=str(owner_id),
        asset=asset.upper(),
        mode=mode,
        defaults={"is_system": is_system},
    )
    return account


def world_account(*, asset: str, mode: str = Mode.LIVE) -> LedgerAccount:
    """The outside world for ``asset``: deposits come from it, withdrawals go to it (may go negative)."""
    return account_get_or_create(owner_type=OwnerType.SYSTEM, owner_id=WORLD, asset=asset, mode=mode, is_system=True)


def fee_account(*, asset: str, mode: str = Mode.LIVE) -> LedgerAccount:
    """The platform's fee income for ``asset``."""
    return account_get_or_create(owner_type=OwnerType.PLATFORM, owner_id=FEES, asset=asset, mode=mode)


def lock_accounts(ids: Iterable[int]) -> dict[int, LedgerAccount]:
    """``SELECT ... FOR UPDATE`` the accounts ``ids`` in ascending id order. Call inside ``atomic()``."""
    wanted = sorted(set(ids))
    rows = list(LedgerAccount.objects.select_for_update().filter(pk__in=wanted).order_by("pk"))
    if len(rows) != len(wanted):
        raise InvalidLegs(f"unknown account among {wanted}")
    return {a.pk: a for a in rows}


def lock_hold(hold_id: int) -> Hold:
    """``SELECT ... FOR UPDATE`` one hold; call after locking its account (:func:`lock_accounts`)."""
    return Hold.objects.select_for_update().get(pk=hold_id)


# --- validation --------------------------------------------------------------------------------------------


def _amount(value: Any, *, what: str = "amount") -> Decimal:
    """``value`` as an exact Decimal on the ledger quantum; floats and finer values are refused, not rounded."""
    if isinstance(value, float) or isinstance(value, bool):
        raise InvalidLegs(f"{what} must be a Decimal, not {type(value).__name__}")
    try:
        d = Decimal(value)
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise InvalidLegs(f"{what} {value!r} is not a number") from exc
    if not d.is_finite() or d.quantize(QUANTUM) != d:
        raise InvalidLegs(f"{what} {value!r} is not a multiple of {QUANTUM}")
    return d.quantize(QUANTUM)


def _positive(value: Any, *, what: str = "amount") -> Decimal:
    d = _amount(value, what=what)
    if d <= 0:
        raise InvalidLegs(f"{what} must be positive, got {d}")
    return d


def _account_id(account: LedgerAccount | int) -> int:
    return account.pk if isinstance(account, LedgerAccount) else int(account)


def _normalize_legs(legs: Sequence[Leg]) -> list[tuple[int, Decimal]]:
    out: list[tuple[int, Decimal]] = []
    for account, amount in legs:
        d = _amount(amount)
        if d == 0:
            raise InvalidLegs("a leg of zero")
        out.append((_account_id(account), d))
    if len(out) < 2:
        raise InvalidLegs("a transaction needs at least two legs")
    if len({a for a, _ in out}) != len(out):
        raise InvalidLegs("an account appears in two legs")
    return out


def _check_balanced(locked: dict[int, LedgerAccount], legs: list[tuple[int, Decimal]]) -> str:
    """Per asset the legs sum to zero and every account is in one mode; returns that mode."""
    sums: dict[str, Decimal] = defaultdict(Decimal)
    modes = set()
    for account_id, amount in legs:
        sums[locked[account_id].asset] += amount
        modes.add(locked[account_id].mode)
    unbalanced = {asset: s for asset, s in sums.items() if s != 0}
    if unbalanced:
        raise InvalidLegs(f"legs do not sum to zero: {unbalanced}")
    if len(modes) != 1:
        raise InvalidLegs("legs mix live and paper accounts")
    return modes.pop()


def _apply(locked: dict[int, LedgerAccount], deltas: dict[int, tuple[Decimal, Decimal]]) -> None:
    """Add ``(balance_delta, held_delta)`` to each locked account: all checked first, then all written."""
    new: dict[int, tuple[Decimal, Decimal]] = {}
    for account_id in sorted(deltas):
        account = locked[account_id]
        d_balance, d_held = deltas[account_id]
        balance, held = account.balance + d_balance, account.held + d_held
        if held < 0:
            raise LedgerError(f"account {account_id}: held would go negative")
        if not account.is_system and balance - held < 0:
            raise InsufficientFunds(account_id=account_id, available=account.available, requested=-(d_balance - d_held))
        new[account_id] = (balance, held)
    now = timezone.now()
    for account_id, (balance, held) in new.items():
        LedgerAccount.objects.filter(pk=account_id).update(balance=balance, held=held, updated_at=now)
        locked[account_id].balance, locked[account_id].held = balance, held


def _existing(*, idempotency_key: str, kind: str, legs: list[tuple[int, Decimal]]) -> LedgerTransaction | None:
    """The transaction already written under ``idempotency_key``, if the same movement; else a conflict."""
    txn = LedgerTransaction.objects.filter(idempotency_key=idempotency_key).first()
    if txn is None:
        return None
    posted = sorted(txn.postings.values_list("account_id", "amount"))
    if txn.kind != kind or posted != sorted(legs):
        raise IdempotencyConflict(f"idempotency key {idempotency_key!r} was used for another movement")
    return txn


def _post(
    *,
    locked: dict[int, LedgerAccount],
    idempotency_key: str,
    kind: str,
    legs: list[tuple[int, Decimal]],
    memo: str,
    metadata: dict | None,
    held_deltas: dict[int, Decimal] | None = None,
) -> LedgerTransaction:
    """Write a transaction of ``legs`` on already locked accounts (the caller checked the key is new)."""
    mode = _check_balanced(locked, legs)
    deltas = {a: (amount, (held_deltas or {}).get(a, ZERO)) for a, amount in legs}
    for a, h in (held_deltas or {}).items():
        deltas.setdefault(a, (ZERO, h))
    # Refuse before writing anything: the check in _apply runs before its writes, and it runs first.
    new_state = {a: (locked[a].balance + b, locked[a].held + h) for a, (b, h) in deltas.items()}
    for a, (balance, held) in new_state.items():
        if not locked[a].is_system and balance - held < 0:
            raise InsufficientFunds(account_id=a, available=locked[a].available, requested=-deltas[a][0])
    try:
        with transaction.atomic():  # a savepoint: a concurrent writer of the same key may win
            txn = LedgerTransaction.objects.create(
                kind=kind, idempotency_key=idempotency_key, mode=mode, memo=memo, metadata=metadata or {}
            )
    except IntegrityError:
        existing = _existing(idempotency_key=idempotency_key, kind=kind, legs=legs)
        if existing is None:
            raise
        return existing
    Posting.objects.bulk_create([Posting(transaction=txn, account_id=a, amount=amount) for a, amount in legs])
    _apply(locked, deltas)
    return txn


# --- transfers ---------------------------------------------------------------------------------------------


def transfer(
    *, idempotency_key: str, kind: str, legs: Sequence[Leg], memo: str = "", metadata: dict | None = None
) -> LedgerTransaction:
    """Post one balanced transaction of ``legs`` (``(account, signed amount)``; negative = debit).

    Per asset the amounts sum to zero, none is zero, all accounts are in one mode and each appears
    once; a non-system account's ``balance - held`` must stay >= 0 (else :class:`InsufficientFunds`
    and nothing changes). Locks every account, ascending by id. Retrying with the same key and the
    same legs returns the first transaction and posts nothing; other legs under that key raise
    :class:`IdempotencyConflict`.
    """
    if not idempotency_key:
        raise InvalidLegs("an idempotency key is required")
    norm = _normalize_legs(legs)
    with _atomic():
        locked = lock_accounts(a for a, _ in norm)
        existing = _existing(idempotency_key=idempotency_key, kind=kind, legs=norm)
        if existing is not None:
            return existing
        return _post(locked=locked, idempotency_key=idempotency_key, kind=kind, legs=norm, memo=memo, metadata=metadata)


def deposit(*, account: LedgerAccount, amount: Decimal, idempotency_key: str, memo: str = "") -> LedgerTransaction:
    """Credit ``account`` from the outside world (write the deposit's own row first; its id makes the key)."""
    amount = _positive(amount)
    world = world_account(asset=account.asset, mode=account.mode)
    return transfer(
        idempotency_key=idempotency_key, kind=TxKind.DEPOSIT, legs=[(world, -amount), (account, amount)], memo=memo
    )


def withdraw(*, account: LedgerAccount, amount: Decimal, idempotency_key: str, memo: str = "") -> LedgerTransaction:
    """Debit ``account`` to the outside world; :class:`InsufficientFunds` if not available."""
    amount = _positive(amount)
    world = world_account(asset=account.asset, mode=account.mode)
    return transfer(
        idempotency_key=idempotency_key, kind=TxKind.WITHDRAWAL, legs=[(account, -amount), (world, amount)], memo=memo
    )


# --- holds -------------------------------------------------------------------------------------------------


def hold_place(*, account: LedgerAccount, amount: Decimal, reference: str) -> Hold:
    """Set ``amount`` of ``account`` aside for ``reference`` (e.g. ``order:<id>``).

    Locks the account. :class:`InsufficientFunds` if not available. Placing the same reference
    again with the same amount returns the first hold; another amount raises :class:`IdempotencyConflict`.
    """
    amount = _positive(amount)
    if not reference:
        raise InvalidLegs("a hold needs a reference")
    with _atomic():
        locked = lock_accounts([account.pk])
        existing = Hold.objects.filter(account_id=account.pk, reference=reference).first()
        if existing is not None:
            if existing.amount != amount:
                raise IdempotencyConflict(f"hold {reference!r} exists with amount {existing.amount}")
            return existing
        _apply(locked, {account.pk: (ZERO, amount)})
        return Hold.objects.create(account_id=account.pk, reference=reference, amount=amount, remaining=amount)


def hold_release(*, hold: Hold, amount: Decimal | None = None) -> Hold:
    """Give back ``amount`` (default: all that remains) of an open hold to its account's available balance.

    Locks the account, then the hold. Releasing all of a hold that is already closed is a no-op
    (safe to retry); a partial release of a closed hold, or more than remains, raises :class:`HoldNotOpen`.
    """
    with _atomic():
        locked = lock_accounts([hold.account_id])
        h = lock_hold(hold.pk)
        if h.status not in OPEN_HOLD_STATUSES:
            if amount is None:
                return h
            raise HoldNotOpen(f"hold {h.reference!r} is {h.status}")
        amt = h.remaining if amount is None else _positive(amount)
        if amt > h.remaining:
            raise HoldNotOpen(f"hold {h.reference!r} has {h.remaining} remaining, asked {amt}")
        _apply(locked, {h.account_id: (ZERO, -amt)})
        h.remaining -= amt
        h.released += amt
        if h.remaining == 0:
            h.status = HoldStatus.RELEASED
        h.save(update_fields=["remaining", "released", "status", "updated_at"])
        return h


def _capture_legs(
    *, hold: Hold, amount: Decimal, to_account: LedgerAccount, fee_account: LedgerAccount | None, fee: Decimal
) -> tuple[Decimal, list[Leg]]:
    """The legs that move ``amount`` out of ``hold``: ``amount - fee`` to ``to_account``, ``fee`` to ``fee_account``."""
    amount = _positive(amount)
    fee = _amount(fee, what="fee")
    if fee < 0 or fee > amount:
        raise InvalidLegs(f"fee {fee} must be between 0 and the amount {amount}")
    if fee and fee_account is None:
        raise InvalidLegs("a fee needs a fee account")
    legs: list[Leg] = [(hold.account_id, -amount)]
    if amount - fee:
        legs.append((to_account, amount - fee))
    if fee:
        legs.append((fee_account, fee))  # type: ignore[arg-type]
    return amount, legs


def _capture(
    *, captures: list[tuple[Hold, Decimal]], legs: list[Leg], idempotency_key: str, kind: str, memo: str
) -> LedgerTransaction:
    """Post ``legs`` as one transaction, taking each ``(hold, amount)`` out of its hold.

    Locks every account of the legs ascending by id, then the holds ascending by id.
    """
    if not idempotency_key:
        raise InvalidLegs("an idempotency key is required")
    norm = _normalize_legs(legs)
    if len({h.pk for h, _ in captures}) != len(captures):
        raise InvalidLegs("a hold appears twice")
    with _atomic():
        locked = lock_accounts(a for a, _ in norm)
        locked_holds = {h.pk: lock_hold(h.pk) for h in sorted((h for h, _ in captures), key=lambda h: h.pk)}
        existing = _existing(idempotency_key=idempotency_key, kind=kind, legs=norm)
        if existing is not None:
            return existing
        held_deltas: dict[int, Decimal] = defaultdict(Decimal)
        for hold, amount in captures:
            h = locked_holds[hold.pk]
            if h.status not in OPEN_HOLD_STATUSES or amount > h.remaining:
                raise HoldNotOpen(f"hold {h.reference!r} ({h.status}) has {h.remaining} remaining, asked {amount}")
            held_deltas[h.account_id] -= amount
        txn = _post(
            locked=locked,
            idempotency_key=idempotency_key,
            kind=kind,
            legs=norm,
            memo=memo,
            metadata={"holds": {locked_holds[h.pk].reference: str(amount) for h, amount in captures}},
            held_deltas=dict(held_deltas),
        )
        for hold, amount in captures:
            h = locked_holds[hold.pk]
            h.remaining -= amount
            h.captured += amount
            h.status = HoldStatus.CAPTURED if h.remaining == 0 else HoldStatus.PARTIALLY_CAPTURED
            h.save(update_fields=["remaining", "captured", "status", "updated_at"])
        return txn


def hold_capture(
    *,
    hold: Hold,
    amount: Decimal,
    to_account: LedgerAccount,
    idempotency_key: str,
    fee_account: LedgerAccount | None = None,
    fee: Decimal = ZERO,
    kind: str = TxKind.CAPTURE,
    memo: str = "",
) -> LedgerTransaction:
    """Move ``amount`` of the held funds out of the hold's account: ``amount - fee`` to ``to_account``,
    ``fee`` to ``fee_account``; the rest of the hold stays held (partially captured).

    The fee is the receiver's fee, taken from what it receives (docs/ledger.md). Locks the accounts
    ascending by id, then the hold. Retrying with the same key returns the first transaction and
    captures nothing more.
    """
    amount, legs = _capture_legs(hold=hold, amount=amount, to_account=to_account, fee_account=fee_account, fee=fee)
    return _capture(captures=[(hold, amount)], legs=legs, idempotency_key=idempotency_key, kind=kind, memo=memo)


def trade_settle(
    *,
    idempotency_key: str,
    buyer_hold: Hold,
    seller_hold: Hold,
    quote_amount: Decimal,
    base_qty: Decimal,
    buyer_base_account: LedgerAccount,
    seller_quote_account: LedgerAccount,
    buyer_fee: Decimal = ZERO,
    seller_fee: Decimal = ZERO,
    base_fee_account: LedgerAccount | None = None,
    quote_fee_account: LedgerAccount | None = None,
    memo: str = "",
) -> LedgerTransaction:
    """Settle one trade as one transaction balanced in both assets.

    ``quote_amount`` leaves the buyer's quote hold (``seller_fee`` of it to ``quote_fee_account``, the
    rest to the seller) and ``base_qty`` leaves the seller's base hold (``buyer_fee`` of it to
    ``base_fee_account``, the rest to the buyer): each side pays its fee in the asset it receives.
    Locks all accounts of both assets ascending by id, then both holds; key it on the trade id so a
    replayed fill settles once. A self-trade (one account on both sides) is refused.
    """
    quote_amount, quote_legs = _capture_legs(
        hold=buyer_hold,
        amount=quote_amount,
        to_account=seller_quote_account,
        fee_account=quote_fee_account,
        fee=seller_fee,
    )
    base_qty, base_legs = _capture_legs(
        hold=seller_hold, amount=base_qty, to_account=buyer_base_account, fee_account=base_fee_account, fee=buyer_fee
    )
    return _capture(
        captures=[(buyer_hold, quote_amount), (seller_hold, base_qty)],
        legs=quote_legs + base_legs,
        idempotency_key=idempotency_key,
        kind=TxKind.TRADE,
        memo=memo,
    )


# --- one-round-trip holds (PostgreSQL; the same result as hold_place / hold_release elsewhere) ------------------


def _one_trip() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


def hold_place_new(*, account: LedgerAccount, amount: Decimal, reference: str) -> Hold:
    """:func:`hold_place` for a ``reference`` never used on ``account`` before (e.g. a fresh random order
    id): no idempotency lookup, and on PostgreSQL one statement that raises the account's ``held`` only if
    ``balance - held`` covers ``amount`` (the ``UPDATE`` takes the account's row lock, the same lock
    :func:`lock_accounts` would) and inserts the hold. :class:`InsufficientFunds` writes nothing; a
    reference that already exists raises ``IntegrityError`` (the caller's whole transaction fails)."""
    amount = _positive(amount)
    if not reference:
        raise InvalidLegs("a hold needs a reference")
    if not _one_trip():
        return hold_place(account=account, amount=amount, reference=reference)
    from django.db import connection

    now = timezone.now()
    acct, hold = LedgerAccount._meta.db_table, Hold._meta.db_table
    with _atomic(), connection.cursor() as cur:
        cur.execute(
            f"WITH a AS (UPDATE {acct} SET held = held + %(amount)s, updated_at = %(now)s "
            f"WHERE id = %(account)s AND (is_system OR balance - held >= %(amount)s) RETURNING id) "
            f"INSERT INTO {hold} (account_id, reference, amount, remaining, captured, released, status, "
            f"created_at, updated_at) SELECT id, %(reference)s, %(amount)s, %(amount)s, 0, 0, %(status)s, "
            f"%(now)s, %(now)s FROM a RETURNING id",
            {"amount": amount, "now": now, "account": account.pk, "reference": reference, "status": HoldStatus.ACTIVE},
        )
        row = cur.fetchone()
        if row is None:
            have = LedgerAccount.objects.filter(pk=account.pk).values_list("balance", "held").first()
            if have is None:
                raise InvalidLegs(f"unknown account {account.pk}")
            raise InsufficientFunds(account_id=account.pk, available=have[0] - have[1], requested=amount)
    return _hold_row(row[0], account.pk, reference, amount, amount, ZERO, ZERO, HoldStatus.ACTIVE, now, updated_at=now)


def hold_release_rest(*, hold: Hold) -> Hold:
    """:func:`hold_release` of all that remains of ``hold``, on PostgreSQL in one round trip: the account's
    ``held`` lowered by the hold's remaining (locking the account), then the hold closed (locking it):
    the ledger's lock order. Reads the hold's amounts in the database, never from ``hold`` (which may be
    stale). A hold already closed is left as it is (a no-op, like :func:`hold_release`). Returns the hold
    as it now stands in the database."""
    if not _one_trip():
        return hold_release(hold=hold)
    from django.db import connection

    now = timezone.now()
    acct, table = LedgerAccount._meta.db_table, Hold._meta.db_table
    params = {"hold": hold.pk, "now": now, "open": list(OPEN_HOLD_STATUSES), "released": HoldStatus.RELEASED}
    with _atomic(), connection.cursor() as cur:
        # Two statements, one round trip. The first locks the account and reads the hold's remaining in
        # the same statement; nothing else writes this hold without that account's lock, so the second
        # sees the same remaining.
        cur.execute(
            f"UPDATE {acct} AS a SET held = a.held - h.remaining, updated_at = %(now)s FROM {table} AS h "
            f"WHERE h.id = %(hold)s AND a.id = h.account_id AND h.status = ANY(%(open)s) AND h.remaining > 0 "
            f"RETURNING a.held, h.remaining; "
            f"UPDATE {table} SET released = released + remaining, remaining = 0, status = %(released)s, "
            f"updated_at = %(now)s WHERE id = %(hold)s AND status = ANY(%(open)s) "
            f"RETURNING account_id, reference, amount, remaining, captured, released, status, created_at",
            params,
        )
        moved = cur.fetchone()
        cur.nextset()
        row = cur.fetchone()
        if row is None:  # closed already: nothing was moved (the first statement matched no open hold)
            if moved is not None:
                raise LedgerError(f"hold {hold.pk}: released from its account but not closed")
            return Hold.objects.get(pk=hold.pk)
        if moved is None:
            if row[3] == 0 and row[5] == row[2] - row[4]:  # an open hold with nothing left: closed, no move
                pass
            else:
                raise LedgerError(f"hold {hold.pk}: closed but its account was not released")
        elif moved[0] < 0:
            raise LedgerError(f"account of hold {hold.pk}: held would go negative")
    return _hold_row(hold.pk, *row, updated_at=now)


def _hold_row(pk, account_id, reference, amount, remaining, captured, released, status, created_at, *, updated_at):
    """A ``Hold`` instance from a row this module just wrote (as the database has it; no query)."""
    h = Hold(
        id=pk,
        account_id=account_id,
        reference=reference,
        amount=amount,
        remaining=remaining,
        captured=captured,
        released=released,
        status=status,
        created_at=created_at,
        updated_at=updated_at,
    )
    h._state.adding = False
    h._state.db = "default"
    return h


# --- many holds in one round trip (a batch of orders on one book: exchanges.services.matching.run_batch) ------


def holds_place_new_sql(rows: Sequence[tuple[int, Decimal, str]], now) -> tuple[str, list]:
    """The one PostgreSQL statement of :func:`holds_place_new` for ``(account id, amount, reference)`` rows:
    each account's ``held`` raised by the sum of its new holds only where ``balance - held`` covers it, and
    those accounts' holds inserted, ``RETURNING id, reference`` (fewer rows than given: an account was
    short). For a caller that sends it with other statements (the matching service's one-message writes)."""
    acct, hold = LedgerAccount._meta.db_table, Hold._meta.db_table
    return (
        f"WITH req AS (SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::numeric[]) "
        f"AS r(account_id, reference, amount)), "
        f"tot AS (SELECT account_id, sum(amount) AS s FROM req GROUP BY account_id), "
        f"a AS (UPDATE {acct} AS x SET held = x.held + tot.s, updated_at = %s FROM tot "
        f"WHERE x.id = tot.account_id AND (x.is_system OR x.balance - x.held >= tot.s) RETURNING x.id) "
        f"INSERT INTO {hold} (account_id, reference, amount, remaining, captured, released, status, "
        f"created_at, updated_at) SELECT req.account_id, req.reference, req.amount, req.amount, 0, 0, %s, "
        f"%s, %s FROM req JOIN a ON a.id = req.account_id RETURNING id, reference",
        [[r[0] for r in rows], [r[2] for r in rows], [r[1] for r in rows], now, HoldStatus.ACTIVE, now, now],
    )


def holds_release_rest_sql(hold_ids: Sequence[int], now) -> list[tuple[str, list]]:
    """The two PostgreSQL statements of :func:`holds_release_rest`, in the ledger's lock order: the accounts'
    ``held`` lowered by the sum of their open holds' remaining (``RETURNING id, held``), then the holds
    closed (``RETURNING`` each closed hold's row)."""
    acct, table = LedgerAccount._meta.db_table, Hold._meta.db_table
    ids, opened = sorted(set(hold_ids)), list(OPEN_HOLD_STATUSES)
    return [
        (
            f"UPDATE {acct} AS a SET held = a.held - s.r, updated_at = %s FROM (SELECT account_id, "
            f"sum(remaining) AS r FROM {table} WHERE id = ANY(%s) AND status = ANY(%s) AND remaining > 0 "
            f"GROUP BY account_id) AS s WHERE a.id = s.account_id RETURNING a.id, a.held",
            [now, ids, opened],
        ),
        (
            f"UPDATE {table} SET released = released + remaining, remaining = 0, status = %s, updated_at = %s "
            f"WHERE id = ANY(%s) AND status = ANY(%s) "
            f"RETURNING id, account_id, reference, amount, remaining, captured, released, status, created_at",
            [HoldStatus.RELEASED, now, ids, opened],
        ),
    ]


def holds_place_new(plans: Sequence[tuple[LedgerAccount | int, Decimal, str]]) -> list[Hold]:
    """:func:`hold_place_new` for several ``(account, amount, reference)`` at once, in order; on PostgreSQL
    one statement: each account's ``held`` is raised by the sum of its new holds only if ``balance - held``
    covers that sum, and the holds are inserted. If any account is short, nothing is written and
    :class:`InsufficientFunds` names the first short account. References must be new (as for
    :func:`hold_place_new`). The caller locks the accounts first when it locks several (the ledger's lock
    order); a single account is locked by the statement's own ``UPDATE``."""
    if not plans:
        return []
    rows = [(_account_id(acct), _positive(amount), reference) for acct, amount, reference in plans]
    for _, _, reference in rows:
        if not reference:
            raise InvalidLegs("a hold needs a reference")
    if len(rows) == 1 or not _one_trip():
        return [hold_place_new(account=a, amount=amt, reference=ref) for a, amt, ref in rows]
    from django.db import connection

    now = timezone.now()
    totals: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for account_id, amount, _ in rows:
        totals[account_id] += amount
    with _atomic(), connection.cursor() as cur:
        cur.execute(*holds_place_new_sql(rows, now))
        ids = dict((ref, pk) for pk, ref in cur.fetchall())
        if len(ids) != len(rows):
            placed_accounts = {a for a, _, ref in rows if ref in ids}
            short = next(a for a, _, _ in rows if a not in placed_accounts)
            have = LedgerAccount.objects.filter(pk=short).values_list("balance", "held").first()
            if have is None:
                raise InvalidLegs(f"unknown account {short}")
            raise InsufficientFunds(account_id=short, available=have[0] - have[1], requested=totals[short])
    return [
        _hold_row(
            ids[reference], account_id, reference, amount, amount, ZERO, ZERO, HoldStatus.ACTIVE, now, updated_at=now
        )
        for account_id, amount, reference in rows
    ]


def holds_release_rest(holds: Sequence[Hold]) -> list[Hold]:
    """:func:`hold_release_rest` of several holds; on PostgreSQL two statements in one round trip: the
    accounts' ``held`` lowered by the sum of their open holds' remaining (locking the accounts), then the
    holds closed (the ledger's lock order). Holds already closed are left as they are. Returns the holds
    as they now stand, in the order given. The caller must be the only writer of these holds (the matching
    service: they belong to orders of the book it holds)."""
    if not holds:
        return []
    if len(holds) == 1 or not _one_trip():
        return [hold_release_rest(hold=h) for h in holds]
    from django.db import connection

    now = timezone.now()
    ids = sorted({h.pk for h in holds})
    (move_sql, move_params), (close_sql, close_params) = holds_release_rest_sql(ids, now)
    with _atomic(), connection.cursor() as cur:
        cur.execute(f"{move_sql}; {close_sql}", [*move_params, *close_params])
        moved = cur.fetchall()
        cur.nextset()
        closed = {row[0]: row for row in cur.fetchall()}
        if any(held < 0 for _, held in moved):
            raise LedgerError(f"holds {ids}: an account's held would go negative")
    out = []
    for h in holds:
        row = closed.get(h.pk)
        if row is None:  # closed already: nothing moved for it
            out.append(Hold.objects.get(pk=h.pk))
            continue
        out.append(_hold_row(*row, updated_at=now))
    return out
