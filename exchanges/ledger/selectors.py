"""Read queries over the ledger: balances and the invariant checks behind ``manage.py ledger_check``.

Every check is one aggregate query in SQL. Sums are compared with a tolerance of half a quantum,
which is exact on PostgreSQL (NUMERIC) and absorbs SQLite's floating point.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, DecimalField, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from .choices import AMOUNT_DIGITS, AMOUNT_PLACES, OPEN_HOLD_STATUSES, QUANTUM
from .models import Hold, LedgerAccount, LedgerTransaction, Posting

EPS = QUANTUM / 2
_DEC = DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES)


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}"


def _off(field: str) -> Q:
    return Q(**{f"{field}__gt": EPS}) | Q(**{f"{field}__lt": -EPS})


def owner_balances(*, owner_type: str, owner_id: str, mode: str) -> list[dict]:
    """``[{asset, balance, held, available}]`` of one owner in one mode, by asset (for balance endpoints)."""
    return list(
        LedgerAccount.objects.filter(owner_type=owner_type, owner_id=str(owner_id), mode=mode)
        .order_by("asset")
        .annotate(available=F("balance") - F("held"))
        .values("asset", "balance", "held", "available")
    )


def unbalanced_transactions() -> list[Violation]:
    """Transactions whose postings do not sum to zero in some asset, or that mix modes."""
    rows = (
        Posting.objects.values("transaction_id", "account__asset")
        .annotate(total=Sum("amount"))
        .filter(_off("total"))
        .order_by("transaction_id")
    )
    out = [
        Violation("unbalanced", f"transaction {r['transaction_id']} {r['account__asset']} sums to {r['total']}")
        for r in rows
    ]
    mixed = (
        Posting.objects.values("transaction_id")
        .annotate(modes=Count("account__mode", distinct=True))
        .filter(modes__gt=1)
        .order_by("transaction_id")
    )
    out += [Violation("mixed_modes", f"transaction {r['transaction_id']} mixes live and paper") for r in mixed]
    lonely = LedgerTransaction.objects.annotate(n=Count("postings")).filter(n__lt=2).values_list("pk", flat=True)
    out += [Violation("too_few_postings", f"transaction {pk} has fewer than two postings") for pk in lonely]
    return out


def accounts_with_totals():
    """Accounts annotated with ``posted`` (sum of postings) and ``open_held`` (sum of open holds)."""
    posted = Posting.objects.filter(account_id=OuterRef("pk")).order_by().values("account_id")
    posted = posted.annotate(s=Sum("amount")).values("s")
    held = Hold.objects.filter(account_id=OuterRef("pk"), status__in=OPEN_HOLD_STATUSES).order_by().values("account_id")
    held = held.annotate(s=Sum("remaining")).values("s")
    zero = Value(Decimal("0"), output_field=_DEC)
    return LedgerAccount.objects.annotate(
        posted=Coalesce(Subquery(posted, output_field=_DEC), zero, output_field=_DEC),
        open_held=Coalesce(Subquery(held, output_field=_DEC), zero, output_field=_DEC),
    )


def account_mismatches() -> list[Violation]:
    """Cached balances that differ from their postings, cached holds from their open holds, and
    non-system accounts whose available balance is negative."""
    qs = accounts_with_totals().annotate(
        d_balance=F("balance") - F("posted"), d_held=F("held") - F("open_held"), avail=F("balance") - F("held")
    )
    out = [
        Violation("balance_mismatch", f"account {a.pk} ({a}) balance {a.balance} but postings sum to {a.posted}")
        for a in qs.filter(_off("d_balance")).order_by("pk")
    ]
    out += [
        Violation("held_mismatch", f"account {a.pk} ({a}) held {a.held} but open holds sum to {a.open_held}")
        for a in qs.filter(_off("d_held")).order_by("pk")
    ]
    out += [
        Violation("negative_available", f"account {a.pk} ({a}) available {a.balance - a.held}")
        for a in qs.filter(is_system=False, avail__lt=-EPS).order_by("pk")
    ]
    out += [
        Violation("negative_held", f"account {a.pk} ({a}) held {a.held}")
        for a in qs.filter(held__lt=-EPS).order_by("pk")
    ]
    return out


def ledger_violations() -> list[Violation]:
    """Every broken invariant of the ledger; empty when the ledger is sound."""
    return unbalanced_transactions() + account_mismatches()


def ledger_summary() -> dict[str, int]:
    return {
        "accounts": LedgerAccount.objects.count(),
        "transactions": LedgerTransaction.objects.count(),
        "postings": Posting.objects.count(),
        "open_holds": Hold.objects.filter(status__in=OPEN_HOLD_STATUSES).count(),
    }
