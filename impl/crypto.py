"""MPTCP v1 cryptography: keys, tokens, IDSNs, HMACs and the DSS checksum (RFC 8684).

Everything here is pure and sans-I/O: plain integers and bytes in, plain integers and bytes
out. The only source of randomness is the `randbits` argument (default `secrets.randbits`),
so tests can drive the token-collision loop deterministically.

Byte order is network order (big-endian) throughout, as RFC 8684 and Linux
(`net/mptcp/crypto.c`, `options.c`, `subflow.c`) use it:

- a 64-bit key is hashed and used as HMAC key material as 8 big-endian bytes;
- an MP_JOIN nonce is 4 big-endian bytes;
- an ADD_ADDR port is 2 big-endian bytes.

Sections: 3.1 (keys, token, IDSN, MP_CAPABLE), 3.2 (MP_JOIN HMACs), 3.3.1 (DSS checksum,
computed in `impl.wire.checksum` and re-exported here), 3.4.1 (ADD_ADDR HMAC).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import struct
from collections.abc import Callable, Container

# The DSS checksum is an Internet checksum over a pseudo-header, so its one home is the
# codec's checksum module; it is re-exported here beside the other per-connection secrets
# and sums that the MPTCP layer computes.
from impl.wire.checksum import dss_checksum

__all__ = [
    "add_addr_hmac", "dss_checksum", "dss_checksum_ok", "generate_key", "generate_nonce",
    "hmac_sha256", "idsn_from_key", "join_ack_hmac", "join_hmac", "join_syn_ack_hmac",
    "key_bytes", "token_from_key",
]

KEY_BITS = 64
NONCE_BITS = 32
TOKEN_BITS = 32

# RFC 8684 3.2: the SYN/ACK carries the leftmost 64 bits of HMAC-B, the third ACK the
# leftmost 160 bits of HMAC-A. RFC 8684 3.4.1: ADD_ADDR carries the rightmost 64 bits.
JOIN_SYN_ACK_HMAC_BYTES = 8
JOIN_ACK_HMAC_BYTES = 20
ADD_ADDR_HMAC_BYTES = 8

# Redrawing a key whose token collides terminates with overwhelming probability; the bound
# only turns a broken random source (e.g. a constant) into an error instead of a hang.
MAX_KEY_DRAWS = 1000

_KEY_MASK = (1 << KEY_BITS) - 1
_NONCE_MASK = (1 << NONCE_BITS) - 1


def _check_key(key: int) -> None:
    if not 0 <= key <= _KEY_MASK:
        raise ValueError(f"an MPTCP key is a 64-bit unsigned integer, got {key!r}")


def _check_nonce(nonce: int) -> None:
    if not 0 <= nonce <= _NONCE_MASK:
        raise ValueError(f"an MP_JOIN nonce is a 32-bit unsigned integer, got {nonce!r}")


def key_bytes(key: int) -> bytes:
    """The 8 big-endian bytes of a 64-bit key, as hashed and as used for HMAC keys."""
    _check_key(key)
    return key.to_bytes(8, "big")


def _key_digest(key: int) -> bytes:
    # RFC 8684 3.1: token and IDSN both come from SHA-256 over the key in network order.
    return hashlib.sha256(key_bytes(key)).digest()


def token_from_key(key: int) -> int:
    """The 32-bit token: the most significant 32 bits of SHA-256(key) (RFC 8684 3.1).

    The token names the connection locally; a peer's token is what an MP_JOIN SYN carries.
    """
    return int.from_bytes(_key_digest(key)[:4], "big")


def idsn_from_key(key: int) -> int:
    """The 64-bit initial data sequence number: the least significant 64 bits of
    SHA-256(key) (RFC 8684 3.1). The first data byte has DSN = IDSN + 1."""
    return int.from_bytes(_key_digest(key)[-8:], "big")


def generate_key(
    existing_tokens: Container[int] = frozenset(),
    randbits: Callable[[int], int] = secrets.randbits,
) -> int:
    """Draw a random 64-bit key whose token is not in `existing_tokens`.

    RFC 8684 3.1: a host must not hand out a token it already uses locally, so a key whose
    token collides is thrown away and drawn again (Linux: `mptcp_token_new_request()` /
    `mptcp_token_new_connect()` retry with a fresh key).
    """
    for _ in range(MAX_KEY_DRAWS):
        key = randbits(KEY_BITS) & _KEY_MASK
        if token_from_key(key) not in existing_tokens:
            return key
    raise RuntimeError(
        f"no key with a fresh token after {MAX_KEY_DRAWS} draws: is the random source broken?"
    )


def generate_nonce(randbits: Callable[[int], int] = secrets.randbits) -> int:
    """A random 32-bit nonce for MP_JOIN (R-A on the SYN, R-B on the SYN/ACK; RFC 8684 3.2)."""
    return randbits(NONCE_BITS) & _NONCE_MASK


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104), the only HMAC algorithm MPTCP v1 defines (H flag, 3.1)."""
    return hmac.new(key, message, hashlib.sha256).digest()


def join_hmac(local_key: int, remote_key: int, local_nonce: int, remote_nonce: int) -> bytes:
    """The full 32-byte MP_JOIN HMAC computed by the side that owns `local_key`.

    RFC 8684 3.2, with A the subflow initiator and B the listener:
      HMAC-A = HMAC(Key=(Key-A || Key-B), Msg=(R-A || R-B))
      HMAC-B = HMAC(Key=(Key-B || Key-A), Msg=(R-B || R-A))
    so each side puts its own key and its own nonce first. HMAC-A is
    `join_hmac(key_a, key_b, nonce_a, nonce_b)`, HMAC-B is `join_hmac(key_b, key_a, nonce_b,
    nonce_a)`.
    """
    _check_nonce(local_nonce)
    _check_nonce(remote_nonce)
    key = key_bytes(local_key) + key_bytes(remote_key)
    message = struct.pack("!II", local_nonce, remote_nonce)
    return hmac_sha256(key, message)


def join_syn_ack_hmac(listener_key: int, initiator_key: int, listener_nonce: int,
                      initiator_nonce: int) -> int:
    """The 64-bit truncated HMAC-B that the listener puts on the MP_JOIN SYN/ACK.

    RFC 8684 3.2: "the leftmost 64 bits" of HMAC-B, as an unsigned integer (the wire type
    `MpJoinSynAck.sender_truncated_hmac`).
    """
    full = join_hmac(listener_key, initiator_key, listener_nonce, initiator_nonce)
    return int.from_bytes(full[:JOIN_SYN_ACK_HMAC_BYTES], "big")


def join_ack_hmac(initiator_key: int, listener_key: int, initiator_nonce: int,
                  listener_nonce: int) -> bytes:
    """The 160-bit truncated HMAC-A that the initiator puts on the MP_JOIN third ACK.

    RFC 8684 3.2: "the leftmost 160 bits" of HMAC-A, as 20 bytes (`MpJoinAck.sender_hmac`).
    """
    full = join_hmac(initiator_key, listener_key, initiator_nonce, listener_nonce)
    return full[:JOIN_ACK_HMAC_BYTES]


def add_addr_hmac(
    sender_key: int,
    receiver_key: int,
    address_id: int,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | str,
    port: int | None = None,
) -> int:
    """The 64-bit truncated HMAC of an ADD_ADDR option (RFC 8684 3.4.1).

    HMAC(Key=(Key-sender || Key-receiver), Msg=(Address ID || IP Address || Port)), with
    the address as 4 or 16 bytes and the port as 2 bytes, two zero bytes when the option
    carries no port (Linux `add_addr_generate_hmac()` does the same). The option carries
    the *rightmost* 64 bits, returned here as an unsigned integer
    (`AddAddr.truncated_hmac`).
    """
    if not 0 <= address_id <= 0xFF:
        raise ValueError(f"an address ID is one byte, got {address_id!r}")
    if port is not None and not 0 <= port <= 0xFFFF:
        raise ValueError(f"a port is 16 bits, got {port!r}")
    address = ipaddress.ip_address(address)
    message = bytes([address_id]) + address.packed + struct.pack("!H", port or 0)
    full = hmac_sha256(key_bytes(sender_key) + key_bytes(receiver_key), message)
    return int.from_bytes(full[-ADD_ADDR_HMAC_BYTES:], "big")


def dss_checksum_ok(dsn: int, subflow_sequence: int, data_level_length: int,
                    payload: bytes | bytearray | memoryview, checksum: int) -> bool:
    """Whether a received DSS checksum matches the mapping and payload (RFC 8684 3.3.1).

    Also for MP_CAPABLE with data (3.1), where DSN = IDSN + 1 and the relative subflow
    sequence number is 1. Comparing with the checksum we would send is equivalent to the
    RFC's "sum with the received checksum in place of the zeros gives 0".
    """
    return dss_checksum(dsn, subflow_sequence, data_level_length, payload) == checksum
