"""A local EVM (eth-tester on py-evm) served as JSON-RPC over HTTP on loopback.

The chain verification code reads it exactly as it reads a real node: ``Web3.HTTPProvider(url)`` and
the standard ``eth_blockNumber``, ``eth_getBlockByNumber`` and ``eth_getLogs`` calls, so the tests
exercise the production path down to the wire format. The devnet also deploys the test ERC-20
(``contracts/TestUSDC.vy``, 6 decimals, compiled to ``contracts/TestUSDC.json``) and makes transfers.

eth-tester and py-evm are test dependencies (requirements-dev.txt); they are imported only here.

    python -m brokers.chain.devnet      # serves a devnet with a deployed token until Ctrl-C
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector

ARTIFACT = Path(__file__).with_name("contracts") / "TestUSDC.json"
CHAIN_ID = 131277322940537  # eth-tester's default chain id


def _qty(value: int) -> str:
    return hex(int(value))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _wire(obj: dict[str, Any]) -> dict[str, Any]:
    """eth-tester's snake_case python values -> JSON-RPC wire format (camelCase, hex quantities)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = _camel(key)
        if key == "logs_bloom":
            out[name] = "0x" + int(value).to_bytes(256, "big").hex()
        elif isinstance(value, bool):
            out[name] = value
        elif isinstance(value, int):
            out[name] = _qty(value)
        elif isinstance(value, bytes):
            out[name] = "0x" + value.hex()
        elif isinstance(value, list | tuple):
            out[name] = [_wire(v) if isinstance(v, dict) else v for v in value]
        else:
            out[name] = value
    return out


class RpcError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class Devnet:
    """An eth-tester chain behind a JSON-RPC server; every access goes through one lock."""

    def __init__(self) -> None:
        from eth_tester import EthereumTester, PyEVMBackend

        self.tester = EthereumTester(PyEVMBackend())
        self.accounts: list[str] = list(self.tester.get_accounts())
        self.lock = threading.RLock()
        self.calls: list[str] = []  # JSON-RPC methods served, in order (tests read it)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- the server -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the devnet first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Devnet:
        devnet = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = json.loads(raw)
                if isinstance(request, list):
                    response: Any = [devnet.handle(r) for r in request]
                else:
                    response = devnet.handle(request)
                payload = json.dumps(response).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="devnet-rpc", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        rid = request.get("id")
        try:
            with self.lock:
                self.calls.append(request["method"])
                result = self.dispatch(request["method"], request.get("params") or [])
        except RpcError as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": exc.code, "message": str(exc)}}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    # --- JSON-RPC methods ---------------------------------------------------------------------------

    def _block_number(self, tag: Any) -> int:
        if isinstance(tag, int):
            return tag
        if tag in ("latest", "safe", "finalized", "pending", None):
            return int(self.tester.get_block_by_number("latest")["number"])
        if tag == "earliest":
            return 0
        return int(tag, 16)

    def dispatch(self, method: str, params: list[Any]) -> Any:
        if method == "eth_chainId":
            return _qty(CHAIN_ID)
        if method == "net_version":
            return str(CHAIN_ID)
        if method == "eth_blockNumber":
            return _qty(self._block_number("latest"))
        if method == "eth_getBlockByNumber":
            number = self._block_number(params[0])
            if number > self._block_number("latest"):
                return None
            block = dict(self.tester.get_block_by_number(number, full_transactions=False))
            return _wire(block)
        if method == "eth_getLogs":
            flt = params[0] if params else {}
            if "blockHash" in flt:
                raise RpcError(-32602, "blockHash filters are not supported by the devnet")
            logs = self.tester.get_logs(
                from_block=self._block_number(flt.get("fromBlock", "latest")),
                to_block=self._block_number(flt.get("toBlock", "latest")),
                address=flt.get("address"),
                topics=flt.get("topics"),
            )
            return [dict(_wire(dict(log)), removed=False) for log in logs]
        if method == "evm_mine":
            self.tester.mine_blocks(int(params[0]) if params else 1)
            return "0x0"
        raise RpcError(-32601, f"method not found: {method}")

    # --- helpers for tests and local use -----------------------------------------------------------

    def mine(self, blocks: int = 1) -> None:
        with self.lock:
            self.tester.mine_blocks(blocks)

    def set_next_block_time(self, timestamp: int) -> None:
        """Blocks mined from now on have a timestamp of at least ``timestamp`` (the chain's clock
        moves forward only: a time already passed leaves it as it is)."""
        with self.lock:
            if int(timestamp) > int(self.tester.get_block_by_number("pending")["timestamp"]):
                self.tester.time_travel(int(timestamp))

    def latest_block(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.tester.get_block_by_number("latest"))

    def _transact(self, *, sender: str, to: str | None, data: bytes) -> str:
        tx: dict[str, Any] = {"from": sender, "gas": 1_000_000, "data": "0x" + data.hex()}
        if to is not None:
            tx["to"] = to
        with self.lock:
            tx_hash = self.tester.send_transaction(tx)
            receipt = self.tester.get_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx_hash} reverted")
        return tx_hash

    def deploy_token(self, *, deployer: str | None = None) -> str:
        """Deploy the test ERC-20; returns its address. The deployer is its minter."""
        artifact = json.loads(ARTIFACT.read_text())
        deployer = deployer or self.accounts[0]
        tx_hash = self._transact(sender=deployer, to=None, data=bytes.fromhex(artifact["bytecode"].removeprefix("0x")))
        with self.lock:
            return self.tester.get_transaction_receipt(tx_hash)["contract_address"]

    @staticmethod
    def _call(signature: str, types: list[str], args: list[Any]) -> bytes:
        return function_signature_to_4byte_selector(signature) + abi_encode(types, args)

    def mint(self, token: str, receiver: str, units: int, *, minter: str | None = None) -> str:
        data = self._call("mint(address,uint256)", ["address", "uint256"], [receiver, units])
        return self._transact(sender=minter or self.accounts[0], to=token, data=data)

    def transfer(self, token: str, sender: str, receiver: str, units: int) -> str:
        """``sender`` (an unlocked devnet account) sends ``units`` of the token; returns the tx hash."""
        data = self._call("transfer(address,uint256)", ["address", "uint256"], [receiver, units])
        return self._transact(sender=sender, to=token, data=data)

    def balance_of(self, token: str, owner: str) -> int:
        data = self._call("balanceOf(address)", ["address"], [owner])
        with self.lock:
            raw = self.tester.call({"from": self.accounts[0], "to": token, "data": "0x" + data.hex()})
        return int(raw.hex() if isinstance(raw, bytes) else raw, 16)


def main() -> None:  # pragma: no cover - a developer's tool
    devnet = Devnet().start()
    token = devnet.deploy_token()
    print(f"CHAIN_RPC_URL={devnet.url}\nCHAIN_USDC_ADDRESS={token}\naccounts: {', '.join(devnet.accounts[:4])}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        devnet.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
