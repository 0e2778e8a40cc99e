"""32-bit TCP sequence-number arithmetic (RFC 9293 section 3.4, RFC 1982 serial numbers).

On the wire a sequence number, an acknowledgment number, a SACK edge and a timestamp are
32-bit values that wrap. Comparing two of them is only meaningful when they are less than
2**31 apart; then `a` is "before" `b` when the signed 32-bit difference `b - a` is
positive. Every wire value the connection reads goes through these functions.

The connection keeps its own sequence variables *unwrapped*: Python integers that start
at the ISS (or IRS) and only grow, so `snd_una`, `rcv_nxt`, SACK scoreboards and buffer
offsets compare with plain `<`. `unwrap(wire, reference)` is the one bridge: it returns
the unwrapped number nearest to `reference` whose low 32 bits equal `wire`, i.e. it
applies serial arithmetic once, at the boundary (as QUIC does for packet numbers). This is
exact whenever the peer's value is within 2**31 of what we expect, which RFC 9293's
window rules (windows < 2**30 with scaling, RFC 7323 section 2.3) guarantee for anything
acceptable; anything farther away is rejected by the window checks anyway.
"""

from __future__ import annotations

__all__ = [
    "SEQ_MASK",
    "SEQ_MODULUS",
    "seq_add",
    "seq_diff",
    "seq_ge",
    "seq_gt",
    "seq_le",
    "seq_lt",
    "seq_max",
    "to_wire",
    "unwrap",
]

SEQ_MODULUS = 1 << 32
SEQ_MASK = SEQ_MODULUS - 1
_HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    """`a + n` modulo 2**32."""
    return (a + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """The signed distance from `b` to `a` (`a - b`) in [-2**31, 2**31)."""
    return ((a - b + _HALF) & SEQ_MASK) - _HALF


def seq_lt(a: int, b: int) -> bool:
    """`a` comes before `b` (RFC 1982 3.2)."""
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    return seq_diff(a, b) >= 0


def seq_max(a: int, b: int) -> int:
    """The later of two wire sequence numbers."""
    return a if seq_ge(a, b) else b


def to_wire(unwrapped: int) -> int:
    """The 32-bit wire value of an unwrapped sequence number."""
    return unwrapped & SEQ_MASK


def unwrap(wire: int, reference: int) -> int:
    """The unwrapped number nearest to `reference` whose low 32 bits are `wire`.

    `reference` is an unwrapped number (e.g. `rcv_nxt` or `snd_una`); the result may be
    below it (old duplicates) or above it (future data), by less than 2**31.
    """
    return reference + seq_diff(wire, reference & SEQ_MASK)
