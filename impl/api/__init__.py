"""A socket-like blocking API and asyncio streams over the sans-I/O MPTCP core, on real
TUN devices: `stack.py` (the host and its driver thread), `socket.py` (`MptcpSocket`),
`streams.py` (`open_connection`, `start_server`).

    stack = MptcpStack.create(["198.18.1.2/24", "198.18.2.2/24"])
    with stack, stack.socket() as sock:
        sock.connect(("198.18.1.1", 8080))
        sock.sendall(b"hello")
        sock.shutdown(SHUT_WR)
        reply = sock.recv(4096)

Threads: `MptcpStack` owns one `impl.mptcp.MptcpHost`, the `impl.io.tun_loop.TunDriver`
running it on the TUN devices, and one background thread that runs the driver. Only that
thread touches the core (DESIGN principle 4: the core is single-threaded and sans-I/O).
Application threads see `MptcpSocket`s, whose buffers and flags are guarded by the
stack's lock; every driver round (`_round`, the driver's `until` callback) moves bytes
between those buffers and the core, runs the calls sockets queued (connect, close, ...)
and wakes waiting threads through one condition variable. A socket call that changes
something writes one byte to a wake-up pipe the driver watches, so the driver never
sleeps through it.

Path management (RFC 8684 3.2, 3.4): a connecting socket opens MP_JOIN subflows in a full
mesh (`impl.mptcp.fullmesh`) from every local address to every address it knows of the
peer; a listening socket's connections announce the stack's other addresses (ADD_ADDR),
so a Linux client with `add_addr_accepted` joins them.

Errors are the socket module's: `ConnectionRefusedError` (RST to our SYN),
`ConnectionResetError` (RST, MP_FASTCLOSE), `TimeoutError` (a call's timeout: the
socket and stack stay usable), `BrokenPipeError` (send after shutdown).
"""

from impl.api.socket import (
    MPTCP_FULL_INFO,
    MPTCP_INFO,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SOL_MPTCP,
    MptcpSocket,
)
from impl.api.stack import MptcpStack
from impl.api.streams import MptcpServer, MptcpStreamWriter, open_connection, start_server

__all__ = ["MPTCP_FULL_INFO", "MPTCP_INFO", "SHUT_RD", "SHUT_RDWR", "SHUT_WR", "SOL_MPTCP",
           "MptcpServer", "MptcpSocket", "MptcpStack", "MptcpStreamWriter", "open_connection",
           "start_server"]
