"""The chain reader (web3.py over JSON-RPC) against a real local EVM served on loopback, with a
real ERC-20 contract compiled from brokers/chain/contracts/TestUSDC.vy."""

import json
from pathlib import Path

import pytest

pytest.importorskip("eth_tester")

from brokers.chain.devnet import ARTIFACT, Devnet  # noqa: E402
from brokers.chain.reader import ChainReader  # noqa: E402


@pytest.fixture
def devnet():
    net = Devnet().start()
    yield net
    net.stop()


def test_reader_finds_transfers_by_sender_and_receiver_over_json_rpc(devnet):
    token = devnet.deploy_token()
    broker, user, other = devnet.accounts[1:4]
    devnet.mint(token, broker, 1_000 * 10**6)
    devnet.mint(token, other, 1_000 * 10**6)
    paid = devnet.transfer(token, broker, user, 99 * 10**6)
    devnet.transfer(token, other, user, 99 * 10**6)  # same receiver, another sender
    devnet.transfer(token, broker, other, 5 * 10**6)  # same sender, another receiver

    reader = ChainReader(devnet.url, token, max_block_range=2)  # small ranges: several eth_getLogs
    latest = reader.latest_block()
    logs = reader.transfer_logs(sender=broker, receiver=user, from_block=0, to_block=latest)

    assert [(log.tx_hash, log.value) for log in logs] == [(paid.lower(), 99 * 10**6)]
    assert logs[0].block_timestamp == reader.block_timestamp(logs[0].block_number)
    assert devnet.calls.count("eth_getLogs") >= latest // 2  # really went over the wire, range by range
    assert devnet.balance_of(token, user) == 198 * 10**6


def test_first_block_at_or_after_a_time(devnet):
    start = devnet.latest_block()["timestamp"]
    for step in (10, 20, 30):
        devnet.set_next_block_time(start + step)
        devnet.mine()
    reader = ChainReader(devnet.url, "0x" + "00" * 20)
    latest = reader.latest_block()
    first = reader.first_block_at_or_after(start + 15, latest=latest)
    assert reader.block_timestamp(first) >= start + 15
    assert reader.block_timestamp(first - 1) < start + 15
    assert reader.first_block_at_or_after(start + 10_000, latest=latest) is None


def test_committed_bytecode_is_what_the_committed_source_compiles_to():
    vyper = pytest.importorskip("vyper", reason="vyper is installed apart (docs/chain-verification.md)")
    artifact = json.loads(ARTIFACT.read_text())
    source = (Path(ARTIFACT).parent / artifact["source"]).read_text()
    out = vyper.compile_code(source, output_formats=["abi", "bytecode"])
    assert out["bytecode"] == artifact["bytecode"]
    assert out["abi"] == artifact["abi"]
