"""Serial-number arithmetic on 32-bit sequence numbers (RFC 1982, RFC 9293 3.4)."""

from hypothesis import given
from hypothesis import strategies as st

from impl.tcp.seqnum import (
    SEQ_MASK,
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_le,
    seq_lt,
    seq_max,
    to_wire,
    unwrap,
)

u32 = st.integers(0, SEQ_MASK)
offsets = st.integers(-(1 << 31) + 1, (1 << 31) - 1)


def test_wraparound_comparisons():
    assert seq_lt(0xFFFFFFF0, 0x10)  # 0x10 is 32 numbers after 0xFFFFFFF0
    assert seq_gt(0x10, 0xFFFFFFF0)
    assert not seq_lt(0x10, 0xFFFFFFF0)
    assert seq_le(5, 5) and seq_ge(5, 5) and not seq_lt(5, 5)
    assert seq_add(0xFFFFFFFF, 1) == 0
    assert seq_add(0xFFFFFFFF, 0x11) == 0x10
    assert seq_diff(0x10, 0xFFFFFFF0) == 0x20
    assert seq_diff(0xFFFFFFF0, 0x10) == -0x20
    assert seq_max(0xFFFFFFF0, 0x10) == 0x10


def test_half_space_is_the_limit():
    # RFC 1982 3.2: numbers exactly 2**31 apart are not comparable; we call the
    # distance -2**31 (a consistent choice), and anything closer is ordered.
    assert seq_diff(1 << 31, 0) == -(1 << 31)
    assert seq_lt(0, (1 << 31) - 1)
    assert seq_gt(0, (1 << 31) + 1)


@given(u32, offsets)
def test_diff_inverts_add(a, n):
    assert seq_diff(seq_add(a, n), a) == n
    assert seq_lt(a, seq_add(a, n)) == (n > 0)


@given(st.integers(0, 1 << 40), offsets)
def test_unwrap_recovers_nearby_numbers(reference, delta):
    target = reference + delta
    if target < 0:
        return
    assert unwrap(to_wire(target), reference) == target


def test_unwrap_across_the_wrap():
    reference = 0xFFFFFF00  # unwrapped, still in the first lap
    assert unwrap(0x00000010, reference) == 0x100000010
    assert unwrap(0xFFFFFE00, reference) == 0xFFFFFE00
    second_lap = (1 << 32) + 5
    assert unwrap(0xFFFFFFFF, second_lap) == (1 << 32) - 1
