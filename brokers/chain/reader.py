"""The chain, read through web3.py over JSON-RPC: block times and ERC-20 Transfer logs.

Only three calls, all standard JSON-RPC: ``eth_blockNumber``, ``eth_getBlockByNumber`` and
``eth_getLogs`` (filtered by the token contract and the Transfer topic with ``from`` and ``to`` as
indexed topics, so the node does the filtering). Log queries are split into block ranges of at most
``max_block_range`` blocks, which public RPC providers require.
"""

from __future__ import annotations

from web3 import Web3

from .matcher import TRANSFER_TOPIC, TransferLog, address_topic, decode_transfer_log, normalize_address


class ChainReader:
    def __init__(self, rpc_url: str, token_address: str, *, timeout: float = 10.0, max_block_range: int = 2000):
        if not rpc_url:
            raise ValueError("CHAIN_RPC_URL is not set")
        self.token = normalize_address(token_address)
        self.max_block_range = max(1, int(max_block_range))
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self._timestamps: dict[int, int] = {}

    def latest_block(self) -> int:
        return int(self.w3.eth.block_number)

    def block_timestamp(self, number: int) -> int:
        if number not in self._timestamps:
            self._timestamps[number] = int(self.w3.eth.get_block(number)["timestamp"])
        return self._timestamps[number]

    def first_block_at_or_after(self, timestamp: int, *, latest: int) -> int | None:
        """The lowest block number ``<= latest`` whose timestamp is ``>= timestamp`` (binary search:
        block timestamps strictly increase), or None when even ``latest`` is older."""
        if self.block_timestamp(latest) < timestamp:
            return None
        lo, hi = 0, latest
        while lo < hi:
            mid = (lo + hi) // 2
            if self.block_timestamp(mid) >= timestamp:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def transfer_logs(self, *, sender: str, receiver: str, from_block: int, to_block: int) -> list[TransferLog]:
        """Every Transfer of the token from ``sender`` to ``receiver`` in ``[from_block, to_block]``."""
        topics = [TRANSFER_TOPIC, address_topic(sender), address_topic(receiver)]
        out: list[TransferLog] = []
        start = from_block
        while start <= to_block:
            end = min(to_block, start + self.max_block_range - 1)
            raw_logs = self.w3.eth.get_logs(
                {
                    "fromBlock": start,
                    "toBlock": end,
                    "address": Web3.to_checksum_address(self.token),
                    "topics": topics,
                }
            )
            for raw in raw_logs:
                if raw.get("removed"):
                    continue  # dropped by a reorganisation
                number = int(raw["blockNumber"], 16) if isinstance(raw["blockNumber"], str) else raw["blockNumber"]
                decoded = decode_transfer_log(raw, block_timestamp=self.block_timestamp(int(number)))
                if decoded is not None:
                    out.append(decoded)
            start = end + 1
        return out
