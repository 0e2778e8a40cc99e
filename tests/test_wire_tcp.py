"""TCP options and the TCP header: round trips, known answers, checksums checked against
scapy (an independent implementation), and malformed input raising only WireError."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from impl.wire import (
    Dss,
    EndOfOptionList,
    MaximumSegmentSize,
    MpCapable,
    MpPrio,
    NoOperation,
    Sack,
    SackPermitted,
    TcpFlags,
    TcpHeader,
    Timestamps,
    UnknownTcpOption,
    WindowScale,
    WireError,
    emit_tcp_options,
    parse_tcp_options,
)
from tests import wire_strategies as ws

SRC4, DST4 = ipaddress.IPv4Address("198.18.0.1"), ipaddress.IPv4Address("198.18.0.2")
SRC6, DST6 = ipaddress.IPv6Address("fd00::1"), ipaddress.IPv6Address("fd00::2")


# -- TCP options ------------------------------------------------------------------------


@settings(max_examples=300)
@given(ws.canonical_tcp_option_lists())
def test_option_lists_round_trip(options):
    wire = emit_tcp_options(options)
    assert len(wire) % 4 == 0 and len(wire) <= 40
    assert parse_tcp_options(wire) == options
    assert emit_tcp_options(parse_tcp_options(wire)) == wire


def test_known_answer_syn_options():
    # A Linux SYN: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7, then
    # MP_CAPABLE v1 with H set.
    wire = bytes.fromhex("020405b4" "0402" "080a0000000100000000" "01" "030307" "1e040101")
    options = (
        MaximumSegmentSize(1460), SackPermitted(), Timestamps(1, 0), NoOperation(),
        WindowScale(7), MpCapable(),
    )
    assert parse_tcp_options(wire) == options
    assert emit_tcp_options(options) == wire


def test_known_answer_sack_unknown_and_padding():
    wire = bytes.fromhex("0101" "050a0000000a00000014" "fe0400ff" "00000000")
    options = (
        NoOperation(), NoOperation(), Sack(((10, 20),)), UnknownTcpOption(0xFE, b"\x00\xff"),
        EndOfOptionList(),
    )
    assert parse_tcp_options(wire) == options
    assert emit_tcp_options(options) == wire


def test_emit_pads_with_eol_and_parse_stops_at_eol():
    assert emit_tcp_options((MpPrio(True),)) == bytes.fromhex("1e035100")
    # Bytes after EOL are padding and not read, even when they look like garbage.
    assert parse_tcp_options(bytes.fromhex("01 00 ff ff".replace(" ", ""))) == (
        NoOperation(), EndOfOptionList(),
    )


BAD_OPTION_AREAS = [
    ("02", "tcp.option.length", 1),  # kind without length byte
    ("0201", "tcp.option.length", 1),  # length below 2
    ("0104ff", "tcp.option.length", 2),  # NOP then a length running past the end
    ("020500000000", "tcp.option.mss.length", 1),
    ("03020000", "tcp.option.window_scale.length", 1),
    ("04030000", "tcp.option.sack_permitted.length", 1),
    ("0502", "tcp.option.sack.length", 1),  # SACK needs at least one block
    ("050c" + "00" * 10, "tcp.option.sack.length", 1),
    ("0809" + "00" * 7, "tcp.option.timestamps.length", 1),
    ("01011e0451", "tcp.option.length", 3),  # MPTCP length past the area
    ("1e0251", "mptcp.length", 1),  # an MPTCP option without a subtype byte
    ("01" * 44, "tcp.options", 0),  # the area holds 40 bytes at most
]


@pytest.mark.parametrize(("hex_wire", "field", "offset"), BAD_OPTION_AREAS)
def test_malformed_option_areas(hex_wire, field, offset):
    with pytest.raises(WireError) as info:
        parse_tcp_options(bytes.fromhex(hex_wire))
    assert (info.value.field, info.value.offset) == (field, offset)


def test_emit_refuses_more_than_40_bytes_and_non_options():
    with pytest.raises(WireError, match="at most 40"):
        emit_tcp_options((Timestamps(0, 0),) * 4 + (MaximumSegmentSize(1),))
    with pytest.raises(WireError):
        emit_tcp_options((b"\x01",))  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_random_option_areas_only_ever_raise_wire_error(data):
    try:
        parse_tcp_options(data)
    except WireError:
        pass


@settings(max_examples=300)
@given(ws.canonical_tcp_option_lists(), st.data())
def test_mutated_option_areas_only_ever_raise_wire_error(options, data):
    wire = bytearray(emit_tcp_options(options))
    if not wire:
        wire = bytearray(b"\x01")
    for _ in range(data.draw(st.integers(1, 4))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(ws.u8)
    try:
        parse_tcp_options(wire)
    except WireError:
        pass


# -- TCP header -------------------------------------------------------------------------


@settings(max_examples=200)
@given(ws.tcp_headers(), st.binary(max_size=64), st.booleans())
def test_tcp_header_round_trip_with_verified_checksum(header, payload, v6):
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    segment = header.emit(payload, src, dst)
    parsed, parsed_payload = TcpHeader.parse(segment, src, dst, verify_checksum=True)
    assert parsed == header
    assert bytes(parsed_payload) == payload
    assert parsed.emit(parsed_payload, src, dst) == segment


@settings(max_examples=100)
@given(ws.tcp_headers(), st.binary(max_size=64), st.booleans())
def test_tcp_checksum_matches_scapy(header, payload, v6):
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    segment = header.emit(payload, src, dst)
    layer = (IPv6(src=str(src), dst=str(dst)) if v6 else IP(src=str(src), dst=str(dst))) / TCP(
        segment
    )
    theirs = layer[TCP].chksum
    del layer[TCP].chksum
    rebuilt = (IPv6 if v6 else IP)(bytes(layer))
    assert rebuilt[TCP].chksum == theirs


def test_payload_is_a_view_not_a_copy():
    buffer = bytearray(TcpHeader(1, 2, 3, 4, TcpFlags.ACK, 5).emit(b"abcdef", SRC4, DST4))
    _, payload = TcpHeader.parse(buffer)
    assert isinstance(payload, memoryview) and payload.obj is buffer
    buffer[-1] = ord("z")
    assert bytes(payload) == b"abcdez"


def test_mptcp_options_helper_and_flags():
    header = TcpHeader(
        1, 2, 3, 4, TcpFlags.SYN | TcpFlags.ACK, 5,
        options=(MaximumSegmentSize(1400), MpCapable(sender_key=9), NoOperation(), Dss()),
    )
    assert header.mptcp_options() == (MpCapable(sender_key=9), Dss())
    assert header.option(Dss) == Dss()
    assert TcpHeader(1, 2, 3, 4, 0x12, 5).flags == TcpFlags.SYN | TcpFlags.ACK


def _segment(data_offset_byte: int, total: int = 20) -> bytearray:
    segment = bytearray(TcpHeader(1, 2, 3, 4, TcpFlags.ACK, 5).emit(b"", SRC4, DST4))
    segment[12] = data_offset_byte
    return segment + bytes(total - 20)


BAD_SEGMENTS = [
    (bytes(19), "tcp.header", 0),
    (_segment(0x40), "tcp.data_offset", 12),  # 16 bytes < 20
    (_segment(0x60), "tcp.data_offset", 12),  # 24 bytes > 20 available
    (_segment(0x60, 24)[:20] + b"\x02\x04\x05", "tcp.data_offset", 12),
    (_segment(0x60, 20) + b"\x02\x03\x00\x00", "tcp.option.mss.length", 21),
]


@pytest.mark.parametrize(("segment", "field", "offset"), BAD_SEGMENTS)
def test_malformed_tcp_headers(segment, field, offset):
    with pytest.raises(WireError) as info:
        TcpHeader.parse(bytes(segment))
    assert (info.value.field, info.value.offset) == (field, offset)


def test_bad_checksum_detected_only_when_asked():
    segment = bytearray(TcpHeader(1, 2, 3, 4, TcpFlags.ACK, 5).emit(b"data", SRC4, DST4))
    segment[-1] ^= 0xFF
    TcpHeader.parse(segment)  # not verified by default
    TcpHeader.parse(segment, verify_checksum=True)  # no addresses: cannot verify
    with pytest.raises(WireError) as info:
        TcpHeader.parse(segment, SRC4, DST4, verify_checksum=True)
    assert (info.value.field, info.value.offset) == ("tcp.checksum", 16)


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_random_segments_only_ever_raise_wire_error(data):
    try:
        TcpHeader.parse(data, SRC4, DST4, verify_checksum=True)
    except WireError:
        pass


@settings(max_examples=200)
@given(ws.tcp_headers(), st.data())
def test_mutated_segments_only_ever_raise_wire_error(header, data):
    segment = bytearray(header.emit(b"payload", SRC4, DST4))
    for _ in range(data.draw(st.integers(1, 4))):
        segment[data.draw(st.integers(0, len(segment) - 1))] = data.draw(ws.u8)
    segment = segment[: data.draw(st.integers(0, len(segment)))]
    try:
        TcpHeader.parse(segment, SRC4, DST4, verify_checksum=data.draw(st.booleans()))
    except WireError:
        pass


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: TcpHeader(70000, 2, 3, 4, 0, 5), "tcp.src_port"),
        (lambda: TcpHeader(1, 2, 2**32, 4, 0, 5), "tcp.seq"),
        (lambda: TcpHeader(1, 2, 3, 4, 0x100, 5), "tcp.flags"),
        (lambda: TcpHeader(1, 2, 3, 4, 0, 5, options=("mss",)), "tcp.options"),
        (lambda: MaximumSegmentSize(-1), "tcp.mss"),
        (lambda: Sack(()), "tcp.sack.blocks"),
        (lambda: UnknownTcpOption(30, b""), "tcp.option.kind"),
    ],
)
def test_invalid_tcp_values_refused(build, field):
    with pytest.raises(WireError) as info:
        build()
    assert (info.value.field, info.value.offset) == (field, -1)
