"""A socket-like blocking API (and asyncio streams, `impl.api_streams`) over the sans-I/O
MPTCP core, on real TUN devices.

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

from __future__ import annotations

import collections
import errno
import ipaddress
import os
import socket as _socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from impl.io.mptcp_host import SimMptcpHost
from impl.io.pcap import PcapFile
from impl.io.tun_loop import TunDriver
from impl.lab.interfaces import TunInterface, open_tun_interfaces
from impl.mptcp.connection import MptcpConfig, MptcpConnection
from impl.mptcp.fullmesh import MAX_SUBFLOWS, FullMesh
from impl.mptcp.host import MptcpHost
from impl.mptcp.info import connection_info, subflow_info

__all__ = ["SHUT_RD", "SHUT_RDWR", "SHUT_WR", "MptcpSocket", "MptcpStack"]

SHUT_RD, SHUT_WR, SHUT_RDWR = _socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR
SEND_BUFFER = 4 << 20  # bytes a socket holds that the core has not taken yet
CORE_HIGH_WATER = 4 << 20  # bytes the core holds unacknowledged at the data level
CORE_PIECE = 64 << 10  # bytes handed to the core per send call
LINGER = 3.0  # seconds `MptcpStack.close` lets closed connections finish their close


def _address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(value)


def _closed_error(reason: str | None, connecting: bool) -> OSError | None:
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


class MptcpStack:
    """One MPTCP host on TUN devices with its driver thread (module docstring).

    `interfaces`: the TUN devices and our address behind each (`TunInterface`);
    `MptcpStack.create(addresses)` makes and configures them. With `own_interfaces` the
    stack closes them (removing the devices and their routes) when it closes.
    """

    def __init__(self, interfaces: Sequence[TunInterface], *,
                 config: MptcpConfig | None = None, pcap: str | os.PathLike | None = None,
                 logger: Callable[[dict], None] | None = None,
                 max_subflows: int = MAX_SUBFLOWS, own_interfaces: bool = False,
                 seed: int | None = None) -> None:
        if not interfaces:
            raise ValueError("a stack needs at least one interface")
        self.interfaces = list(interfaces)
        self.addresses = [_address(i.address) for i in self.interfaces]
        self.config = config or MptcpConfig()
        self._own_interfaces = own_interfaces
        self._pcap = PcapFile(pcap) if pcap is not None else None
        self.host = MptcpHost(self.addresses, logger=logger,
                              seed=seed if seed is not None else int.from_bytes(os.urandom(8)))
        self.mesh = FullMesh(self.addresses, max_subflows)
        # sticky: a peer's join to our initial address from its path-i address is
        # answered through the TUN it came in on (see TunDriver).
        self.driver = TunDriver(pcap=self._pcap, logger=logger, sticky=True)
        self.driver.add_endpoint(SimMptcpHost(self.host))
        self.ports = [self.driver.attach(i.tun, [i.address], label=i.label)
                      for i in self.interfaces]
        self._lock = threading.Lock()
        self.condition = threading.Condition(self._lock)
        self._calls: collections.deque[tuple[Callable[[float], Any], Future]] = (
            collections.deque())
        self._sockets: list[MptcpSocket] = []  # sockets with a connection or listener
        self._listeners: dict[int, MptcpSocket] = {}
        self._accepted_seen = 0
        self._embryonic: list[tuple[MptcpConnection, MptcpSocket]] = []
        self._stopping = False
        self._closed = False
        self.failure: BaseException | None = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self.driver.watch(self._wake_read, self._drain_wake)
        self._thread = threading.Thread(target=self._thread_main, name="mptcp-driver",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def create(cls, addresses: Sequence[str], *, netns: str | None = None,
               **options: Any) -> MptcpStack:
        """A stack on new TUN devices, one per address ("198.18.1.2/24": our address
        and the prefix the kernel routes to us; see `impl.lab.interfaces`), created in
        namespace `netns` (None: the current one)."""
        interfaces = open_tun_interfaces(addresses, netns=netns)
        try:
            return cls(interfaces, own_interfaces=True, **options)
        except BaseException:
            for interface in interfaces:
                interface.close()
            raise

    # -- application side ------------------------------------------------------------------

    def socket(self) -> MptcpSocket:
        self._check_open()
        return MptcpSocket(self)

    def counters(self) -> dict[str, int]:
        """Our MIB counters (Linux names without the MPTcpExt prefix)."""
        return self.call(lambda now: self.host.counters.snapshot())

    def port_stats(self) -> list[dict[str, Any]]:
        """Packets and bytes through each TUN (both ways)."""
        return self.call(lambda now: [{"label": port.label, **port.stats.as_dict()}
                                      for port in self.ports])

    def call(self, function: Callable[[float], Any], timeout: float | None = 10.0) -> Any:
        """Run `function(now)` on the driver thread (the only one touching the core) and
        return its result."""
        future: Future = Future()
        with self._lock:
            self._check_open()
            self._calls.append((function, future))
        self.wake()
        return future.result(timeout)

    def wake(self) -> None:
        try:
            os.write(self._wake_write, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the driver wakes anyway

    def close(self, linger: float = LINGER) -> None:
        """Let closed connections finish (at most `linger` seconds), abort the rest,
        stop the driver thread and close the TUN devices (if the stack made them)."""
        if self._closed:
            return
        deadline = time.monotonic() + linger
        with self.condition:
            for sock in list(self._sockets):
                sock._close_locked()
            while self._thread.is_alive() and any(
                    s._connection is not None and not s._connection.is_closed
                    for s in self._sockets) and time.monotonic() < deadline:
                self.condition.wait(0.05)
            self._calls.append((self._abort_all, Future()))
            self._stopping = True
        self.wake()
        self._thread.join(10.0)
        self._closed = True
        self.driver.close()
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)
        if self._pcap is not None:
            self._pcap.close()
        if self._own_interfaces:
            for interface in self.interfaces:
                interface.close()

    def __enter__(self) -> MptcpStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed or self._stopping:
            raise OSError(errno.EBADF, "the MPTCP stack is closed")
        if self.failure is not None:
            raise OSError(errno.EIO, f"the MPTCP driver failed: {self.failure!r}")

    def local_address_for(self, remote: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The source address for `remote`: ours on the interface whose prefix holds it,
        else our first address of its family."""
        remote = _address(remote)
        for interface in self.interfaces:
            if remote in interface.network:
                return _address(interface.address)
        for address in self.addresses:
            if address.version == remote.version:
                return address
        raise OSError(errno.EAFNOSUPPORT, f"no local IPv{remote.version} address")

    # -- driver side (the driver thread, with the lock held) -------------------------------

    def _thread_main(self) -> None:
        try:
            while not self._stopping:
                self.driver.run(self._round, timeout=3600.0)
        except BaseException as error:  # noqa: BLE001 - reported to every waiting socket
            self.failure = error
            with self.condition:
                self.condition.notify_all()
                for _function, future in self._calls:
                    future.set_exception(OSError(errno.EIO, f"MPTCP driver failed: {error!r}"))
                self._calls.clear()
            raise

    def _drain_wake(self) -> bool:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass
        return True

    def _round(self) -> bool:
        with self._lock:
            now = time.monotonic()
            while self._calls:
                function, future = self._calls.popleft()
                try:
                    result = function(now)
                except Exception as error:  # noqa: BLE001 - handed to the caller
                    future.set_exception(error)
                else:
                    future.set_result(result)
            self._take_accepted(now)
            for sock in list(self._sockets):
                sock._pump(now)
            self._prune()
            self.condition.notify_all()
            return self._stopping

    def _take_accepted(self, now: float) -> None:
        """New connections made by our listeners wait (embryonic) until established,
        then join their listener's accept queue (as Linux's accept queue holds only
        established connections); with no listener or a full queue they are reset."""
        accepted = self.host.accepted
        for connection in accepted[self._accepted_seen:]:
            port = connection.subflows[0].tcp.local_port
            listener = self._listeners.get(port)
            if listener is None or not listener._accepts(connection.subflows[0].local):
                connection.abort()
            else:
                self._embryonic.append((connection, listener))
        self._accepted_seen = len(accepted)
        waiting = []
        for connection, listener in self._embryonic:
            if connection.is_closed:
                continue
            if not connection.established:
                waiting.append((connection, listener))
            elif listener._listening and len(listener._accept_queue) < listener._backlog:
                listener._enqueue(MptcpSocket(self, connection=connection), now)
            else:
                connection.abort()
        self._embryonic = waiting

    def _prune(self) -> None:
        """Forget connections that are over and whose socket is closed (their subflows
        have no timers left: TIME-WAIT is done)."""
        keep = []
        for sock in self._sockets:
            connection = sock._connection
            done = connection is None or (connection.is_closed
                                          and connection.next_timer() is None)
            if sock._closed and done and not sock._listening:
                if connection is not None and connection in self.host.connections:
                    self.host.connections.remove(connection)
                    for subflow in connection.subflows:
                        if subflow.tcp is not None:
                            self.host.subflows.pop(subflow.key, None)
                continue
            keep.append(sock)
        self._sockets = keep

    def _abort_all(self, now: float) -> None:
        for sock in self._sockets:
            if sock._connection is not None and not sock._connection.is_closed:
                sock._connection.abort()
        self._listeners.clear()
        self.host.listeners.clear()


class MptcpSocket:
    """One MPTCP socket of an `MptcpStack`, shaped like `socket.socket` (blocking, with
    optional timeouts). Create it with `stack.socket()`."""

    def __init__(self, stack: MptcpStack, *, connection: MptcpConnection | None = None) -> None:
        self.stack = stack
        self._timeout: float | None = None
        self._connection = connection
        self._connecting = False
        self._established = connection is not None
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
        self.on_data: Callable[[bytes], None] | None = None  # driver thread, lock held
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
            if deadline is None:
                condition.wait(1.0)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
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
        self._accept_queue.append(sock)
        if self.on_accept is not None:
            self.on_accept(sock)

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
            error = _closed_error(connection.closed_reason, self._connecting)
            if error is not None and not self._eof:
                self._error = error
                if self.on_eof is not None:
                    self.on_eof(error)
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

    def _announce(self, connection: MptcpConnection) -> None:
        """Listener side of the full mesh: ADD_ADDR our other addresses (3.4.1)."""
        self._announced = True
        if connection.fallback:
            return
        initial = _address(connection.subflows[0].local)
        for address in self.stack.addresses:
            if address != initial and address.version == initial.version:
                connection.announce_address(address)
