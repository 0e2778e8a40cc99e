"""A Linux kernel socket (MPTCP or plain TCP) opened inside a lab namespace and driven,
non-blocking, from the TUN driver's loop in this very process.

Scenario tests (`tests/test_mptcp_kernel_scenarios.py`) script the kernel side step by
step: send some bytes, read some, `shutdown(SHUT_WR)`, close with unread data, close
with SO_LINGER {1, 0}, or change path-manager endpoints while the connection lives. A
child process (`impl.lab.traffic`) suits bulk transfers; for small scripted exchanges
one process is simpler and deterministic: the socket is created with the thread inside
the namespace (a socket keeps the namespace it was born in) and then used from anywhere.

`KernelSocket.pump()` is called once per driver round: it accepts a pending connection,
reads what arrived (hashing it), writes what is queued, and turns errors into
`error` ("reset", ...) instead of exceptions, so a test can assert on them.
"""

from __future__ import annotations

import errno
import hashlib
import socket
import struct

from impl.lab.netns import NetworkNamespace

__all__ = ["IPPROTO_MPTCP", "KernelSocket"]

IPPROTO_MPTCP = 262
_RECV = 65536


class KernelSocket:
    """One kernel stream socket in a lab namespace (listening or connecting)."""

    def __init__(self, namespace: NetworkNamespace, *, mptcp: bool = True,
                 ipv6: bool = False) -> None:
        self.namespace = namespace
        self.proto = IPPROTO_MPTCP if mptcp else socket.IPPROTO_TCP
        self.family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.listener: socket.socket | None = None
        self.sock: socket.socket | None = None
        self.received = bytearray()
        self._digest = hashlib.sha256()
        self._sent_digest = hashlib.sha256()
        self._outgoing = bytearray()
        self.sent = 0
        self.eof = False  # the peer's (DATA_)FIN: recv returned b""
        self.error: str | None = None  # "reset" (ECONNRESET), "refused", or an errno name
        self.read_paused = False  # leave arriving bytes unread (to close with unread data)
        self._connecting = False

    # -- opening ---------------------------------------------------------------------------

    def _new_socket(self) -> socket.socket:
        with self.namespace.entered():
            return socket.socket(self.family, socket.SOCK_STREAM, self.proto)

    def listen(self, address: str, port: int) -> None:
        """Listen on `address` (the wildcard for joins to announced addresses: Linux
        takes an MP_JOIN only where a listener covers the address, RFC 8684 3.2). The
        listener stays open, so joins keep finding the connection."""
        listener = self._new_socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(4)
        listener.setblocking(False)
        self.listener = listener

    def connect(self, address: str, port: int, bind: str | None = None) -> None:
        sock = self._new_socket()
        if bind is not None:
            sock.bind((bind, 0))
        sock.setblocking(False)
        code = sock.connect_ex((address, port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, f"connect to {address}:{port}: {errno.errorcode.get(code)}")
        self.sock = sock
        self._connecting = True

    @property
    def connected(self) -> bool:
        return self.sock is not None and not self._connecting

    # -- the application's calls -----------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._outgoing += data
        self._sent_digest.update(data)

    def shutdown_write(self) -> None:
        """FIN (for MPTCP: DATA_FIN) once the queued bytes are out."""
        self._shutdown_due = True

    def close(self) -> None:
        """close(): graceful, or MP_FASTCLOSE when bytes are left unread (Linux
        `mptcp_close`: unread data or SO_LINGER 0 make it an abortive close)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def abort(self) -> None:
        """SO_LINGER {on, 0 s} then close(): Linux resets (for MPTCP: MP_FASTCLOSE)."""
        if self.sock is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close()

    def stop(self) -> None:
        """Close everything (test teardown)."""
        self.close()
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    # -- the loop's call -------------------------------------------------------------------

    _shutdown_due = False
    _shutdown_done = False

    def pump(self) -> None:
        if self.sock is None and self.listener is not None and not self.eof:
            try:
                self.sock, _ = self.listener.accept()
                self.sock.setblocking(False)
            except BlockingIOError:
                return
        sock = self.sock
        if sock is None or self.error is not None:
            return
        if self._connecting:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._fail(code)
                return
            try:
                sock.getpeername()
            except OSError:
                return  # still in SYN-SENT
            self._connecting = False
        try:
            while self._outgoing:
                count = sock.send(self._outgoing)
                del self._outgoing[:count]
                self.sent += count
            if self._shutdown_due and not self._outgoing and not self._shutdown_done:
                sock.shutdown(socket.SHUT_WR)
                self._shutdown_done = True
            while not self.eof and not self.read_paused:
                chunk = sock.recv(_RECV)
                if not chunk:
                    self.eof = True
                    break
                self.received += chunk
                self._digest.update(chunk)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as error:
            self._fail(error.errno or 0)

    def _fail(self, code: int) -> None:
        # Only ECONNRESET is "reset", so a test asserting it knows what the kernel said.
        self.error = {errno.ECONNRESET: "reset", errno.ECONNREFUSED: "refused"}.get(
            code, errno.errorcode.get(code, str(code)))

    @property
    def received_sha256(self) -> str:
        return self._digest.hexdigest()

    @property
    def sent_sha256(self) -> str:
        return self._sent_digest.hexdigest()

    def fileno(self) -> int | None:
        return self.sock.fileno() if self.sock is not None else None
