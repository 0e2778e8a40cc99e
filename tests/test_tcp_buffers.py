"""Send buffer, reassembly queue (with RFC 2018 block order) and the SACK scoreboard."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from impl.tcp.buffers import ReassemblyQueue, SendBuffer
from impl.tcp.sack import Scoreboard


def test_send_buffer_reads_across_writes_and_releases():
    buffer = SendBuffer(start=1000)
    buffer.append(b"a" * 5000)
    buffer.append(b"b" * 5000)
    buffer.append(b"cc")  # small: coalesced into... a new chunk (previous is large)
    assert len(buffer) == 10002
    assert bytes(buffer.read(1000, 3)) == b"aaa"
    assert bytes(buffer.read(5998, 4)) == b"aabb"  # straddles two writes
    inside = buffer.read(6100, 100)
    assert isinstance(inside, memoryview)  # zero copy inside one write
    buffer.release(6000)
    assert buffer.start == 6000 and len(buffer) == 5002
    assert bytes(buffer.read(10998, 4)) == b"bbcc"


def test_send_buffer_rejects_reads_outside():
    buffer = SendBuffer(start=0)
    buffer.append(b"xyz")
    for seq, length in ((-1, 1), (2, 2)):
        try:
            buffer.read(seq, length)
        except ValueError:
            continue
        raise AssertionError("read outside the buffer must fail")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=20), st.data())
def test_send_buffer_matches_concatenation(writes, data):
    buffer = SendBuffer(start=7)
    whole = b"".join(writes)
    for write in writes:
        buffer.append(write)
    released = data.draw(st.integers(0, len(whole)))
    buffer.release(7 + released)
    start = data.draw(st.integers(released, len(whole)))
    length = data.draw(st.integers(0, len(whole) - start))
    assert bytes(buffer.read(7 + start, length)) == whole[start : start + length]


def test_reassembly_merges_and_pops_when_the_hole_fills():
    queue = ReassemblyQueue()
    assert queue.insert(200, b"c" * 100) == 100
    assert queue.insert(100, b"b" * 50) == 50
    assert queue.insert(150, b"B" * 60) == 50  # overlaps 10 bytes of the run at 200
    assert queue.ranges == [(100, 300)]
    assert queue.pop_ready(50) is None
    data = queue.pop_ready(100)
    assert data == b"b" * 50 + b"B" * 50 + b"c" * 100  # held bytes win over new ones
    assert not queue and queue.bytes == 0


def test_sack_blocks_most_recent_first():
    queue = ReassemblyQueue()
    queue.insert(1000, b"x" * 10)
    queue.insert(2000, b"x" * 10)
    queue.insert(3000, b"x" * 10)
    assert queue.sack_blocks(4) == [(3000, 3010), (2000, 2010), (1000, 1010)]
    queue.insert(1010, b"y" * 10)  # grows the oldest block: it becomes the first
    assert queue.sack_blocks(2) == [(1000, 1020), (3000, 3010)]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 2**32))
def test_reassembly_of_shuffled_overlapping_pieces(base, seed):
    rng = random.Random(seed)
    stream = rng.randbytes(3000)
    pieces = []
    for _ in range(40):
        start = rng.randrange(0, 3000)
        pieces.append((start, min(3000, start + rng.randrange(1, 400))))
    pieces.append((0, 3000))  # make sure everything is covered in the end
    rng.shuffle(pieces)
    queue = ReassemblyQueue()
    rcv_nxt = base
    out = bytearray()
    for start, end in pieces:
        if base + end <= rcv_nxt:
            continue
        skip = max(0, rcv_nxt - (base + start))
        if base + start + skip == rcv_nxt:
            out += stream[start + skip : end]
            rcv_nxt = base + end
            ready = queue.pop_ready(rcv_nxt)
            if ready is not None:
                out += ready
                rcv_nxt += len(ready)
        else:
            queue.insert(base + start, stream[start:end])
    assert bytes(out) == stream
    assert queue.bytes == 0


def test_scoreboard_add_advance_and_holes():
    board = Scoreboard()
    assert board.add(300, 400) == 100
    assert board.add(100, 200) == 100
    assert board.add(150, 320) == 100  # fills 200..300: one block 100..400
    assert board.blocks == [(100, 400)]
    assert board.sacked_bytes == 300
    board.add(500, 600)
    assert board.sacked_between(0, 1000) == 400
    assert board.sacked_between(350, 550) == 100
    assert board.next_hole(0, 1000) == (0, 100)
    assert board.next_hole(150, 1000) == (400, 500)
    assert board.next_hole(600, 1000) == (600, 1000)
    assert board.next_hole(550, 600) is None
    board.advance(450)
    assert board.blocks == [(500, 600)] and board.sacked_bytes == 100
    board.advance(550)
    assert board.blocks == [(550, 600)] and board.sacked_bytes == 50


def test_is_lost_rule_of_rfc_6675():
    mss = 1000
    board = Scoreboard()
    board.add(2000, 3000)  # one segment above the hole at 1000: not lost
    assert board.lost_boundary(3, mss) is None
    board.add(3000, 4000)  # two segments: still 2*MSS, not more
    assert board.lost_boundary(3, mss) is None
    board.add(4000, 4001)  # more than (DupThresh-1)*SMSS bytes above: lost
    assert board.lost_boundary(3, mss) == 2000
    discontiguous = Scoreboard()
    for start in (2000, 2200, 2400):  # three discontiguous SACKed sequences
        discontiguous.add(start, start + 10)
    assert discontiguous.lost_boundary(3, mss) == 2000


def test_scoreboard_matches_a_set_model():
    rng = random.Random(5)
    board = Scoreboard()
    model: set[int] = set()
    for _ in range(300):
        start = rng.randrange(0, 2000)
        end = start + rng.randrange(1, 50)
        added = board.add(start, end)
        before = len(model)
        model.update(range(start, end))
        assert added == len(model) - before
        assert board.sacked_bytes == len(model)
        low = rng.randrange(0, 2000)
        high = low + rng.randrange(0, 300)
        assert board.sacked_between(low, high) == len(model & set(range(low, high)))
