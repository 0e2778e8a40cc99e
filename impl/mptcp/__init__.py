"""Sans-I/O MPTCP v1 endpoint (RFC 8684) riding on `impl.tcp` subflows through the
`TcpHook` interface (this package imports `impl.tcp`; never the other way round).

    connection.py  MptcpConnection: keys, data-level receive, DATA_ACK, DATA_FIN
                   (Appendix D), fallback (3.7), reinjection when a subflow dies
    input.py       what arriving options mean: keys, HMACs, DSS, signals, RST options
    output.py      options per segment, the scheduling loop, DATA_FIN, RST options
    subflow.py     Subflow: the TcpHook of one subflow and its per-subflow state
    handshake.py   MP_CAPABLE options and checks (3.1)
    join.py        MP_JOIN state and HMAC checks (3.2)
    dss.py         mappings sent and received, 32-bit widening, data-level reassembly
    datalevel.py   data-level retransmission timer, window probe, connection-level
                   receive window (3.3.4, 3.3.6)
    scheduler.py   Scheduler interface; lowest-RTT default with backup subflows
    counters.py    counters under the Linux MIB names (MPTcpExt)
    pm.py          ADD_ADDR (HMAC, resent until echoed) and REMOVE_ADDR signalling
    host.py        MptcpHost (listeners, 4-tuple demultiplexing) and TokenTable

Not built yet: an automatic path manager (the caller opens joins and announces
addresses), MP_FAIL and the infinite mapping on send, `project()` onto the spec
state.
"""

from .connection import MptcpConfig, MptcpConnection
from .counters import MptcpCounters
from .host import MptcpHost, TokenTable
from .scheduler import LowestRttScheduler, Scheduler
from .subflow import Subflow

__all__ = [
    "LowestRttScheduler",
    "MptcpConfig",
    "MptcpConnection",
    "MptcpCounters",
    "MptcpHost",
    "Scheduler",
    "Subflow",
    "TokenTable",
]
