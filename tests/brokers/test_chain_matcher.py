"""The pure OTC payout matcher (brokers.chain.matcher): the seed's chain verification rules."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.chain.matcher import (
    TRANSFER_TOPIC,
    TransferLog,
    address_topic,
    decode_transfer_log,
    find_match,
    required_units,
)

TOKEN = "0x" + "aa" * 20
BROKER = "0x" + "b1" * 20
USER = "0x" + "c2" * 20
OTHER = "0x" + "d3" * 20
LOCKED_AT = 1_800_000_000.25


def _log(**over) -> TransferLog:
    fields = {
        "tx_hash": "0x" + "01" * 32,
        "log_index": 0,
        "block_number": 100,
        "block_timestamp": 1_800_000_100,
        "token": TOKEN,
        "sender": BROKER,
        "receiver": USER,
        "value": 99_000_000,
    }
    fields.update(over)
    return TransferLog(**fields)


def _match(logs, net=Decimal("99"), used=()):
    return find_match(
        logs,
        token=TOKEN,
        from_address=BROKER.upper().replace("0X", "0x"),  # checksummed or not: same account
        to_address=USER,
        net_amount=net,
        decimals=6,
        locked_at=LOCKED_AT,
        used_tx_hashes=used,
    )


def test_required_amount_is_net_minus_one_percent_rounded_up_to_the_smallest_unit():
    assert required_units(Decimal("99"), 6) == 98_010_000
    assert required_units(Decimal("100"), 6) == 99_000_000
    assert required_units(Decimal("0.000001"), 6) == 1  # 0.99 of a unit rounds up, never to zero
    with pytest.raises(ValueError):
        required_units(Decimal("0"), 6)


def test_exact_and_slightly_short_payments_match_but_more_than_one_percent_short_does_not():
    assert _match([_log(value=99_000_000)]) is not None
    assert _match([_log(value=98_010_000)]) is not None  # exactly 1 % short
    assert _match([_log(value=98_009_999)]) is None  # one unit more than 1 % short


def test_wrong_sender_receiver_or_token_never_matches():
    assert _match([_log(sender=OTHER)]) is None
    assert _match([_log(receiver=OTHER)]) is None
    assert _match([_log(token=OTHER)]) is None


def test_block_time_must_be_at_or_after_the_lock_second():
    assert _match([_log(block_timestamp=1_800_000_000)]) is not None  # the lock's own second
    assert _match([_log(block_timestamp=1_799_999_999)]) is None


def test_a_transaction_already_used_by_another_withdrawal_is_skipped():
    used = _log(tx_hash="0x" + "0a" * 32, block_number=100)
    fresh = _log(tx_hash="0x" + "0b" * 32, block_number=101)
    assert _match([used, fresh], used=[used.tx_hash.upper().replace("0X", "0x")]) == fresh


@given(st.permutations(list(range(6))))
def test_the_earliest_matching_log_wins_whatever_the_order(order):
    logs = [_log(tx_hash=f"0x{i:064x}", block_number=100 + i // 2, log_index=i % 2) for i in range(6)]
    assert _match([logs[i] for i in order]) == logs[0]


def test_decodes_a_raw_rpc_log_and_ignores_other_events():
    raw = {
        "address": TOKEN,
        "topics": [TRANSFER_TOPIC, address_topic(BROKER), address_topic(USER)],
        "data": "0x" + hex(99_000_000)[2:].rjust(64, "0"),
        "transactionHash": "0x" + "ab" * 32,
        "logIndex": "0x2",
        "blockNumber": "0x10",
    }
    log = decode_transfer_log(raw, block_timestamp=5)
    assert (log.sender, log.receiver, log.value, log.block_number, log.log_index) == (BROKER, USER, 99_000_000, 16, 2)
    assert log.amount(6) == Decimal("99")
    approval = dict(raw, topics=["0x" + "8c" * 32, *raw["topics"][1:]])
    assert decode_transfer_log(approval, block_timestamp=5) is None
    nft = dict(raw, topics=[*raw["topics"], "0x" + "00" * 32])  # ERC-721: the id is indexed too
    assert decode_transfer_log(nft, block_timestamp=5) is None
