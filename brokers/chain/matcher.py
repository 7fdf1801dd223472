"""Matching an OTC payout to ERC-20 ``Transfer`` logs (pure: no Django, no I/O).

The seed's rules (docs/chain-verification.md):

- ``from`` is the locking broker's bound wallet, ``to`` the user's wallet (addresses compared
  case-insensitively: a checksummed and a lower-case address are the same account);
- the amount is at least the net amount within 1 %: ``value >= ceil(net_amount * 0.99 * 10**decimals)``
  in the token's smallest units;
- the block's timestamp is at or after the lock time, in whole seconds:
  ``block_timestamp >= floor(locked_at)`` (block times have a resolution of one second);
- a transaction settles at most one withdrawal: hashes in ``used_tx_hashes`` are skipped.

Of several matching logs the earliest (block, log index) wins, so the answer does not depend on the
order the node returned them in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

#: keccak256("Transfer(address,address,uint256)")
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
#: The seed's "1% tolerance": the payment may be up to 1 % short of the net amount.
TOLERANCE = Decimal("0.01")


@dataclass(frozen=True)
class TransferLog:
    """One decoded ERC-20 Transfer event."""

    tx_hash: str  # 0x-prefixed, lower case
    log_index: int
    block_number: int
    block_timestamp: int  # Unix seconds
    token: str  # the contract that emitted the log, lower case
    sender: str  # lower case
    receiver: str  # lower case
    value: int  # smallest units of the token

    def amount(self, decimals: int) -> Decimal:
        return Decimal(self.value).scaleb(-decimals)


def normalize_address(address: str) -> str:
    value = (address or "").strip().lower()
    if not value.startswith("0x"):
        value = "0x" + value
    if len(value) != 42 or any(c not in "0123456789abcdef" for c in value[2:]):
        raise ValueError(f"not an address: {address!r}")
    return value


def address_topic(address: str) -> str:
    """An address as an indexed event topic (32 bytes, left-padded with zeros)."""
    return "0x" + "0" * 24 + normalize_address(address)[2:]


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text.lower() if text.startswith(("0x", "0X")) else "0x" + text.lower()


def decode_transfer_log(log: Mapping[str, Any], *, block_timestamp: int) -> TransferLog | None:
    """Decode a raw ``eth_getLogs`` entry (hex strings or bytes); None when it is not a Transfer.

    ``topics[1]``/``topics[2]`` are the indexed ``from``/``to``; ``data`` is the uint256 value.
    """
    topics = [_hex(t) for t in log.get("topics", [])]
    if len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
        return None  # not an ERC-20 Transfer (ERC-721 transfers index the value: four topics)
    data = _hex(log.get("data", "0x"))
    if len(data) != 66:
        return None
    return TransferLog(
        tx_hash=_hex(log["transactionHash"]),
        log_index=int(log["logIndex"], 16) if isinstance(log["logIndex"], str) else int(log["logIndex"]),
        block_number=int(log["blockNumber"], 16) if isinstance(log["blockNumber"], str) else int(log["blockNumber"]),
        block_timestamp=int(block_timestamp),
        token=_hex(log["address"]),
        sender="0x" + topics[1][-40:],
        receiver="0x" + topics[2][-40:],
        value=int(data, 16),
    )


def required_units(net_amount: Decimal, decimals: int) -> int:
    """The least acceptable payment in the token's smallest units: ``ceil(net * 0.99 * 10**decimals)``."""
    if net_amount <= 0:
        raise ValueError("net amount must be positive")
    exact = (net_amount * (1 - TOLERANCE)).scaleb(decimals)
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def find_match(
    logs: Iterable[TransferLog],
    *,
    token: str,
    from_address: str,
    to_address: str,
    net_amount: Decimal,
    decimals: int,
    locked_at: float,
    used_tx_hashes: Iterable[str] = (),
) -> TransferLog | None:
    """The earliest log that pays the withdrawal by the rules above, or None."""
    token, sender, receiver = normalize_address(token), normalize_address(from_address), normalize_address(to_address)
    minimum = required_units(net_amount, decimals)
    not_before = math.floor(locked_at)
    used = {h.lower() for h in used_tx_hashes}
    candidates = [
        log
        for log in logs
        if log.token == token
        and log.sender == sender
        and log.receiver == receiver
        and log.value >= minimum
        and log.block_timestamp >= not_before
        and log.tx_hash.lower() not in used
    ]
    return min(candidates, key=lambda log: (log.block_number, log.log_index), default=None)
