"""Constants and helpers shared by the MPTCP option codecs (RFC 8684 section 3).

Every MPTCP option starts with the TCP option kind (30), the option length, and a byte
whose high nibble is the subtype (RFC 8684 section 3, figure 3). Each codec module
parses from `opt`, a `memoryview` holding exactly one option (kind byte at index 0), and
`base`, the position of that kind byte in the caller's buffer, so that `WireError`
offsets point into what the caller handed in.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from ..errors import WireError

TCPOPT_MPTCP = 30


class MptcpSubtype(IntEnum):
    """The option subtypes of RFC 8684 section 8 (IANA "MPTCP Option Subtypes")."""

    MP_CAPABLE = 0x0
    MP_JOIN = 0x1
    DSS = 0x2
    ADD_ADDR = 0x3
    REMOVE_ADDR = 0x4
    MP_PRIO = 0x5
    MP_FAIL = 0x6
    MP_FASTCLOSE = 0x7
    MP_TCPRST = 0x8
    MP_EXPERIMENTAL = 0xF


U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
U64 = struct.Struct("!Q")


def header(subtype: int, length: int, low_nibble: int = 0) -> bytes:
    """Kind, length and the subtype byte that open every MPTCP option."""
    return bytes((TCPOPT_MPTCP, length, (subtype << 4) | (low_nibble & 0x0F)))


def bad_length(name: str, opt: memoryview, base: int, allowed: str) -> WireError:
    """The error for a known subtype whose length matches none of its variants."""
    return WireError(
        f"mptcp.{name}.length", base + 1, f"{len(opt)} is not a valid length ({allowed})"
    )


def normalize_truncated_hmac(field: str, value: object) -> int:
    """A 64-bit truncated HMAC as an int; 8 raw bytes are accepted and converted.

    The wire carries the bytes of the HMAC in order, so reading them as a big-endian
    number keeps the order (RFC 8684 sections 3.2 and 3.4.1).
    """
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) != 8:
            raise WireError(field, -1, f"must be 8 bytes, got {len(raw)}")
        return int.from_bytes(raw, "big")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise WireError(field, -1, "must be a 64-bit unsigned int or 8 bytes")
    return value
