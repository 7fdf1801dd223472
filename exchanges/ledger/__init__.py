"""The double-entry ledger of the house exchange and the brokerage (see docs/ledger.md).

Models live in ``exchanges.ledger.models`` (imported by ``exchanges.models``), writes in
``exchanges.ledger.services``, invariant checks in ``exchanges.ledger.selectors``, fees in the pure
``exchanges.ledger.fees``. Importing this package imports nothing.
"""
