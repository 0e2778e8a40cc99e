"""impl.crypto against Linux's KUnit vectors and against independent computations.

The independent computations are written out here with hashlib/hmac/struct and a plain
16-bit-word loop, deliberately not sharing code with impl.crypto or impl.wire.checksum.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impl import crypto

KEYS = st.integers(min_value=0, max_value=2**64 - 1)
NONCES = st.integers(min_value=0, max_value=2**32 - 1)


# -- Linux net/mptcp/crypto_test.c ------------------------------------------------------

KERNEL_VECTORS = [
    ("0b0b0b0b0b0b0b0b", "48692054",
     "8385e24fb4235ac37556b6b886db106284a1da671699f46db1f235ec622dcafa"),
    ("aaaaaaaaaaaaaaaa", "dddddddd",
     "2c5e219164ff1dca1c4a92318d847bb6b9d44492984e1eb71aff9022f71046e9"),
    ("0102030405060708", "cdcdcdcd",
     "e73b9ba9969969cefb04aa0d6df18ec2fcc075b6f23b4d8c4da736a5dbbc6e7d"),
]


@pytest.mark.parametrize(("key", "message", "expected"), KERNEL_VECTORS)
def test_kernel_kunit_vectors_through_join_hmac(key: str, message: str, expected: str) -> None:
    # The kernel reads the 16 key characters as Key-1 || Key-2 (two big-endian 64-bit
    # words) and the 8 message characters as two 32-bit nonces, then calls
    # mptcp_crypto_hmac_sha(key1, key2, msg, 8): exactly join_hmac's layout.
    raw_key, raw_message = key.encode(), message.encode()
    key1, key2 = struct.unpack("!QQ", raw_key)
    nonce1, nonce2 = struct.unpack("!II", raw_message)
    assert crypto.join_hmac(key1, key2, nonce1, nonce2).hex() == expected
    assert crypto.hmac_sha256(raw_key, raw_message).hex() == expected


# -- token and IDSN (RFC 8684 3.1) ------------------------------------------------------

def _independent_token_and_idsn(key: int) -> tuple[int, int]:
    digest = hashlib.sha256(struct.pack(">Q", key)).digest()
    return struct.unpack(">I", digest[:4])[0], struct.unpack(">Q", digest[24:])[0]


@pytest.mark.parametrize("key", [0, 1, 0x0102030405060708, 2**64 - 1, 0xDEADBEEFCAFEF00D])
def test_token_and_idsn_known_answers(key: int) -> None:
    token, idsn = _independent_token_and_idsn(key)
    assert crypto.token_from_key(key) == token
    assert crypto.idsn_from_key(key) == idsn


def test_token_of_key_zero_literal() -> None:
    # SHA-256 of eight zero bytes; token = its first 4 bytes, IDSN = its last 8 bytes.
    digest = "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc"
    assert hashlib.sha256(bytes(8)).hexdigest() == digest
    assert crypto.token_from_key(0) == 0xAF5570F5
    assert crypto.idsn_from_key(0) == 0xE5B2328DE0E83DFC


@given(KEYS)
def test_token_and_idsn_property(key: int) -> None:
    assert (crypto.token_from_key(key), crypto.idsn_from_key(key)) == \
        _independent_token_and_idsn(key)
    assert 0 <= crypto.token_from_key(key) < 2**32


@pytest.mark.parametrize("bad", [-1, 2**64])
def test_keys_out_of_range_are_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        crypto.token_from_key(bad)


# -- key generation ---------------------------------------------------------------------

def test_generate_key_is_64_bit_and_random() -> None:
    keys = {crypto.generate_key() for _ in range(64)}
    assert len(keys) == 64
    assert all(0 <= key < 2**64 for key in keys)


def test_generate_key_redraws_on_token_collision() -> None:
    draws = iter([5, 5, 5, 7])
    taken = {crypto.token_from_key(5)}
    key = crypto.generate_key(taken, randbits=lambda bits: next(draws))
    assert key == 7
    assert crypto.token_from_key(key) not in taken


def test_generate_key_gives_up_on_a_broken_random_source() -> None:
    with pytest.raises(RuntimeError, match="random source"):
        crypto.generate_key({crypto.token_from_key(3)}, randbits=lambda bits: 3)


@given(st.sets(KEYS, max_size=20), KEYS)
def test_generate_key_never_returns_a_taken_token(taken_keys: set[int], fresh: int) -> None:
    taken = {crypto.token_from_key(key) for key in taken_keys}
    draws = iter([*taken_keys, fresh])
    if crypto.token_from_key(fresh) in taken:
        return  # the fresh draw collides too (needs a 32-bit token collision: no case)
    key = crypto.generate_key(taken, randbits=lambda bits: next(draws))
    assert crypto.token_from_key(key) not in taken


def test_generate_nonce_is_32_bit() -> None:
    assert all(0 <= crypto.generate_nonce() < 2**32 for _ in range(32))


# -- MP_JOIN HMACs (RFC 8684 3.2) -------------------------------------------------------

def _independent_hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, "sha256").digest()


@given(KEYS, KEYS, NONCES, NONCES)
def test_join_hmacs_and_truncation(key_a: int, key_b: int, nonce_a: int, nonce_b: int) -> None:
    hmac_a = _independent_hmac(struct.pack(">QQ", key_a, key_b), struct.pack(">II", nonce_a,
                                                                             nonce_b))
    hmac_b = _independent_hmac(struct.pack(">QQ", key_b, key_a), struct.pack(">II", nonce_b,
                                                                             nonce_a))
    assert crypto.join_hmac(key_a, key_b, nonce_a, nonce_b) == hmac_a
    # SYN/ACK: leftmost 64 bits of HMAC-B; third ACK: leftmost 160 bits of HMAC-A.
    syn_ack = crypto.join_syn_ack_hmac(key_b, key_a, nonce_b, nonce_a)
    assert syn_ack == int.from_bytes(hmac_b[:8], "big") and syn_ack < 2**64
    third_ack = crypto.join_ack_hmac(key_a, key_b, nonce_a, nonce_b)
    assert third_ack == hmac_a[:20] and len(third_ack) == 20


def test_join_hmac_is_not_symmetric() -> None:
    # Swapping roles changes the HMAC: a listener that echoed HMAC-A would be caught.
    assert crypto.join_hmac(1, 2, 3, 4) != crypto.join_hmac(2, 1, 4, 3)


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_nonces_out_of_range_are_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        crypto.join_hmac(1, 2, bad, 0)


# -- ADD_ADDR HMAC (RFC 8684 3.4.1) -----------------------------------------------------

def _independent_add_addr(sender: int, receiver: int, address_id: int, packed: bytes,
                          port: int) -> int:
    digest = _independent_hmac(struct.pack(">QQ", sender, receiver),
                               bytes([address_id]) + packed + struct.pack(">H", port))
    return int.from_bytes(digest[24:], "big")  # the rightmost 64 bits


ADD_ADDR_CASES = [
    ("198.18.0.2", None, bytes([198, 18, 0, 2]), 0),
    ("198.18.0.2", 8080, bytes([198, 18, 0, 2]), 8080),
    ("fd00::2", None, bytes.fromhex("fd00" + "00" * 13 + "02"), 0),
    ("fd00::2", 443, bytes.fromhex("fd00" + "00" * 13 + "02"), 443),
]


@pytest.mark.parametrize(("address", "port", "packed", "port_in_message"), ADD_ADDR_CASES)
def test_add_addr_hmac(address: str, port: int | None, packed: bytes,
                       port_in_message: int) -> None:
    sender, receiver, address_id = 0x1122334455667788, 0x99AABBCCDDEEFF00, 3
    expected = _independent_add_addr(sender, receiver, address_id, packed, port_in_message)
    assert crypto.add_addr_hmac(sender, receiver, address_id, address, port) == expected
    assert crypto.add_addr_hmac(sender, receiver, address_id,
                                ipaddress.ip_address(address), port) == expected


def test_add_addr_hmac_absent_port_is_port_zero_and_key_order_matters() -> None:
    assert crypto.add_addr_hmac(1, 2, 1, "198.18.0.1") == crypto.add_addr_hmac(
        1, 2, 1, "198.18.0.1", 0)
    assert crypto.add_addr_hmac(1, 2, 1, "198.18.0.1") != crypto.add_addr_hmac(
        2, 1, 1, "198.18.0.1")


@given(KEYS, KEYS, st.integers(0, 255), st.ip_addresses(),
       st.none() | st.integers(0, 65535))
def test_add_addr_hmac_property(sender: int, receiver: int, address_id: int,
                                address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                                port: int | None) -> None:
    expected = _independent_add_addr(sender, receiver, address_id, address.packed, port or 0)
    assert crypto.add_addr_hmac(sender, receiver, address_id, address, port) == expected


# -- DSS checksum (RFC 8684 3.3.1) ------------------------------------------------------

def _independent_dss_checksum(dsn: int, ssn: int, length: int, payload: bytes) -> int:
    data = struct.pack(">QIHH", dsn, ssn, length, 0) + payload
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack(">H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)  # end-around carry
    return ~total & 0xFFFF


def test_dss_checksum_known_answer() -> None:
    # Worked by hand: words 0000 0000 0000 0001 | 0000 0001 | 0001 | 0000 | 6100 ("a"+pad)
    # sum = 0x6103, checksum = ~0x6103 = 0x9efc.
    assert crypto.dss_checksum(1, 1, 1, b"a") == 0x9EFC


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1),
       st.binary(max_size=300))
def test_dss_checksum_property(dsn: int, ssn: int, length: int, payload: bytes) -> None:
    expected = _independent_dss_checksum(dsn, ssn, length, payload)
    assert crypto.dss_checksum(dsn, ssn, length, payload) == expected
    assert crypto.dss_checksum_ok(dsn, ssn, length, payload, expected)
    assert not crypto.dss_checksum_ok(dsn, ssn, length, payload, expected ^ 0x0100)


def test_dss_checksum_of_mp_capable_with_data() -> None:
    # RFC 8684 3.1: the checksum on MP_CAPABLE-with-data covers DSN = IDSN + 1, relative
    # subflow sequence 1 and the data-level length, over the first payload bytes.
    key = 0x0102030405060708
    dsn = (crypto.idsn_from_key(key) + 1) % 2**64
    assert crypto.dss_checksum(dsn, 1, 1, b"!") == _independent_dss_checksum(dsn, 1, 1, b"!")
