"""``manage.py ledger_check``: verify the ledger's invariants; exit 1 on any violation.

Checks that the postings of every transaction sum to zero per asset (and never mix live and paper),
that every cached balance equals the sum of its postings, that every cached ``held`` equals the sum
of its open holds, and that no non-system account has a negative available balance.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from exchanges.ledger.selectors import ledger_summary, ledger_violations


class Command(BaseCommand):
    help = "Verify the ledger's invariants (balanced transactions, cached balances and holds, no overdraft)."

    def handle(self, *args, **options) -> None:
        summary = ledger_summary()
        self.stdout.write(" ".join(f"{k}={v}" for k, v in summary.items()))
        violations = ledger_violations()
        for v in violations:
            self.stderr.write(str(v))
        if violations:
            raise CommandError(f"ledger_check: {len(violations)} violation(s)")
        self.stdout.write("ledger_check: ok")
