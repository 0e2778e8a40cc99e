"""`MptcpSocket`: one socket of an `impl.api.MptcpStack`, shaped like `socket.socket`.

Its buffers and flags are shared by the application thread (the public methods, which
wait on the stack's condition) and the driver thread (`_pump`, run every driver round
with the stack's lock held): the only two places that read or write them, always under
the lock. Only the driver thread touches the `MptcpConnection` itself.
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import socket as _socket
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from impl.mptcp.connection import MptcpConnection
from impl.mptcp.info import connection_info, subflow_info
from impl.tcp.state import TcpState

if TYPE_CHECKING:
    from impl.api.stack import MptcpStack

__all__ = ["MPTCP_FULL_INFO", "MPTCP_INFO", "SHUT_RD", "SHUT_RDWR", "SHUT_WR", "SOL_MPTCP",
           "MptcpSocket", "closed_error"]

SHUT_RD, SHUT_WR, SHUT_RDWR = _socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR
_SETTLED_STATES = (TcpState.TIME_WAIT, TcpState.CLOSED)
# Linux's <linux/mptcp.h>: getsockopt(SOL_MPTCP, MPTCP_INFO / MPTCP_FULL_INFO).
SOL_MPTCP, MPTCP_INFO, MPTCP_FULL_INFO = 284, 1, 4
# Options a socket program commonly sets that mean nothing here: accepted and ignored.
_IGNORED_OPTIONS = {(_socket.SOL_SOCKET, _socket.SO_REUSEADDR),
                    (_socket.SOL_SOCKET, _socket.SO_KEEPALIVE),
                    (_socket.IPPROTO_TCP, _socket.TCP_NODELAY)}
SEND_BUFFER = 4 << 20  # bytes a socket holds that the core has not taken yet
CORE_HIGH_WATER = 4 << 20  # bytes the core holds unacknowledged at the data level
CORE_PIECE = 64 << 10  # bytes handed to the core per send call


def _address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(value)


def closed_error(reason: str | None, connecting: bool) -> OSError | None:
    """The exception a connection closed for `reason` raises (None: an orderly close)."""
    if reason in (None, "closed", "aborted"):
        return None
    if reason == "refused" or (connecting and reason == "reset"):
        return ConnectionRefusedError(errno.ECONNREFUSED, "connection refused")
    if reason in ("reset", "fastclose"):
        return ConnectionResetError(errno.ECONNRESET, f"connection reset ({reason})")
    if reason == "timeout":
        return TimeoutError(errno.ETIMEDOUT, "connection timed out")
    return ConnectionAbortedError(errno.ECONNABORTED, f"connection closed: {reason}")


class MptcpSocket:
    """One MPTCP socket of an `MptcpStack`, shaped like `socket.socket` (blocking, with
    optional timeouts). Create it with `stack.socket()`."""

    def __init__(self, stack: MptcpStack, *, connection: MptcpConnection | None = None) -> None:
        self.stack = stack
        self._timeout: float | None = None
        self._connection = connection
        self._connecting = False
        self._established = connection is not None
        self._all_acked = True  # nothing of ours waits for a DATA_ACK
        self._settled = False  # the connection is over (see wait_closed)
        self._bound: tuple[object, int] | None = None
        self._listening = False
        self._backlog = 0
        self._accept_queue: collections.deque[MptcpSocket] = collections.deque()
        self._recv_buffer = bytearray()
        self._send_buffer = bytearray()
        self._eof = False
        self._error: OSError | None = None
        self._write_shut = False
        self._read_shut = False
        self._fin_given = False
        self._closed = False
        self._announced = False
        self.bytes_sent = 0  # handed to the core
        self.bytes_received = 0
        # Hooks for asyncio (`streams.py`): called on the driver thread with the lock
        # held, so they must only hand over (call_soon_threadsafe), never block or call
        # back into the socket.
        self.on_data: Callable[[bytes], None] | None = None
        self.on_eof: Callable[[OSError | None], None] | None = None
        self.on_accept: Callable[[MptcpSocket], None] | None = None
        if connection is not None:
            stack._sockets.append(self)  # made by the driver thread, lock held

    # -- socket module shape ---------------------------------------------------------------

    def settimeout(self, timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError("Timeout value out of range")
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def bind(self, address: tuple[str, int]) -> None:
        host, port = address
        with self.stack.condition:
            self._check_usable()
            if self._bound is not None or self._connection is not None:
                raise OSError(errno.EINVAL, "already bound")
            if host not in ("", "0.0.0.0", "::"):
                if _address(host) not in self.stack.addresses:
                    raise OSError(errno.EADDRNOTAVAIL, f"{host} is not an address of this stack")
                host = _address(host)
            else:
                host = None
            if port and port in self.stack._listeners:
                raise OSError(errno.EADDRINUSE, f"port {port} is in use")
            self._bound = (host, int(port))

    def listen(self, backlog: int = 128) -> None:
        with self.stack.condition:
            self._check_usable()
            if self._connection is not None:
                raise OSError(errno.EINVAL, "a connected socket cannot listen")
            host, port = self._bound if self._bound is not None else (None, 0)
        if not port:
            port = self.stack.call(lambda now: self.stack.host.allocate_port())
        config = self.stack.config

        def start(now: float) -> None:
            if port in self.stack._listeners:
                raise OSError(errno.EADDRINUSE, f"port {port} is in use")
            self.stack.host.listen(port, config)
            self.stack._listeners[port] = self
            self.stack._sockets.append(self)

        with self.stack.condition:
            self._bound = (host, port)
            self._backlog = max(1, backlog)
        self.stack.call(start)
        with self.stack.condition:
            self._listening = True

    def accept(self) -> tuple[MptcpSocket, tuple[str, int]]:
        with self.stack.condition:
            if not self._listening:
                raise OSError(errno.EINVAL, "accept on a socket that is not listening")
            self._wait(lambda: bool(self._accept_queue) or self._closed, "accept")
            self._check_usable()
            sock = self._accept_queue.popleft()
            return sock, sock._peer()

    def connect(self, address: tuple[str, int]) -> None:
        host, port = address
        remote = _address(host)
        with self.stack.condition:
            self._check_usable()
            if self._connection is not None or self._listening:
                raise OSError(errno.EISCONN, "already connected")
            local = self._bound[0] if self._bound and self._bound[0] else (
                self.stack.local_address_for(remote))
        stack = self.stack

        def start(now: float) -> MptcpConnection:
            connection = stack.host.connect(remote, int(port), now, stack.config, local=local)
            self._connection = connection
            self._connecting = True
            stack._sockets.append(self)
            stack.mesh.apply(connection, now)
            return connection

        stack.call(start)
        with stack.condition:
            try:
                self._wait(lambda: self._established_or_failed(), "connect")
            except TimeoutError:
                stack._calls.append((lambda now: self._abort_connection(), Future()))
                stack.wake()
                raise
            self._connecting = False
            if self._error is not None:
                raise self._error

    def connect_ex(self, address: tuple[str, int]) -> int:
        try:
            self.connect(address)
        except OSError as error:
            return error.errno or errno.EIO
        return 0

    def send(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        with self.stack.condition:
            self._check_sendable()
            self._wait(lambda: len(self._send_buffer) < SEND_BUFFER or self._broken(), "send")
            self._check_sendable()
            taken = min(len(view), SEND_BUFFER - len(self._send_buffer))
            self._send_buffer += view[:taken]
        self.stack.wake()
        return taken

    def send_nowait(self, data: bytes | bytearray | memoryview) -> None:
        """Queue all of `data` whatever the buffer holds (for asyncio writers, which
        wait for room in `wait_for_room` instead)."""
        with self.stack.condition:
            self._check_sendable()
            self._send_buffer += data
        self.stack.wake()

    def wait_for_room(self) -> None:
        """Block until the send buffer is below its limit (or the socket failed)."""
        with self.stack.condition:
            self._wait(lambda: len(self._send_buffer) < SEND_BUFFER or self._broken(), "send")
            if self._error is not None:
                raise self._error

    def wait_sent(self) -> None:
        """Block until every byte given to `send` was acknowledged at the data level
        (DATA_ACK, RFC 8684 3.3.2), as Linux's SIOCOUTQ reaching 0."""
        with self.stack.condition:
            self._wait(lambda: (self._all_acked and not self._send_buffer)
                       or self._error is not None, "send")
            if self._error is not None:
                raise self._error

    def wait_closed(self) -> None:
        """Block until the connection is over: both DATA_FINs acknowledged (or a reset),
        every subflow closed or in TIME-WAIT (which only guards its 4-tuple)."""
        with self.stack.condition:
            self._wait(lambda: self._settled, "close")

    def take_stream(self, on_data: Callable[[bytes], None],
                    on_eof: Callable[[OSError | None], None]) -> None:
        """Hand received bytes to callbacks (run on the driver thread) instead of the
        receive buffer; what is buffered already, EOF or an error are passed on first."""
        with self.stack.condition:
            if self._recv_buffer:
                on_data(bytes(self._recv_buffer))
                self._recv_buffer.clear()
            if self._eof or self._error is not None:
                on_eof(None if self._eof else self._error)
            self.on_data, self.on_eof = on_data, on_eof

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            taken = self.send(view)
            view = view[taken:]

    def recv(self, bufsize: int) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        with self.stack.condition:
            if self._connection is None:
                raise OSError(errno.ENOTCONN, "not connected")
            self._wait(lambda: bool(self._recv_buffer) or self._eof or self._error is not None
                       or self._read_shut or self._closed, "recv")
            if self._closed:
                raise OSError(errno.EBADF, "socket is closed")
            if self._recv_buffer:
                data = bytes(self._recv_buffer[:bufsize])
                del self._recv_buffer[:bufsize]
                return data
            if self._error is not None and not self._eof:
                raise self._error
            return b""

    def shutdown(self, how: int) -> None:
        with self.stack.condition:
            if self._connection is None:
                raise OSError(errno.ENOTCONN, "not connected")
            if how in (SHUT_RD, SHUT_RDWR):
                self._read_shut = True
            if how in (SHUT_WR, SHUT_RDWR):
                self._write_shut = True
            if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
                raise ValueError(f"bad shutdown mode {how}")
        self.stack.wake()

    def close(self) -> None:
        """Orderly close: the queued data still goes out, then a DATA_FIN (3.3.3); the
        stack finishes the close in the background. A listener stops accepting."""
        if self.stack._closed:
            self._closed = True
            return
        with self.stack.condition:
            self._close_locked()
            self.stack.condition.notify_all()
        self.stack.wake()

    def _close_locked(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._write_shut = True
        if self._listening:
            self._listening = False
            port = self._bound[1] if self._bound else None
            stack = self.stack

            def stop(now: float) -> None:
                stack._listeners.pop(port, None)
                stack.host.listeners.pop(port, None)
                for queued in self._accept_queue:
                    queued._abort_connection()
                    queued._closed = True
                self._accept_queue.clear()

            stack._calls.append((stop, Future()))

    def abort(self) -> None:
        """Abortive close: RST with MP_FASTCLOSE on every subflow (3.5)."""
        with self.stack.condition:
            self._closed = True
            self._write_shut = True
            self.stack._calls.append((lambda now: self._abort_connection(), Future()))
        self.stack.wake()

    def getsockopt(self, level: int, option: int) -> Any:
        """`(SOL_MPTCP, MPTCP_INFO)`: `mptcp_info()`; `(SOL_MPTCP, MPTCP_FULL_INFO)`:
        `subflows()` (as dicts, not Linux's packed structs)."""
        if (level, option) == (SOL_MPTCP, MPTCP_INFO):
            return self.mptcp_info()
        if (level, option) == (SOL_MPTCP, MPTCP_FULL_INFO):
            return self.subflows()
        raise OSError(errno.ENOPROTOOPT, f"option ({level}, {option}) not supported")

    def setsockopt(self, level: int, option: int, value: object) -> None:
        """Only the harmless options programs set by habit (SO_REUSEADDR,
        SO_KEEPALIVE, TCP_NODELAY) are accepted, and ignored."""
        if (level, option) not in _IGNORED_OPTIONS:
            raise OSError(errno.ENOPROTOOPT, f"option ({level}, {option}) not supported")

    def has_room(self) -> bool:
        """True when `send` would not block."""
        with self.stack.condition:
            return len(self._send_buffer) < SEND_BUFFER

    def fileno(self) -> int:
        return -1  # no kernel socket behind it

    def getsockname(self) -> tuple[str, int]:
        with self.stack.condition:
            if self._connection is not None and self._connection.subflows:
                first = self._connection.subflows[0]
                return str(first.local), first.tcp.local_port
            if self._bound is not None:
                host, port = self._bound
                return ("0.0.0.0" if host is None else str(host)), port
            return "0.0.0.0", 0

    def getpeername(self) -> tuple[str, int]:
        with self.stack.condition:
            if self._connection is None:
                raise OSError(errno.ENOTCONN, "not connected")
            return self._peer()

    def subflows(self) -> list[dict[str, Any]]:
        """Every subflow: local/remote address and port, state, backup, payload bytes
        sent (acknowledged) and received, smoothed RTT (Linux: MPTCP_FULL_INFO)."""
        connection = self._connection
        if connection is None:
            return []
        return self.stack.call(lambda now: [info for info in map(
            subflow_info, connection.subflows) if info is not None])

    def mptcp_info(self) -> dict[str, Any]:
        """Connection-level state (fallback, checksums, Appendix D state, tokens),
        the bytes this socket moved and the stack's MIB counters (Linux: MPTCP_INFO)."""
        connection = self._connection
        if connection is None:
            raise OSError(errno.ENOTCONN, "not connected")

        def read(now: float) -> dict[str, Any]:
            return {**connection_info(connection), "bytes_sent": self.bytes_sent,
                    "bytes_acked": self.bytes_sent - self._core_unacked(),
                    "bytes_received": self.bytes_received,
                    "counters": self.stack.host.counters.nonzero()}

        return self.stack.call(read)

    def __enter__(self) -> MptcpSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = ("listening" if self._listening else "closed" if self._closed
                 else "connected" if self._connection is not None else "new")
        return f"<MptcpSocket {state} {self._bound or ''}>"

    # -- helpers (lock held) ---------------------------------------------------------------

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        """Wait on the stack's condition until `ready()`, the timeout or a driver crash."""
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        condition = self.stack.condition
        while not ready():
            if self.stack.failure is not None:
                raise OSError(errno.EIO, f"MPTCP driver failed: {self.stack.failure!r}")
            if self.stack._stopping:
                raise OSError(errno.EBADF, "the MPTCP stack is closed")
            if deadline is None:
                condition.wait(1.0)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                if self._timeout == 0:
                    raise BlockingIOError(errno.EAGAIN, f"{what} would block")
                raise TimeoutError(f"{what} timed out")
            condition.wait(left)

    def _check_usable(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "socket is closed")
        self.stack._check_open()

    def _check_sendable(self) -> None:
        self._check_usable()
        if self._connection is None:
            raise OSError(errno.ENOTCONN, "not connected")
        if self._error is not None:
            raise self._error
        if self._write_shut:
            raise BrokenPipeError(errno.EPIPE, "send after shutdown")

    def _broken(self) -> bool:
        return self._error is not None or self._closed

    def _established_or_failed(self) -> bool:
        return self._established or self._error is not None

    def _accepts(self, local: object) -> bool:
        host = self._bound[0] if self._bound else None
        return host is None or _address(local) == host

    def _peer(self) -> tuple[str, int]:
        first = self._connection.subflows[0]
        return str(first.remote), first.tcp.remote_port

    def _enqueue(self, sock: MptcpSocket, now: float) -> None:
        if self.on_accept is not None:
            self.on_accept(sock)  # an asyncio server takes it at once
        else:
            self._accept_queue.append(sock)

    # -- driver side (driver thread, lock held) --------------------------------------------

    def _core_unacked(self) -> int:
        connection = self._connection
        if connection is None or not connection.subflows:
            return 0
        if connection.fallback:
            tcp = connection.subflows[0].tcp
            return tcp.send_buffer_size if tcp is not None else 0
        return len(connection.snd_buffer)

    def _abort_connection(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            self._connection.abort()

    def _pump(self, now: float) -> None:
        """Move bytes between this socket and its connection, note EOF and errors, and
        run the path manager (module docstring)."""
        connection = self._connection
        if connection is None:
            return
        if not self._established and connection.established:
            self._established = True
        data = connection.read()
        if data and not (self._closed or self._read_shut):
            self.bytes_received += len(data)
            if self.on_data is not None:
                self.on_data(data)
            else:
                self._recv_buffer += data
        if connection.peer_closed and not self._eof:
            self._eof = True
            if self.on_eof is not None:
                self.on_eof(None)
        if connection.is_closed and self._error is None:
            error = closed_error(connection.closed_reason, self._connecting)
            if error is not None and not self._eof:
                self._error = error
                if self.on_eof is not None:
                    self.on_eof(error)
        self._settled = connection.is_closed or all(
            sf.dead or sf.tcp is None or sf.tcp.state in _SETTLED_STATES
            for sf in connection.subflows)
        if connection.is_closed:
            return
        if connection.client:
            self.stack.mesh.apply(connection, now)  # new ADD_ADDRs: more joins
        elif not self._announced and connection.remote_key is not None:
            self._announce(connection)
        while self._send_buffer and connection.fin_dsn is None:
            room = min(CORE_HIGH_WATER - self._core_unacked(), CORE_PIECE)
            if room <= 0:
                break
            piece = bytes(self._send_buffer[:room])
            del self._send_buffer[:room]
            connection.send(piece)
            self.bytes_sent += len(piece)
        if self._write_shut and not self._send_buffer and not self._fin_given:
            self._fin_given = True
            connection.close()
        self._all_acked = not self._send_buffer and self._core_unacked() == 0

    def _announce(self, connection: MptcpConnection) -> None:
        """Listener side of the full mesh: ADD_ADDR our other addresses (3.4.1)."""
        self._announced = True
        if connection.fallback:
            return
        initial = _address(connection.subflows[0].local)
        for address in self.stack.addresses:
            if address != initial and address.version == initial.version:
                connection.announce_address(address)
