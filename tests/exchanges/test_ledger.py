"""The double-entry ledger: balanced transfers, holds, fees, paper mode, idempotency, concurrency,
and ``manage.py ledger_check``."""

from __future__ import annotations

import uuid
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchanges.ledger import fees, services
from exchanges.ledger.choices import HoldStatus, Mode, TxKind
from exchanges.ledger.exceptions import HoldNotOpen, IdempotencyConflict, InsufficientFunds, InvalidLegs
from exchanges.ledger.selectors import ledger_violations, owner_balances
from exchanges.models import Hold, LedgerAccount, LedgerTransaction, Posting
from tests.helpers import run_in_parallel

D = Decimal


def acct(owner: str, asset: str = "USDC", mode: str = Mode.LIVE) -> LedgerAccount:
    return services.account_get_or_create(owner_type="trader", owner_id=owner, asset=asset, mode=mode)


def fund(account: LedgerAccount, amount: str) -> None:
    services.deposit(account=account, amount=D(amount), idempotency_key=f"dep:{uuid.uuid4()}")


def state(account: LedgerAccount) -> tuple[Decimal, Decimal, Decimal]:
    account.refresh_from_db()
    return account.balance, account.held, account.available


def assert_sound() -> None:
    assert ledger_violations() == []
    call_command("ledger_check", stdout=StringIO(), stderr=StringIO())


@pytest.mark.django_db
def test_owner_balances_list_one_mode_by_asset():
    usdc, vaix, paper = acct("alice"), acct("alice", asset="vaix"), acct("alice", mode=Mode.PAPER)
    fund(usdc, "10")
    fund(vaix, "5")
    fund(paper, "99")
    services.hold_place(account=usdc, amount=D("4"), reference="order:1")

    rows = owner_balances(owner_type="trader", owner_id="alice", mode=Mode.LIVE)

    assert [(r["asset"], r["balance"], r["held"], r["available"]) for r in rows] == [
        ("USDC", D("10"), D("4"), D("6")),
        ("VAIX", D("5"), D("0"), D("5")),
    ]


# --- transfers ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_balanced_transfer_moves_money_and_postings_sum_to_zero():
    alice, bob = acct("alice"), acct("bob")
    fund(alice, "100")

    txn = services.transfer(idempotency_key="t1", kind=TxKind.TRANSFER, legs=[(alice, D("-30.5")), (bob, D("30.5"))])

    assert state(alice) == (D("69.5"), D("0"), D("69.5"))
    assert state(bob)[0] == D("30.5")
    assert sum(p.amount for p in txn.postings.all()) == 0
    assert txn.mode == Mode.LIVE
    assert_sound()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "amounts",
    [
        ("-10", "9"),  # unbalanced
        ("-10", "0", "10"),  # a zero leg
        ("-10",),  # one leg
        ("-0.000000001", "0.000000001"),  # finer than the quantum
    ],
)
def test_invalid_legs_are_refused_and_change_nothing(amounts):
    a, b, c = acct("a"), acct("b"), acct("c")
    fund(a, "50")
    before = (Posting.objects.count(), LedgerTransaction.objects.count())

    with pytest.raises(InvalidLegs):
        services.transfer(
            idempotency_key="bad", kind="transfer", legs=list(zip((a, b, c), map(D, amounts), strict=False))
        )

    assert (Posting.objects.count(), LedgerTransaction.objects.count()) == before
    assert state(a)[0] == D("50")


@pytest.mark.django_db
def test_float_amounts_are_refused():
    a, b = acct("a"), acct("b")
    with pytest.raises(InvalidLegs):
        services.transfer(idempotency_key="f", kind="transfer", legs=[(a, -1.5), (b, 1.5)])


@pytest.mark.django_db
def test_transfer_across_assets_must_balance_per_asset():
    a_usdc, b_vaix = acct("a"), acct("b", asset="VAIX")
    fund(a_usdc, "10")
    with pytest.raises(InvalidLegs):
        services.transfer(idempotency_key="x", kind="transfer", legs=[(a_usdc, D("-5")), (b_vaix, D("5"))])


@pytest.mark.django_db
def test_insufficient_funds_is_refused_with_no_change():
    alice, bob = acct("alice"), acct("bob")
    fund(alice, "10")
    n_txn = LedgerTransaction.objects.count()

    with pytest.raises(InsufficientFunds) as exc:
        services.transfer(idempotency_key="over", kind="transfer", legs=[(alice, D("-10.01")), (bob, D("10.01"))])

    assert exc.value.available == D("10") and exc.value.requested == D("10.01")
    assert state(alice) == (D("10"), D("0"), D("10"))
    assert state(bob)[0] == D("0")
    assert LedgerTransaction.objects.count() == n_txn
    assert not LedgerTransaction.objects.filter(idempotency_key="over").exists()
    assert_sound()


@pytest.mark.django_db
def test_held_funds_are_not_available_to_transfer():
    alice, bob = acct("alice"), acct("bob")
    fund(alice, "10")
    services.hold_place(account=alice, amount=D("8"), reference="order:1")

    with pytest.raises(InsufficientFunds):
        services.withdraw(account=alice, amount=D("3"), idempotency_key="w1")
    services.transfer(idempotency_key="ok", kind="transfer", legs=[(alice, D("-2")), (bob, D("2"))])

    assert state(alice) == (D("8"), D("8"), D("0"))


@pytest.mark.django_db
def test_retrying_a_transfer_with_the_same_key_posts_once():
    alice, bob = acct("alice"), acct("bob")
    fund(alice, "100")
    legs = [(alice, D("-40")), (bob, D("40"))]

    first = services.transfer(idempotency_key="pay:7", kind="transfer", legs=legs)
    second = services.transfer(idempotency_key="pay:7", kind="transfer", legs=list(reversed(legs)))

    assert first.pk == second.pk
    assert state(alice)[0] == D("60") and state(bob)[0] == D("40")
    assert Posting.objects.filter(transaction=first).count() == 2
    assert_sound()


@pytest.mark.django_db
def test_same_key_with_other_legs_is_a_conflict():
    alice, bob = acct("alice"), acct("bob")
    fund(alice, "100")
    services.transfer(idempotency_key="pay:8", kind="transfer", legs=[(alice, D("-40")), (bob, D("40"))])

    with pytest.raises(IdempotencyConflict):
        services.transfer(idempotency_key="pay:8", kind="transfer", legs=[(alice, D("-41")), (bob, D("41"))])
    assert state(alice)[0] == D("60")


@pytest.mark.django_db
def test_the_database_refuses_an_overdraft_and_a_zero_posting_even_past_the_services():
    alice = acct("alice")
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(pk=alice.pk).update(balance=D("-1"))
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(pk=alice.pk).update(held=D("1"))
    world = services.world_account(asset="USDC")
    LedgerAccount.objects.filter(pk=world.pk).update(balance=D("-5"))  # the outside world may go negative


# --- paper mode --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_paper_and_live_balances_are_separate_accounts():
    live, paper = acct("alice", mode=Mode.LIVE), acct("alice", mode=Mode.PAPER)
    assert live.pk != paper.pk
    fund(live, "100")
    fund(paper, "1000")
    bob_paper = acct("bob", mode=Mode.PAPER)

    services.transfer(idempotency_key="pp", kind="trade", legs=[(paper, D("-999")), (bob_paper, D("999"))])

    assert state(live) == (D("100"), D("0"), D("100"))
    assert state(paper)[0] == D("1")
    assert LedgerTransaction.objects.get(idempotency_key="pp").mode == Mode.PAPER
    assert_sound()


@pytest.mark.django_db
def test_a_transfer_mixing_paper_and_live_is_refused():
    live, paper = acct("alice", mode=Mode.LIVE), acct("bob", mode=Mode.PAPER)
    fund(paper, "10")
    with pytest.raises(InvalidLegs):
        services.transfer(idempotency_key="mix", kind="transfer", legs=[(paper, D("-5")), (live, D("5"))])
    assert state(live)[0] == D("0")


@pytest.mark.django_db
def test_paper_deposits_come_from_a_paper_world():
    paper = acct("alice", mode=Mode.PAPER)
    fund(paper, "10")
    assert services.world_account(asset="USDC", mode=Mode.PAPER).balance == D("-10")
    assert services.world_account(asset="USDC", mode=Mode.LIVE).balance == D("0")


# --- holds and fees ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_hold_then_full_release_restores_available():
    alice = acct("alice")
    fund(alice, "100")

    hold = services.hold_place(account=alice, amount=D("60"), reference="order:1")
    assert state(alice) == (D("100"), D("60"), D("40"))

    hold = services.hold_release(hold=hold)
    assert (hold.status, hold.remaining, hold.released) == (HoldStatus.RELEASED, D("0"), D("60"))
    assert state(alice) == (D("100"), D("0"), D("100"))
    assert services.hold_release(hold=hold).status == HoldStatus.RELEASED  # retry is a no-op
    assert_sound()


@pytest.mark.django_db
def test_hold_beyond_available_is_refused():
    alice = acct("alice")
    fund(alice, "10")
    with pytest.raises(InsufficientFunds):
        services.hold_place(account=alice, amount=D("10.00000001"), reference="order:1")
    assert not Hold.objects.exists()
    assert state(alice) == (D("10"), D("0"), D("10"))


@pytest.mark.django_db
def test_placing_the_same_reference_again_returns_the_hold_or_conflicts():
    alice = acct("alice")
    fund(alice, "10")
    h1 = services.hold_place(account=alice, amount=D("4"), reference="order:1")
    assert services.hold_place(account=alice, amount=D("4"), reference="order:1").pk == h1.pk
    with pytest.raises(IdempotencyConflict):
        services.hold_place(account=alice, amount=D("5"), reference="order:1")
    assert state(alice)[1] == D("4")


@pytest.mark.django_db
def test_partial_capture_with_fee_keeps_the_rest_held_then_release_frees_it():
    buyer, seller = acct("buyer"), acct("seller")
    fee_acct = services.fee_account(asset="USDC")
    fund(buyer, "100")
    hold = services.hold_place(account=buyer, amount=D("50"), reference="order:buy1")
    fee = fees.trade_fee(notional=D("30"), is_maker=True)  # the seller (maker) pays 10 bps of what it receives
    assert fee == D("0.03")

    txn = services.hold_capture(
        hold=hold, amount=D("30"), to_account=seller, fee_account=fee_acct, fee=fee, idempotency_key="trade:1:quote"
    )
    hold.refresh_from_db()

    assert (hold.status, hold.remaining, hold.captured) == (HoldStatus.PARTIALLY_CAPTURED, D("20"), D("30"))
    assert state(buyer) == (D("70"), D("20"), D("50"))
    assert state(seller)[0] == D("29.97")
    assert state(fee_acct)[0] == D("0.03")
    assert sorted(txn.postings.values_list("amount", flat=True)) == [D("-30"), D("0.03"), D("29.97")]

    again = services.hold_capture(
        hold=hold, amount=D("30"), to_account=seller, fee_account=fee_acct, fee=fee, idempotency_key="trade:1:quote"
    )
    assert again.pk == txn.pk and state(buyer)[0] == D("70")  # a replayed fill captures once

    with pytest.raises(HoldNotOpen):
        services.hold_capture(hold=hold, amount=D("20.01"), to_account=seller, idempotency_key="trade:2:quote")

    hold = services.hold_release(hold=hold)  # the order is cancelled: the rest comes back
    assert (hold.status, hold.remaining, hold.released) == (HoldStatus.RELEASED, D("0"), D("20"))
    assert state(buyer) == (D("70"), D("0"), D("70"))
    with pytest.raises(HoldNotOpen):
        services.hold_capture(hold=hold, amount=D("1"), to_account=seller, idempotency_key="trade:3:quote")
    assert_sound()


@pytest.mark.django_db
def test_capturing_all_of_a_hold_closes_it():
    seller, buyer = acct("seller", asset="VAIX"), acct("buyer", asset="VAIX")
    fund(seller, "1000")
    hold = services.hold_place(account=seller, amount=D("1000"), reference="order:sell1")

    services.hold_capture(hold=hold, amount=D("400"), to_account=buyer, idempotency_key="trade:1:base")
    services.hold_capture(hold=hold, amount=D("600"), to_account=buyer, idempotency_key="trade:2:base")
    hold.refresh_from_db()

    assert (hold.status, hold.remaining, hold.captured) == (HoldStatus.CAPTURED, D("0"), D("1000"))
    assert state(seller) == (D("0"), D("0"), D("0"))
    assert state(buyer)[0] == D("1000")
    assert_sound()


@pytest.mark.django_db
def test_partial_release_keeps_the_hold_open():
    alice = acct("alice")
    fund(alice, "10")
    hold = services.hold_place(account=alice, amount=D("10"), reference="order:1")
    hold = services.hold_release(hold=hold, amount=D("4"))
    assert (hold.status, hold.remaining) == (HoldStatus.ACTIVE, D("6"))
    assert state(alice) == (D("10"), D("6"), D("4"))
    with pytest.raises(HoldNotOpen):
        services.hold_release(hold=hold, amount=D("7"))


def trading_pair(owner: str, mode: str = Mode.LIVE) -> tuple[LedgerAccount, LedgerAccount]:
    """``owner``'s (quote, base) accounts on a VAIX/USDC market."""
    return acct(owner, "USDC", mode), acct(owner, "VAIX", mode)


@pytest.mark.django_db
def test_a_trade_settles_as_one_transaction_balanced_in_both_assets_with_fees_in_the_received_asset():
    (a_usdc, a_vaix), (b_usdc, b_vaix) = trading_pair("alice"), trading_pair("bob")
    fund(a_usdc, "100")
    fund(b_vaix, "1000")
    buy = services.hold_place(account=a_usdc, amount=D("60"), reference="order:buy")  # 120 VAIX at 0.5
    sell = services.hold_place(account=b_vaix, amount=D("100"), reference="order:sell")
    quote, base = D("0.5") * 100, D("100")
    buyer_fee = fees.trade_fee(notional=base, is_maker=False)  # taker pays 20 bps in VAIX
    seller_fee = fees.trade_fee(notional=quote, is_maker=True)  # maker pays 10 bps in USDC
    kwargs = dict(
        idempotency_key="trade:vaix:1",
        buyer_hold=buy,
        seller_hold=sell,
        quote_amount=quote,
        base_qty=base,
        buyer_base_account=a_vaix,
        seller_quote_account=b_usdc,
        buyer_fee=buyer_fee,
        seller_fee=seller_fee,
        base_fee_account=services.fee_account(asset="VAIX"),
        quote_fee_account=services.fee_account(asset="USDC"),
    )

    txn = services.trade_settle(**kwargs)
    assert services.trade_settle(**kwargs).pk == txn.pk  # a replayed trade settles once

    assert txn.postings.count() == 6
    assert state(a_usdc) == (D("50"), D("10"), D("40"))  # 10 still held for the unfilled 20 VAIX
    assert state(a_vaix)[0] == D("99.8")
    assert state(b_vaix) == (D("900"), D("0"), D("900"))
    assert state(b_usdc)[0] == D("49.95")
    assert state(services.fee_account(asset="VAIX"))[0] == D("0.2")
    assert state(services.fee_account(asset="USDC"))[0] == D("0.05")
    buy.refresh_from_db()
    sell.refresh_from_db()
    assert (buy.status, sell.status) == (HoldStatus.PARTIALLY_CAPTURED, HoldStatus.CAPTURED)
    assert_sound()


@pytest.mark.django_db
def test_a_self_trade_is_refused_by_the_ledger():
    a_usdc, a_vaix = trading_pair("alice")
    fund(a_usdc, "100")
    fund(a_vaix, "100")
    buy = services.hold_place(account=a_usdc, amount=D("10"), reference="order:buy")
    sell = services.hold_place(account=a_vaix, amount=D("10"), reference="order:sell")
    with pytest.raises(InvalidLegs):
        services.trade_settle(
            idempotency_key="self",
            buyer_hold=buy,
            seller_hold=sell,
            quote_amount=D("5"),
            base_qty=D("10"),
            buyer_base_account=a_vaix,
            seller_quote_account=a_usdc,
        )
    assert state(a_usdc) == (D("100"), D("10"), D("90"))


def test_fee_schedule_rounds_up_and_prefers_the_most_specific_entry():
    custom = {
        ("vaix", "default"): fees.FeeSchedule(maker_bps=D("1"), taker_bps=D("2")),
        (None, "mm"): fees.FeeSchedule(maker_bps=D("0"), taker_bps=D("5")),
    }
    assert fees.schedule_for(market="vaix", schedules=custom).taker_bps == D("2")
    assert fees.schedule_for(market="btc", tier="mm", schedules=custom).maker_bps == D("0")
    assert fees.schedule_for(market="btc", schedules=custom) == fees.DEFAULT
    assert fees.fee_amount(notional=D("0.00000001"), bps=D("20")) == D("0.00000001")  # rounded up, never 0
    assert fees.fee_amount(notional=D("100"), bps=D("20")) == D("0.2")
    assert fees.trade_fee(notional=D("100"), is_maker=True, tier="mm") == D("0")
    with pytest.raises(TypeError):
        fees.fee_amount(notional=100.0, bps=D("1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fees.FeeSchedule(maker_bps=D("-1"), taker_bps=D("1"))


# --- properties --------------------------------------------------------------------------------------------

amounts = st.decimals(min_value=D("0.01"), max_value=D("500"), places=2)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.integers(0, 2), amounts),
        st.tuples(st.just("withdraw"), st.integers(0, 2), amounts),
        st.tuples(st.just("transfer"), st.integers(0, 2), st.integers(0, 2), amounts),
        st.tuples(st.just("hold"), st.integers(0, 2), amounts),
        st.tuples(st.just("release"), st.integers(0, 50), st.one_of(st.none(), amounts)),
        st.tuples(st.just("capture"), st.integers(0, 50), st.integers(0, 2), amounts, st.booleans()),
    ),
    max_size=25,
)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_random_operation_sequences_keep_the_invariants(ops):
    """Any sequence of deposits, withdrawals, transfers, holds, captures and releases (refused ones
    included) leaves a sound ledger whose balances match a plain model of it."""
    run = uuid.uuid4().hex[:8]
    accounts = [acct(f"{run}-{i}") for i in range(3)]
    fee_acct = services.fee_account(asset="USDC")
    fee_before = state(fee_acct)[0]
    model = {a.pk: [D("0"), D("0")] for a in accounts}  # balance, held
    holds: list[Hold] = []

    for n, op in enumerate(ops):
        key = f"{run}:{n}"
        kind = op[0]
        try:
            if kind == "deposit":
                services.deposit(account=accounts[op[1]], amount=op[2], idempotency_key=key)
                model[accounts[op[1]].pk][0] += op[2]
            elif kind == "withdraw":
                services.withdraw(account=accounts[op[1]], amount=op[2], idempotency_key=key)
                model[accounts[op[1]].pk][0] -= op[2]
            elif kind == "transfer":
                src, dst = accounts[op[1]], accounts[op[2]]
                services.transfer(idempotency_key=key, kind="transfer", legs=[(src, -op[3]), (dst, op[3])])
                model[src.pk][0] -= op[3]
                model[dst.pk][0] += op[3]
            elif kind == "hold":
                holds.append(services.hold_place(account=accounts[op[1]], amount=op[2], reference=key))
                model[accounts[op[1]].pk][1] += op[2]
            elif kind == "release" and holds:
                hold = holds[op[1] % len(holds)]
                hold.refresh_from_db()
                freed = (
                    hold.remaining if op[2] is None or hold.status not in ("active", "partially_captured") else op[2]
                )
                services.hold_release(hold=hold, amount=op[2])
                if hold.status in ("active", "partially_captured"):
                    model[hold.account_id][1] -= freed
            elif kind == "capture" and holds:
                hold = holds[op[1] % len(holds)]
                to = accounts[op[2]]
                fee = fees.trade_fee(notional=op[3], is_maker=op[4])
                services.hold_capture(
                    hold=hold, amount=op[3], to_account=to, fee_account=fee_acct, fee=fee, idempotency_key=key
                )
                model[hold.account_id][0] -= op[3]
                model[hold.account_id][1] -= op[3]
                model[to.pk][0] += op[3] - fee
        except (InsufficientFunds, HoldNotOpen, InvalidLegs):
            pass

    for a in accounts:
        balance, held, available = state(a)
        assert [balance, held] == model[a.pk]
        assert available >= 0
    assert state(fee_acct)[0] >= fee_before
    assert ledger_violations() == []


# --- ledger_check ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ledger_check_passes_on_a_sound_ledger():
    alice, bob = acct("alice"), acct("bob")
    fund(alice, "10")
    services.hold_place(account=alice, amount=D("3"), reference="order:1")
    services.transfer(idempotency_key="t", kind="transfer", legs=[(alice, D("-2")), (bob, D("2"))])
    out = StringIO()

    call_command("ledger_check", stdout=out, stderr=StringIO())

    assert "ledger_check: ok" in out.getvalue()
    assert "transactions=2" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "corrupt,check",
    [
        ("UPDATE exchanges_ledgeraccount SET balance = balance + 1 WHERE id = %(alice)s", "balance_mismatch"),
        ("UPDATE exchanges_posting SET amount = amount + 1 WHERE account_id = %(bob)s", "unbalanced"),
        ("UPDATE exchanges_ledgeraccount SET held = held + 1 WHERE id = %(alice)s", "held_mismatch"),
        ("UPDATE exchanges_hold SET status = 'released'", "held_mismatch"),
    ],
)
def test_ledger_check_fails_on_a_corrupted_row(corrupt, check):
    alice, bob = acct("alice"), acct("bob")
    fund(alice, "10")
    services.hold_place(account=alice, amount=D("3"), reference="order:1")
    services.transfer(idempotency_key="t", kind="transfer", legs=[(alice, D("-2")), (bob, D("2"))])
    with connection.cursor() as cur:
        cur.execute(corrupt % {"alice": alice.pk, "bob": bob.pk})
    err = StringIO()

    with pytest.raises(CommandError):
        call_command("ledger_check", stdout=StringIO(), stderr=err)

    assert check in err.getvalue()


# --- console -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_ledger_model_has_read_only_console_pages(admin_client):
    alice, bob = acct("alice"), acct("bob")
    fund(alice, "10")
    hold = services.hold_place(account=alice, amount=D("3"), reference="order:1")
    services.hold_capture(hold=hold, amount=D("1"), to_account=bob, idempotency_key="c")

    for model in (LedgerAccount, LedgerTransaction, Posting, Hold):
        assert model in admin.site._registry
        name = f"admin:exchanges_{model._meta.model_name}"
        assert admin_client.get(reverse(f"{name}_changelist")).status_code == 200, model
        obj = model.objects.order_by("pk").first()
        assert admin_client.get(reverse(f"{name}_change", args=[obj.pk])).status_code == 200, model
        assert admin_client.get(reverse(f"{name}_add")).status_code == 403, model


@pytest.mark.django_db
def test_ledger_changelist_queries_do_not_grow_with_rows(admin_client):
    from django.test.utils import CaptureQueriesContext

    def make(n: int, tag: str) -> None:
        for i in range(n):
            a, b = acct(f"{tag}a{i}"), acct(f"{tag}b{i}")
            fund(a, "10")
            hold = services.hold_place(account=a, amount=D("5"), reference=f"order:{i}")
            services.hold_capture(hold=hold, amount=D("1"), to_account=b, idempotency_key=f"{tag}c{i}")

    def queries() -> dict[str, int]:
        counts = {}
        for model in (LedgerAccount, LedgerTransaction, Posting, Hold):
            with CaptureQueriesContext(connection) as ctx:
                resp = admin_client.get(reverse(f"admin:exchanges_{model._meta.model_name}_changelist"))
                assert resp.status_code == 200
            counts[model.__name__] = len(ctx)
        return counts

    make(1, "x")
    few = queries()
    make(15, "y")
    many = queries()

    assert all(many[name] <= few[name] + 2 for name in few), (few, many)


# --- PostgreSQL: real concurrent connections ---------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_withdrawals_never_overdraw_and_leave_an_exact_balance():
    alice = acct("alice")
    fund(alice, "100")

    results = run_in_parallel(
        *[(lambda i=i: services.withdraw(account=alice, amount=D("7.5"), idempotency_key=f"w:{i}")) for i in range(20)]
    )

    ok = [r for r in results if isinstance(r, LedgerTransaction)]
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert len(ok) == 13 and len(refused) == 7, results
    assert state(alice) == (D("2.5"), D("0"), D("2.5"))
    assert_sound()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_holds_captures_and_retries_of_one_key_stay_exact():
    alice, bob = acct("alice"), acct("bob")
    fund(alice, "100")
    fund(bob, "3")  # bob's transfers back never depend on when the capture lands
    hold = services.hold_place(account=alice, amount=D("60"), reference="order:1")

    results = run_in_parallel(
        *[
            (lambda: services.hold_capture(hold=hold, amount=D("10"), to_account=bob, idempotency_key="fill:1"))
            for _ in range(5)
        ],
        *[(lambda i=i: services.hold_place(account=alice, amount=D("15"), reference=f"order:x{i}")) for i in range(5)],
        *[
            (
                lambda i=i: services.transfer(
                    idempotency_key=f"t{i}", kind="transfer", legs=[(bob, D("-1")), (alice, D("1"))]
                )
            )
            for i in range(3)
        ],
    )

    captures = {r.pk for r in results[:5]}
    assert len(captures) == 1, results[:5]  # five deliveries of one fill: one capture
    placed = [r for r in results[5:10] if isinstance(r, Hold)]
    assert all(isinstance(r, (Hold, InsufficientFunds)) for r in results[5:10]), results
    hold.refresh_from_db()
    assert hold.remaining == D("50")
    balance, held, available = state(alice)
    assert balance == D("93")
    assert held == D("50") + 15 * len(placed)
    assert available >= 0
    assert state(bob)[0] == D("10")
    assert all(isinstance(r, LedgerTransaction) for r in results[10:]), results[10:]
    assert_sound()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_opposite_trades_between_two_traders_settle_concurrently_without_deadlock():
    (a_usdc, a_vaix), (b_usdc, b_vaix) = trading_pair("alice"), trading_pair("bob")
    for account in (a_usdc, a_vaix, b_usdc, b_vaix):
        fund(account, "1000")

    def settle(i: int, buyer: tuple, seller: tuple):
        buy = services.hold_place(account=buyer[0], amount=D("5"), reference=f"order:b{i}")
        sell = services.hold_place(account=seller[1], amount=D("10"), reference=f"order:s{i}")
        return services.trade_settle(
            idempotency_key=f"trade:{i}",
            buyer_hold=buy,
            seller_hold=sell,
            quote_amount=D("5"),
            base_qty=D("10"),
            buyer_base_account=buyer[1],
            seller_quote_account=seller[0],
        )

    alice, bob = (a_usdc, a_vaix), (b_usdc, b_vaix)
    results = run_in_parallel(*[(lambda i=i: settle(i, *((alice, bob) if i % 2 else (bob, alice)))) for i in range(10)])

    assert all(isinstance(r, LedgerTransaction) for r in results), results
    for account in (a_usdc, a_vaix, b_usdc, b_vaix):
        assert state(account) == (D("1000"), D("0"), D("1000"))  # five trades each way cancel out
    assert_sound()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_key_used_concurrently_for_different_movements_posts_one_and_refuses_the_other():
    """Disjoint accounts, so the two writers share no lock: the unique key decides, and the loser's
    savepoint is rolled back and answered with a conflict."""
    alice, bob, carol, dave = acct("alice"), acct("bob"), acct("carol"), acct("dave")
    fund(alice, "10")
    fund(carol, "10")

    results = run_in_parallel(
        lambda: services.transfer(idempotency_key="k", kind="transfer", legs=[(alice, D("-1")), (bob, D("1"))]),
        lambda: services.transfer(idempotency_key="k", kind="transfer", legs=[(carol, D("-2")), (dave, D("2"))]),
    )

    assert sorted(type(r).__name__ for r in results) == ["IdempotencyConflict", "LedgerTransaction"], results
    assert (state(bob)[0], state(dave)[0]) in ((D("1"), D("0")), (D("0"), D("2")))
    assert state(alice)[0] + state(bob)[0] == D("10") and state(carol)[0] + state(dave)[0] == D("10")
    assert_sound()
