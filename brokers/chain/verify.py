"""Chain verification of locked OTC withdrawals: the service behind ``brokers.withdrawals_chain_check``.

For each ``broker_locked`` withdrawal: read the token's Transfer logs from the locking broker's bound
wallet to the user's wallet, from the first block whose timestamp is at or after the lock time up to
``latest - CHAIN_CONFIRMATIONS``; on a match (``matcher.find_match``) call
``withdrawal_broker_complete`` with the transaction hash (it credits the DCT once: idempotent on the
hash, which is unique across withdrawals); otherwise, once ``timeout_hours`` have passed since the
lock, ``withdrawal_lock_expire`` (back to ``pending``). A lock is released only after a chain read
that succeeded and found nothing: an unreachable node never costs a broker who paid.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import requests
from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone
from web3.exceptions import Web3Exception

from brokers.choices import WithdrawalStatus
from brokers.errors import BrokerError
from brokers.models import Withdrawal

from .matcher import TransferLog, find_match
from .reader import ChainReader

logger = logging.getLogger(__name__)

#: What a failed chain read raises (HTTP errors, timeouts, JSON-RPC errors, malformed answers).
CHAIN_READ_ERRORS = (requests.RequestException, Web3Exception, ValueError, KeyError, OSError)


@dataclass(frozen=True)
class ChainConfig:
    rpc_url: str
    token: str
    decimals: int
    confirmations: int
    timeout_seconds: float
    max_block_range: int

    @classmethod
    def from_settings(cls) -> ChainConfig:
        return cls(
            rpc_url=getattr(settings, "CHAIN_RPC_URL", ""),
            token=getattr(settings, "CHAIN_USDC_ADDRESS", ""),
            decimals=int(getattr(settings, "CHAIN_USDC_DECIMALS", 6)),
            confirmations=int(getattr(settings, "CHAIN_CONFIRMATIONS", 3)),
            timeout_seconds=float(getattr(settings, "CHAIN_RPC_TIMEOUT_SECONDS", 10)),
            max_block_range=int(getattr(settings, "CHAIN_LOGS_MAX_BLOCK_RANGE", 2000)),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.rpc_url and self.token)

    def reader(self) -> ChainReader:
        return ChainReader(self.rpc_url, self.token, timeout=self.timeout_seconds, max_block_range=self.max_block_range)


def locked_withdrawal_ids(*, limit: int = 1000) -> list[str]:
    return [
        str(pk)
        for pk in Withdrawal.objects.filter(status=WithdrawalStatus.BROKER_LOCKED)
        .order_by("locked_at")
        .values_list("pk", flat=True)[:limit]
    ]


def _find_payment(w: Withdrawal, reader: ChainReader, config: ChainConfig) -> TransferLog | None:
    """Read the chain for ``w``'s payment (raises one of ``CHAIN_READ_ERRORS`` when it cannot)."""
    locked_at = w.locked_at.timestamp()
    to_block = reader.latest_block() - config.confirmations
    if to_block < 0:
        return None
    from_block = reader.first_block_at_or_after(math.floor(locked_at), latest=to_block)
    if from_block is None:
        return None  # no confirmed block since the lock yet
    logs = reader.transfer_logs(
        sender=w.locked_by.wallet_address, receiver=w.wallet_address, from_block=from_block, to_block=to_block
    )
    hashes = [log.tx_hash for log in logs]
    used = Withdrawal.objects.filter(tx_hash__in=hashes).exclude(pk=w.pk).values_list("tx_hash", flat=True)
    return find_match(
        logs,
        token=config.token,
        from_address=w.locked_by.wallet_address,
        to_address=w.wallet_address,
        net_amount=w.net_amount,
        decimals=config.decimals,
        locked_at=locked_at,
        used_tx_hashes=list(used),
    )


def withdrawal_chain_check(
    *, withdrawal_id, reader: ChainReader | None = None, config: ChainConfig | None = None
) -> str:
    """Check one locked withdrawal. Returns what happened: ``completed``, ``expired``, ``waiting``,
    ``not_locked``, ``unreadable`` (the chain could not be read) or ``disabled`` (no RPC configured).
    Safe to run twice and concurrently: the withdrawal services lock the row and check its state."""
    from brokers.services.withdrawals import lock_expires_at, withdrawal_broker_complete, withdrawal_lock_expire

    config = config or ChainConfig.from_settings()
    if not config.enabled:
        return "disabled"
    w = Withdrawal.objects.select_related("locked_by").filter(pk=withdrawal_id).first()
    if w is None or w.status != WithdrawalStatus.BROKER_LOCKED or w.locked_at is None or w.locked_by is None:
        return "not_locked"
    try:
        match = _find_payment(w, reader or config.reader(), config)
    except CHAIN_READ_ERRORS:
        logger.warning("chain unreadable while checking withdrawal %s", w.pk, exc_info=True)
        return "unreadable"
    try:
        if match is not None:
            withdrawal_broker_complete(withdrawal_id=w.pk, tx_hash=match.tx_hash, amount=match.amount(config.decimals))
            logger.info("withdrawal %s paid on chain by %s", w.pk, match.tx_hash)
            return "completed"
        if timezone.now() >= lock_expires_at(w):
            withdrawal_lock_expire(withdrawal_id=w.pk)
            logger.info("withdrawal %s: no payment within %sh of the lock, released", w.pk, w.timeout_hours)
            return "expired"
    except BrokerError as exc:
        # another worker moved it first (unlocked, completed, or the hash settled another withdrawal)
        logger.info("withdrawal %s not changed by the chain check: %s", w.pk, exc.message)
        return "not_locked"
    except IntegrityError:
        # the same transaction was matched to another withdrawal at the same moment and the unique
        # tx_hash kept it for that one (everything here rolled back); the next check looks again
        logger.info("withdrawal %s: its matching transaction settled another withdrawal first", w.pk)
        return "waiting"
    return "waiting"
