"""Unit tests of the data-sequence bookkeeping (RFC 8684 3.3) and the scheduler (3.3.8)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impl.mptcp.counters import MptcpCounters
from impl.mptcp.dss import (
    ChecksumFailure,
    DataReassembly,
    Mapping,
    MappingConflict,
    MappingReceiver,
    SendRecords,
    mapping_checksum,
    widen,
)
from impl.mptcp.scheduler import LowestRttScheduler


@given(st.integers(0, (1 << 64) - 1), st.integers(-(1 << 31) + 1, (1 << 31) - 1))
def test_widen_recovers_values_near_the_reference(reference, delta):
    value = reference + delta
    assert widen(value & 0xFFFFFFFF, 32, reference) == value
    assert widen(value % (1 << 64), 64, reference) == value


def test_widen_crosses_the_32_bit_boundary_both_ways():
    assert widen(5, 32, (1 << 32) - 10) == (1 << 32) + 5
    assert widen(0xFFFFFFF0, 32, (1 << 32) + 3) == 0xFFFFFFF0


def test_identical_repeat_is_accepted_and_a_contradiction_raises():
    receiver = MappingReceiver(checksums=False)
    mapping = Mapping(ssn=1, dsn=1000, length=3000)
    assert receiver.add(mapping) is True
    assert receiver.add(mapping) is False  # TSO copies: legal (3.3.1)
    with pytest.raises(MappingConflict):
        receiver.add(Mapping(ssn=1001, dsn=3000, length=500))  # overlaps, other offset
    with pytest.raises(MappingConflict):
        receiver.add(Mapping(ssn=1, dsn=1000, length=2000))  # same start, other length
    assert receiver.add(Mapping(ssn=3001, dsn=9000, length=10)) is True  # adjacent


def test_bytes_wait_for_their_mapping_and_straddle_mappings():
    receiver = MappingReceiver(checksums=False)
    receiver.add(Mapping(ssn=1, dsn=100, length=4))
    receiver.feed(b"abcdefgh", 1)  # a segment running past its mapping
    assert receiver.drain() == [(100, b"abcd")]
    assert receiver.drain() == []  # "efgh" waits
    receiver.add(Mapping(ssn=5, dsn=500, length=4))
    assert receiver.drain() == [(500, b"efgh")]
    assert receiver.add(Mapping(ssn=1, dsn=100, length=4)) is False  # old repeat
    with pytest.raises(ValueError):
        receiver.feed(b"x", 20)  # TCP hands bytes in order only


def test_checksum_is_checked_over_the_whole_mapping():
    good = b"0123456789"
    checksum = mapping_checksum(1 << 63, 1, len(good), good)
    receiver = MappingReceiver(checksums=True)
    receiver.add(Mapping(1, 1 << 63, len(good), checksum))
    receiver.feed(good[:4], 1)
    assert receiver.drain() == []  # not all of the mapping yet
    receiver.feed(good[4:], 5)
    assert receiver.drain() == [(1 << 63, good)]
    bad = MappingReceiver(checksums=True)
    bad.add(Mapping(1, 7, len(good), checksum))  # DSN differs from the summed one
    bad.feed(good, 1)
    with pytest.raises(ChecksumFailure):
        bad.drain()


def test_infinite_mapping_maps_the_rest_of_the_subflow():
    receiver = MappingReceiver(checksums=False)
    receiver.add(Mapping(1, 50, 2))
    receiver.feed(b"ab", 1)
    assert receiver.drain() == [(50, b"ab")]
    receiver.infinite_dsn, receiver.infinite_ssn = 52, 3
    receiver.feed(b"cdef", 3)
    assert receiver.drain() == [(52, b"cdef")]


def test_reassembly_orders_by_dsn_drops_duplicates_and_consumes_data_fin():
    reassembly = DataReassembly(rcv_nxt=1000)
    assert reassembly.receive(1005, b"fghij") == []
    assert reassembly.receive(1000, b"abc") == [b"abc"]
    assert reassembly.receive(1003, b"de") == [b"de", b"fghij"]
    assert reassembly.receive(1000, b"abcde") == []
    assert reassembly.duplicate_bytes == 5
    reassembly.receive_fin(1012)
    assert not reassembly.fin_received  # byte 1010..1011 missing
    assert reassembly.receive(1010, b"kl") == [b"kl"]
    assert reassembly.fin_received and reassembly.rcv_nxt == 1013  # DATA_FIN took a DSN
    assert reassembly.receive(1013, b"zz") == []  # nothing after the DATA_FIN


def test_send_records_find_and_reinjection_ranges():
    records = SendRecords()
    records.add(Mapping(1, 100, 50))
    records.add(Mapping(51, 400, 50))
    assert records.find(1).dsn == 100 and records.find(50).dsn == 100
    assert records.find(51).dsn == 400 and records.find(101) is None
    assert records.unacknowledged(120) == [(120, 150), (400, 450)]
    records.forget_acked(150, subflow_una=20)
    assert len(records.records) == 2  # the subflow may still retransmit [20, 51)
    records.forget_acked(150, subflow_una=51)
    assert [r.dsn for r in records.records] == [400]


@dataclass
class FakeSubflow:
    name: str
    smoothed_rtt: float
    backup: bool = False


def test_scheduler_prefers_lowest_rtt_and_keeps_backups_for_emergencies():
    scheduler = LowestRttScheduler()
    fast, slow = FakeSubflow("fast", 0.01), FakeSubflow("slow", 0.05)
    backup = FakeSubflow("backup", 0.001, backup=True)
    assert scheduler.choose([slow, fast, backup], True) is fast
    assert scheduler.choose([slow, backup], True) is slow
    assert scheduler.choose([backup], True) is None  # a regular one is only full
    assert scheduler.choose([backup], False) is backup
    assert scheduler.choose([], False) is None


def test_counters_use_linux_names_and_refuse_typos():
    counters = MptcpCounters()
    counters.inc("MPJoinAckHMacFailure")
    assert counters["MPJoinAckHMacFailure"] == 1
    assert counters.nonzero() == {"MPJoinAckHMacFailure": 1}
    with pytest.raises(KeyError):
        counters.inc("MPJoinAckHmacFailure")
