"""Sans-I/O TCP subflow (RFC 9293): segments and an explicit `now` in; segments, timers and
events out. No sockets, clocks or threads; MPTCP attaches its options through
`hooks.TcpHook`, and this package never imports `impl.mptcp`.

    connection.py  TcpConnection: the state machine, RFC 9293 3.10.7 check by check
    output.py      building segments: options, the 40-byte budget, SACK blocks, ACKs
    sender.py      send side: RFC 6675 SACK loss recovery, RTO, persist timer
    receiver.py    receive side: acceptability, reassembly, window, delayed ACKs
    buffers.py     send buffer and out-of-order reassembly queue
    sack.py        the sender's SACK scoreboard (IsLost, pipe, holes)
    rtt.py         RFC 6298 RTT estimator and back-off
    options.py     SYN options and what both sides agreed (RFC 7323, RFC 2018)
    seqnum.py      32-bit serial arithmetic and unwrapping
    segment.py     Segment (TcpHeader + payload), the reset for stray segments
    state.py       TcpState
    events.py      Connected, DataReceived, PeerClosed, Reset, ConnectionClosed
    hooks.py       TcpHook (the MPTCP attachment point) and NullHook
    config.py      TcpConfig (Linux defaults)
"""

from .config import TcpConfig
from .connection import TcpConnection
from .events import Connected, ConnectionClosed, DataReceived, PeerClosed, Reset, TcpEvent
from .hooks import NullHook, SegmentKind, TcpHook
from .segment import Segment, reset_for_unexpected
from .state import TcpState

__all__ = [
    "Connected",
    "ConnectionClosed",
    "DataReceived",
    "NullHook",
    "PeerClosed",
    "Reset",
    "Segment",
    "SegmentKind",
    "TcpConfig",
    "TcpConnection",
    "TcpEvent",
    "TcpHook",
    "TcpState",
    "reset_for_unexpected",
]
