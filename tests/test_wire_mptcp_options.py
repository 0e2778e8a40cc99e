"""MPTCP option codecs (RFC 8684 section 3): round trips, known answers built by hand
from the RFC's figures, and the errors malformed options must raise."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.wire import (
    AddAddr,
    DataSequenceMapping,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpTcpRst,
    MpTcpRstReason,
    RemoveAddr,
    UnknownMptcpOption,
    WireError,
    parse_mptcp_option,
)
from tests import wire_strategies as ws

KEY_A = 0x0102030405060708
KEY_B = 0x1112131415161718


# -- round trips ------------------------------------------------------------------------


@settings(max_examples=400)
@given(ws.mptcp_options)
def test_parse_of_emit_is_identity(option):
    wire = option.emit()
    assert wire[0] == 30 and wire[1] == len(wire)
    assert parse_mptcp_option(wire) == option


@settings(max_examples=200)
@given(ws.mptcp_options)
def test_emit_of_parse_is_identity_on_canonical_bytes(option):
    wire = option.emit()
    assert parse_mptcp_option(wire).emit() == wire


@settings(max_examples=100)
@given(ws.mptcp_options, st.binary(max_size=8), st.binary(max_size=8))
def test_offset_points_at_the_option_and_trailing_bytes_are_ignored(option, before, after):
    wire = before + option.emit() + after
    assert parse_mptcp_option(memoryview(wire), len(before)) == option


# -- known answers: bytes written out from the RFC 8684 figures --------------------------


KNOWN_ANSWERS = [
    # 3.1 figure 4: MP_CAPABLE on a SYN, version 1, flags A (checksum) and H (SHA-256).
    (bytes.fromhex("1e040181"), MpCapable(checksum_required=True)),
    # SYN/ACK: sender's key; flag C (no initial join) and H.
    (bytes.fromhex("1e0c0121") + KEY_B.to_bytes(8, "big"),
     MpCapable(no_initial_join=True, sender_key=KEY_B)),
    # Third ACK: both keys, H only.
    (bytes.fromhex("1e140101") + KEY_A.to_bytes(8, "big") + KEY_B.to_bytes(8, "big"),
     MpCapable(sender_key=KEY_A, receiver_key=KEY_B)),
    # ACK with data: keys + data-level length 0x0064.
    (bytes.fromhex("1e160101") + KEY_A.to_bytes(8, "big") + KEY_B.to_bytes(8, "big") + b"\x00\x64",
     MpCapable(sender_key=KEY_A, receiver_key=KEY_B, data_length=100)),
    # ... and with the DSS checksum 0xbeef (flag A set).
    (bytes.fromhex("1e180181") + KEY_A.to_bytes(8, "big") + KEY_B.to_bytes(8, "big")
     + b"\x00\x64\xbe\xef",
     MpCapable(checksum_required=True, sender_key=KEY_A, receiver_key=KEY_B, data_length=100,
               checksum=0xBEEF)),
    # A version-0 style header with reserved bits D and G set: version nibble 0, kept.
    (bytes.fromhex("1e040012"), MpCapable(version=0, hmac_sha256=False, reserved_flags=0x12)),
    # 3.2 figure 5: MP_JOIN SYN, B set, address ID 5, token, nonce.
    (bytes.fromhex("1e0c1105") + bytes.fromhex("a1b2c3d4") + bytes.fromhex("01020304"),
     MpJoinSyn(backup=True, address_id=5, receiver_token=0xA1B2C3D4, sender_nonce=0x01020304)),
    # Figure 6: SYN/ACK, B clear, ID 2, truncated HMAC, nonce.
    (bytes.fromhex("1e101002") + bytes.fromhex("0011223344556677") + bytes.fromhex("deadbeef"),
     MpJoinSynAck(backup=False, address_id=2, sender_truncated_hmac=0x0011223344556677,
                  sender_nonce=0xDEADBEEF)),
    # Figure 7: third ACK, 160-bit HMAC after 12 reserved bits.
    (bytes.fromhex("1e181000") + bytes(range(20)), MpJoinAck(sender_hmac=bytes(range(20)))),
    # 3.3 figure 9: DSS with a 4-byte DATA_ACK and a 4-byte DSN mapping (A|M = 0x05).
    (bytes.fromhex("1e122005") + struct.pack("!IIIH", 7, 1000, 1, 1400),
     Dss(data_ack=7, data_ack_is_64bit=False,
         mapping=DataSequenceMapping(1000, 1, 1400, dsn_is_64bit=False))),
    # What Linux sends: 8-byte ack and DSN (0x0f), with a checksum: length 4+8+8+4+2+2.
    (bytes.fromhex("1e1c200f") + struct.pack("!QQIHH", 2**40, 2**33, 5, 100, 0x1234),
     Dss(data_ack=2**40, mapping=DataSequenceMapping(2**33, 5, 100, checksum=0x1234))),
    # A bare DATA_FIN with a DATA_ACK (F|A|a = 0x13); 4 + 8.
    (bytes.fromhex("1e0c2013") + struct.pack("!Q", 99), Dss(data_ack=99, data_fin=True)),
    # An infinite mapping (data-level length 0), no ack: M|m = 0x0c.
    (bytes.fromhex("1e12200c") + struct.pack("!QIH", 5, 0, 0),
     Dss(mapping=DataSequenceMapping(5, 0, 0))),
    # 3.4.1 figure 12: ADD_ADDR IPv4, ID 1, no port, HMAC.
    (bytes.fromhex("1e103001c6120001") + bytes.fromhex("0102030405060708"),
     AddAddr(1, ipaddress.IPv4Address("198.18.0.1"), truncated_hmac=0x0102030405060708)),
    # IPv4 with port 8080 (0x1f90), HMAC.
    (bytes.fromhex("1e123007c6120002") + b"\x1f\x90" + bytes(8),
     AddAddr(7, ipaddress.IPv4Address("198.18.0.2"), port=8080, truncated_hmac=0)),
    # Echo (E = 0x01) of an IPv6 address with port: 4 + 16 + 2 = 22.
    (bytes.fromhex("1e163102") + ipaddress.IPv6Address("fd00::2").packed + b"\x00\x50",
     AddAddr(2, ipaddress.IPv6Address("fd00::2"), port=80, echo=True)),
    # Echo of IPv4 without port: 8.
    (bytes.fromhex("1e083103c6120003"), AddAddr(3, "198.18.0.3", echo=True)),
    # IPv6 with HMAC, no port: 28.
    (bytes.fromhex("1e1c3009") + ipaddress.IPv6Address("fd00::9").packed + bytes.fromhex("ff" * 8),
     AddAddr(9, "fd00::9", truncated_hmac=2**64 - 1)),
    # 3.4.2 figure 13: REMOVE_ADDR of IDs 1 and 2.
    (bytes.fromhex("1e05400102"), RemoveAddr((1, 2))),
    # 3.3.8 figure 11: MP_PRIO, B set.
    (bytes.fromhex("1e0351"), MpPrio(backup=True)),
    # 3.7 figure 16: MP_FAIL with a 64-bit DSN.
    (bytes.fromhex("1e0c6000") + (2**63 + 1).to_bytes(8, "big"), MpFail(dsn=2**63 + 1)),
    # 3.5 figure 14: MP_FASTCLOSE with the receiver's key.
    (bytes.fromhex("1e0c7000") + KEY_B.to_bytes(8, "big"), MpFastclose(receiver_key=KEY_B)),
    # 3.6 figure 15: MP_TCPRST, T set, reason 6 (middlebox interference).
    (bytes.fromhex("1e048106"), MpTcpRst(MpTcpRstReason.MIDDLEBOX_INTERFERENCE, transient=True)),
    # A reason code RFC 8684 does not define stays a plain int.
    (bytes.fromhex("1e048042"), MpTcpRst(0x42)),
    # MP_EXPERIMENTAL (0xf) and an unassigned subtype: kept raw, low nibble included.
    (bytes.fromhex("1e05f3aabb"), UnknownMptcpOption(15, b"\xaa\xbb", flags=3)),
    (bytes.fromhex("1e0390"), UnknownMptcpOption(9)),
]


@pytest.mark.parametrize(("wire", "option"), KNOWN_ANSWERS, ids=lambda v: type(v).__name__)
def test_known_answers(wire, option):
    assert parse_mptcp_option(wire) == option
    assert option.emit() == wire


def test_unknown_reason_kept_as_int_and_known_reason_as_enum():
    assert type(parse_mptcp_option(bytes.fromhex("1e048042")).reason) is int
    assert parse_mptcp_option(bytes.fromhex("1e048003")).reason is (
        MpTcpRstReason.ADMINISTRATIVELY_PROHIBITED
    )


def test_reserved_bits_are_ignored_on_receipt():
    # MP_PRIO with reserved bits 0x0e set, MP_TCPRST with U V W set, DSS reserved bits.
    assert parse_mptcp_option(bytes.fromhex("1e035e")) == MpPrio(backup=False)
    assert parse_mptcp_option(bytes.fromhex("1e048e01")) == MpTcpRst(1, transient=False)
    assert parse_mptcp_option(bytes.fromhex("1e04 2fe0".replace(" ", ""))) == Dss()
    # 'a' without 'A' means nothing (RFC 8684 3.3): parsed as no ack, canonical re-emit.
    option = parse_mptcp_option(bytes.fromhex("1e042002"))
    assert option == Dss() and option.emit() == bytes.fromhex("1e042000")


# -- malformed options ------------------------------------------------------------------


BAD_OPTIONS = [
    ("1e0401", "mptcp.length", 1),  # length 4 but only 3 bytes
    ("1e02", "mptcp.length", 1),  # no room for a subtype
    ("1e", "mptcp.length", 1),  # no length byte
    ("1f0401", "mptcp.kind", 0),  # not kind 30
    ("1e050101" "00", "mptcp.mp_capable.length", 1),
    ("1e0d0101" + "00" * 9, "mptcp.mp_capable.length", 1),
    ("1e0e1000" + "00" * 10, "mptcp.mp_join.length", 1),
    ("1e052001" "00", "mptcp.dss.length", 1),  # A set needs 4 ack bytes: length 8
    ("1e0a2001" + "00" * 6, "mptcp.dss.length", 1),  # checksum only exists with a mapping
    ("1e122004" + "00" * 14, "mptcp.dss.length", 1),  # M, 4-byte dsn: 14 or 16
    ("1e103101" + "00" * 12, "mptcp.add_addr.length", 1),  # echo with an HMAC-sized length
    ("1e083001" + "00" * 4, "mptcp.add_addr.length", 1),  # no echo, too short for an HMAC
    ("1e0340", "mptcp.remove_addr.length", 1),  # no address ID
    ("1e045100", "mptcp.mp_prio.length", 1),  # RFC 6824's 4-byte MP_PRIO is gone in v1
    ("1e0b6000" + "00" * 7, "mptcp.mp_fail.length", 1),
    ("1e0d7000" + "00" * 9, "mptcp.mp_fastclose.length", 1),
    ("1e058000" "00", "mptcp.mp_tcprst.length", 1),
]


@pytest.mark.parametrize(("hex_wire", "field", "offset"), BAD_OPTIONS)
def test_malformed_options_raise_wire_error_naming_field_and_offset(hex_wire, field, offset):
    with pytest.raises(WireError) as info:
        parse_mptcp_option(bytes.fromhex(hex_wire))
    assert info.value.field == field
    assert info.value.offset == offset
    assert str(info.value).startswith(f"{field} at offset {offset}: ")


def test_error_offsets_are_relative_to_the_callers_buffer():
    wire = b"\x01\x01\x01" + bytes.fromhex("1e045100")
    with pytest.raises(WireError) as info:
        parse_mptcp_option(wire, 3)
    assert (info.value.field, info.value.offset) == ("mptcp.mp_prio.length", 4)


@settings(max_examples=300)
@given(st.binary(max_size=40), st.integers(0, 40))
def test_random_bytes_only_ever_raise_wire_error(data, offset):
    try:
        parse_mptcp_option(b"\x1e" + data, min(offset, len(data)))
    except WireError:
        pass


@settings(max_examples=300)
@given(ws.mptcp_options, st.data())
def test_mutated_options_only_ever_raise_wire_error(option, data):
    wire = bytearray(option.emit())
    for _ in range(data.draw(st.integers(1, 3))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(ws.u8)
    wire = wire[: data.draw(st.integers(0, len(wire)))]
    try:
        parsed = parse_mptcp_option(wire)
    except WireError:
        return
    # Whatever parses re-emits to an option of the length it declared.
    assert len(parsed.emit()) == wire[1]


# -- construction errors ----------------------------------------------------------------


CONSTRUCTION_ERRORS = [
    (lambda: MpCapable(receiver_key=1), "mp_capable.receiver_key"),
    (lambda: MpCapable(sender_key=2**64), "mp_capable.sender_key"),
    (lambda: MpCapable(reserved_flags=0x80), "mp_capable.reserved_flags"),
    (lambda: MpCapable(version=16), "mp_capable.version"),
    (lambda: MpJoinSyn(False, 256, 0, 0), "mp_join.address_id"),
    (lambda: MpJoinSyn(1, 1, 0, 0), "mp_join.backup"),
    (lambda: MpJoinAck(b"short"), "mp_join.sender_hmac"),
    (lambda: MpJoinSynAck(False, 1, b"123", 0), "mp_join.sender_truncated_hmac"),
    (lambda: Dss(data_ack=2**32, data_ack_is_64bit=False), "dss.data_ack"),
    (lambda: DataSequenceMapping(2**32, 0, 0, dsn_is_64bit=False), "dss.dsn"),
    (lambda: DataSequenceMapping(0, 0, 2**16), "dss.data_level_length"),
    (lambda: AddAddr(1, "198.18.0.1"), "add_addr.truncated_hmac"),
    (lambda: AddAddr(1, "198.18.0.1", echo=True, truncated_hmac=1), "add_addr.truncated_hmac"),
    (lambda: AddAddr(1, "198.18.0.1", port=70000, truncated_hmac=1), "add_addr.port"),
    (lambda: AddAddr(1, "not-an-address", truncated_hmac=1), "add_addr.address"),
    (lambda: RemoveAddr(()), "remove_addr.address_ids"),
    (lambda: RemoveAddr((1, 300)), "remove_addr.address_ids"),
    (lambda: MpTcpRst(256), "mp_tcprst.reason"),
    (lambda: MpFail(-1), "mp_fail.dsn"),
    (lambda: UnknownMptcpOption(2, b""), "mptcp.subtype"),
]


@pytest.mark.parametrize(("build", "field"), CONSTRUCTION_ERRORS)
def test_invalid_values_are_refused_at_construction(build, field):
    with pytest.raises(WireError) as info:
        build()
    assert info.value.field == field
    assert info.value.offset == -1
    assert isinstance(info.value, ValueError)


def test_values_are_frozen_and_normalised():
    option = AddAddr(1, "fd00::1", truncated_hmac=bytes(range(8)))
    assert option.address == ipaddress.IPv6Address("fd00::1")
    assert option.truncated_hmac == 0x0001020304050607
    with pytest.raises(AttributeError):
        option.port = 5  # type: ignore[misc]
    assert Dss(data_ack_is_64bit=False) == Dss()
    assert RemoveAddr([3, 4]).address_ids == (3, 4)
    assert MpTcpRst(2).reason is MpTcpRstReason.LACK_OF_RESOURCES
