"""`MptcpStack`: one MPTCP host on TUN devices and the driver thread that runs it (see
`impl.api`): the only thread that touches the core.
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from impl.api.socket import MptcpSocket
from impl.io.mptcp_host import SimMptcpHost
from impl.io.pcap import PcapFile
from impl.io.tun_loop import TunDriver
from impl.lab.interfaces import TunInterface, open_tun_interfaces
from impl.mptcp.connection import MptcpConfig, MptcpConnection
from impl.mptcp.fullmesh import MAX_SUBFLOWS, FullMesh
from impl.mptcp.host import MptcpHost

__all__ = ["MptcpStack"]

TICK = 0.1  # seconds between driver rounds when nothing else wakes it
LINGER = 3.0  # seconds `MptcpStack.close` lets closed connections finish their close


def _address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(value)


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
                    s._connection is not None and not s._settled
                    for s in self._sockets) and time.monotonic() < deadline:
                self.condition.wait(0.05)
            self._calls.append((self._abort_all, Future()))
            self._stopping = True
            self.condition.notify_all()
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
                self.driver.run(self._round, timeout=TICK)
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
        for connection in accepted:
            port = connection.subflows[0].tcp.local_port
            listener = self._listeners.get(port)
            if listener is None or not listener._accepts(connection.subflows[0].local):
                connection.abort()
            else:
                self._embryonic.append((connection, listener))
        accepted.clear()  # the host only appends; taken ones need not stay there
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
