"""On-chain verification of OTC withdrawals (queue ``chain``).

``brokers.withdrawals_chain_check`` runs on the beat schedule (every ``CHAIN_CHECK_INTERVAL_MINUTES``)
and queues ``brokers.withdrawal_chain_check`` for every ``broker_locked`` withdrawal, so one slow
or failing check never holds up the others. Both are safe to run twice or at once: completing is
idempotent on the transaction hash and every transition re-checks the withdrawal's state under its
row lock (brokers.chain.verify).
"""

from __future__ import annotations

import logging

from celery import shared_task

from brokers.chain.verify import ChainConfig, locked_withdrawal_ids, withdrawal_chain_check

logger = logging.getLogger(__name__)


@shared_task(name="brokers.withdrawal_chain_check", acks_late=True, ignore_result=True)
def withdrawal_chain_check_task(withdrawal_id: str) -> str:
    return withdrawal_chain_check(withdrawal_id=withdrawal_id)


@shared_task(name="brokers.withdrawals_chain_check", acks_late=True, ignore_result=True)
def withdrawals_chain_check_task(limit: int = 1000) -> int:
    ids = locked_withdrawal_ids(limit=limit)
    if ids and not ChainConfig.from_settings().enabled:
        # nothing can be verified: locks stay until their broker unlocks them (docs/chain-verification.md)
        logger.warning("%d OTC-locked withdrawal(s) but CHAIN_RPC_URL/CHAIN_USDC_ADDRESS are not set", len(ids))
        return 0
    for withdrawal_id in ids:
        withdrawal_chain_check_task.delay(withdrawal_id)
    return len(ids)
