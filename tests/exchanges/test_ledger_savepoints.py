"""``savepoints_off``: ledger calls inside a caller's transaction without savepoints of their own."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from exchanges.ledger import services as ledger
from exchanges.ledger.exceptions import InsufficientFunds
from exchanges.models import Hold, LedgerAccount


@pytest.mark.django_db(transaction=True)
def test_no_savepoints_inside_and_an_error_still_rolls_back_the_whole_transaction():
    acct = ledger.account_get_or_create(owner_type="trader", owner_id="1", asset="USDC")
    ledger.deposit(account=acct, amount=D("10"), idempotency_key="dep:1")
    with CaptureQueriesContext(connection) as q, transaction.atomic(), ledger.savepoints_off():
        ledger.hold_place(account=acct, amount=D("4"), reference="order:a")
    assert not [x for x in q.captured_queries if "SAVEPOINT" in x["sql"]]
    with pytest.raises(InsufficientFunds), transaction.atomic(), ledger.savepoints_off():
        ledger.hold_place(account=acct, amount=D("1"), reference="order:b")
        ledger.hold_place(account=acct, amount=D("100"), reference="order:c")
    assert set(Hold.objects.values_list("reference", flat=True)) == {"order:a"}
    assert LedgerAccount.objects.get(pk=acct.pk).held == D("4")
    # outside the block: savepoints as before
    with CaptureQueriesContext(connection) as q, transaction.atomic():
        ledger.hold_place(account=acct, amount=D("1"), reference="order:d")
    assert [x for x in q.captured_queries if "SAVEPOINT" in x["sql"]]
