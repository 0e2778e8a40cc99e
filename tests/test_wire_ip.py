"""Checksums, IPv4/IPv6 headers and whole packets: round trips, known answers, checks
against scapy and a naive checksum loop, and malformed input raising only WireError."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP

from impl.wire import (
    IPv4Header,
    IPv6Header,
    MpCapable,
    Packet,
    TcpFlags,
    TcpHeader,
    WireError,
    build_packet,
    dss_checksum,
    internet_checksum,
    parse_ip,
    parse_packet,
    pseudo_header,
)
from tests import wire_strategies as ws


def naive_checksum(data: bytes) -> int:
    """RFC 1071 written the slow obvious way, to judge the big-integer implementation."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for index in range(0, len(data), 2):
        total += (data[index] << 8) | data[index + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# -- checksums --------------------------------------------------------------------------


def test_rfc1071_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (ones' complement).
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=33), max_size=5))
def test_checksum_of_chunks_equals_naive_checksum_of_concatenation(chunks):
    joined = b"".join(chunks)
    assert internet_checksum(*chunks) == naive_checksum(joined)
    assert internet_checksum(*(memoryview(chunk) for chunk in chunks)) == naive_checksum(joined)


def test_checksum_edge_cases():
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\x00\x00") == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0  # sum 0xffff, a "negative zero"
    assert internet_checksum(b"\x12\x34", b"\xed\xcb") == 0


def test_pseudo_headers():
    v4 = pseudo_header(ipaddress.IPv4Address("1.2.3.4"), ipaddress.IPv4Address("5.6.7.8"), 6, 40)
    assert v4 == bytes.fromhex("01020304" "05060708" "0006" "0028")
    v6 = pseudo_header(ipaddress.IPv6Address("::1"), ipaddress.IPv6Address("::2"), 6, 40)
    assert v6 == bytes(15) + b"\x01" + bytes(15) + b"\x02" + bytes.fromhex("00000028000000" "06")
    with pytest.raises(WireError):
        pseudo_header(ipaddress.IPv4Address("1.2.3.4"), ipaddress.IPv6Address("::2"), 6, 0)


def test_dss_checksum_covers_the_rfc_pseudo_header():
    # RFC 8684 3.3.1: 64-bit DSN, 32-bit subflow sequence, 16-bit length, 16-bit zero.
    payload = b"hello world"
    header = (2**40 + 3).to_bytes(8, "big") + (7).to_bytes(4, "big") + b"\x00\x0b\x00\x00"
    assert dss_checksum(2**40 + 3, 7, 11, payload) == naive_checksum(header + payload)


# -- IPv4 / IPv6 ------------------------------------------------------------------------


def test_ipv4_known_answer():
    # The textbook header 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
    wire = bytes.fromhex("450000730000400040 11b861c0a80001c0a800c7".replace(" ", ""))
    header = IPv4Header(
        src=ipaddress.IPv4Address("192.168.0.1"), dst=ipaddress.IPv4Address("192.168.0.199"),
        protocol=17, ttl=64,
    )
    assert header.emit(0x73 - 20) == wire
    parsed, payload = IPv4Header.parse(wire + bytes(0x73 - 20))
    assert parsed == header and len(payload) == 0x73 - 20


@settings(max_examples=200)
@given(ws.ipv4_headers(), st.binary(max_size=40), st.binary(max_size=6))
def test_ipv4_round_trip(header, payload, trailer):
    wire = header.emit(len(payload)) + payload
    parsed, parsed_payload = IPv4Header.parse(wire + trailer)  # trailing link padding
    assert parsed == header
    assert bytes(parsed_payload) == payload
    assert parsed.emit(len(parsed_payload)) + parsed_payload == wire
    # scapy agrees on the header checksum.
    theirs = IP(wire)
    checksum = theirs.chksum
    del theirs.chksum
    assert IP(bytes(theirs)).chksum == checksum


@settings(max_examples=200)
@given(ws.ipv6_headers(), st.binary(max_size=40), st.binary(max_size=6))
def test_ipv6_round_trip(header, payload, trailer):
    wire = header.emit(len(payload)) + payload
    parsed, parsed_payload = parse_ip(wire + trailer)
    assert parsed == header
    assert bytes(parsed_payload) == payload
    assert parsed.emit(len(parsed_payload)) + parsed_payload == wire


def _ipv4(total_length: int = 20, ihl: int = 5, version: int = 4) -> bytes:
    wire = bytearray(IPv4Header("198.18.0.1", "198.18.0.2").emit(0))
    wire[0] = version << 4 | ihl
    wire[2:4] = total_length.to_bytes(2, "big")
    wire[10:12] = b"\x00\x00"
    wire[10:12] = internet_checksum(wire).to_bytes(2, "big")
    return bytes(wire)


BAD_IP = [
    (b"", "ip.version", 0),
    (bytes(19), "ip.version", 0),
    (b"\x45" + bytes(18), "ipv4.header", 0),
    (_ipv4(ihl=4), "ipv4.ihl", 0),
    (_ipv4(ihl=6, total_length=24), "ipv4.ihl", 0),
    (_ipv4(total_length=19), "ipv4.total_length", 2),
    (_ipv4(total_length=21), "ipv4.total_length", 2),
    (_ipv4()[:10] + b"\x00\x01" + _ipv4()[12:], "ipv4.checksum", 10),
    (b"\x60" + bytes(38), "ipv6.header", 0),
    (IPv6Header("fd00::1", "fd00::2").emit(10) + bytes(9), "ipv6.payload_length", 4),
]


@pytest.mark.parametrize(("wire", "field", "offset"), BAD_IP)
def test_malformed_ip(wire, field, offset):
    with pytest.raises(WireError) as info:
        parse_ip(wire)
    assert (info.value.field, info.value.offset) == (field, offset)


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_random_ip_only_ever_raises_wire_error(data):
    try:
        parse_ip(data)
    except WireError:
        pass


# -- packets ----------------------------------------------------------------------------


@settings(max_examples=200)
@given(ws.packets())
def test_packet_round_trip(packet):
    wire = packet.emit()
    parsed = parse_packet(wire)
    assert parsed == packet
    assert parsed.emit() == wire
    assert parsed.payload.obj is wire  # a view of the caller's buffer, not a copy


def test_build_packet_picks_the_family_and_fills_both_checksums():
    tcp = TcpHeader(40000, 80, 1, 0, TcpFlags.SYN, 64240, options=(MpCapable(),))
    v4 = parse_packet(build_packet("198.18.0.1", "198.18.0.2", tcp, b"x", ttl=9))
    assert isinstance(v4.ip, IPv4Header) and v4.ip.ttl == 9 and v4.ip.dont_fragment
    assert v4.tcp == tcp and bytes(v4.payload) == b"x"
    v6 = parse_packet(build_packet("fd00::1", "fd00::2", tcp))
    assert isinstance(v6.ip, IPv6Header) and v6.tcp == tcp
    with pytest.raises(WireError):
        build_packet("198.18.0.1", "fd00::2", tcp)


def test_packet_errors_point_into_the_whole_packet():
    good = build_packet("198.18.0.1", "198.18.0.2", TcpHeader(1, 2, 3, 4, TcpFlags.ACK, 5))
    bad = bytearray(good)
    bad[20 + 12] = 0x40  # data offset 16 bytes
    with pytest.raises(WireError) as info:
        parse_packet(bad, verify_checksums=False)
    assert (info.value.field, info.value.offset) == ("tcp.data_offset", 32)
    bad = bytearray(good)
    bad[-1] ^= 1  # corrupt the TCP checksum's coverage
    with pytest.raises(WireError) as info:
        parse_packet(bad)
    assert (info.value.field, info.value.offset) == ("tcp.checksum", 36)
    parse_packet(bad, verify_checksums=False)


def test_non_tcp_and_fragments_are_refused():
    udp = IPv4Header("198.18.0.1", "198.18.0.2", protocol=17).emit(8) + bytes(8)
    with pytest.raises(WireError, match="ipv4.protocol"):
        parse_packet(udp)
    fragment = IPv4Header("198.18.0.1", "198.18.0.2", more_fragments=True).emit(20) + bytes(20)
    with pytest.raises(WireError, match="ipv4.fragment"):
        parse_packet(fragment)


@settings(max_examples=300)
@given(st.binary(max_size=100))
def test_random_packets_only_ever_raise_wire_error(data):
    try:
        parse_packet(data)
    except WireError:
        pass


@settings(max_examples=200)
@given(ws.packets(max_payload=16), st.data())
def test_mutated_packets_only_ever_raise_wire_error(packet, data):
    wire = bytearray(packet.emit())
    for _ in range(data.draw(st.integers(1, 4))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(ws.u8)
    wire = wire[: data.draw(st.integers(0, len(wire)))]
    try:
        parsed = parse_packet(wire, verify_checksums=data.draw(st.booleans()))
    except WireError:
        return
    assert isinstance(parsed, Packet)
