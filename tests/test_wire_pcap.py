"""impl.io.pcap: raw-IP pcaps written and read back, captures with link headers, and a
clear PcapError for every kind of broken file."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import ARP, Ether
from scapy.utils import PcapWriter

from impl.io.pcap import PcapError, PcapFile, read_pcap
from impl.wire import TcpFlags, TcpHeader, build_packet, parse_packet

PACKET_V4 = build_packet("198.18.0.1", "198.18.0.2", TcpHeader(1, 2, 3, 4, TcpFlags.ACK, 5), b"hi")
PACKET_V6 = build_packet("fd00::1", "fd00::2", TcpHeader(1, 2, 3, 4, TcpFlags.SYN, 5))


def test_write_then_read(tmp_path):
    path = tmp_path / "run.pcap"
    with PcapFile(path) as pcap:
        pcap.write(PACKET_V4, 1_700_000_000.25)
        pcap.write(memoryview(PACKET_V6), 1_700_000_001.999_999_9)  # rounds up a second
    assert read_pcap(path) == [(1_700_000_000.25, PACKET_V4), (1_700_000_002.0, PACKET_V6)]
    header = path.read_bytes()[:24]
    assert struct.unpack("<IHHiIII", header)[6] == 101  # LINKTYPE_RAW


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=200),
                          st.integers(0, 2**31 - 1), st.integers(0, 999_999)), max_size=5))
def test_any_bytes_and_microsecond_timestamps_round_trip(tmp_path, records):
    path = tmp_path / "any.pcap"
    with PcapFile(path) as pcap:
        for data, seconds, micros in records:
            pcap.write(data, seconds + micros / 1e6)
    read = read_pcap(path)
    assert [data for _, data in read] == [data for data, _, _ in records]
    for (stamp, _), (_, seconds, micros) in zip(read, records, strict=True):
        assert round(stamp * 1e6) == seconds * 1_000_000 + micros


def test_empty_capture_is_valid(tmp_path):
    path = tmp_path / "empty.pcap"
    with PcapFile(path):
        pass
    assert read_pcap(path) == []


def test_ethernet_capture_is_stripped_to_ip(tmp_path):
    # Written by scapy directly, as tcpdump on a veth would: Ethernet frames, one ARP.
    path = tmp_path / "veth.pcap"
    writer = PcapWriter(str(path), linktype=1)
    writer.write(Ether(type=0x0800) / PACKET_V4)
    writer.write(Ether() / ARP())
    writer.write(Ether(type=0x86DD) / PACKET_V6)
    writer.close()
    packets = [data for _, data in read_pcap(path)]
    assert packets == [PACKET_V4, PACKET_V6]
    assert bytes(parse_packet(packets[0]).payload) == b"hi"


def _valid_file(tmp_path) -> bytes:
    path = tmp_path / "ok.pcap"
    with PcapFile(path) as pcap:
        pcap.write(PACKET_V4, 1.0)
        pcap.write(PACKET_V6, 2.0)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (-1, "record 1 is truncated"),
        (-len(PACKET_V6) - 10, "stray bytes"),  # cut inside a record header
        (30, "stray bytes"),
        (10, "not a readable pcap"),
        (0, "not a readable pcap"),
    ],
)
def test_broken_captures_raise_pcap_error(tmp_path, cut, message):
    data = _valid_file(tmp_path)
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(data[:cut] if cut else b"")
    with pytest.raises(PcapError, match=message) as info:
        read_pcap(broken)
    assert str(broken) in str(info.value)


def test_not_a_capture_and_missing_file(tmp_path):
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture file at all")
    with pytest.raises(PcapError, match="not a readable pcap"):
        read_pcap(garbage)
    with pytest.raises(PcapError, match="No such file"):
        read_pcap(tmp_path / "missing.pcap")
