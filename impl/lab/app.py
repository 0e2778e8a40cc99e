"""The application on our endpoint in a lab transfer: a source or a sink on one
`TcpConnection`, driven from the driver's `until()` callback once per loop round.

It is the userspace twin of `impl.lab.traffic`'s kernel-side child and reports in the
same shape (`bytes`, `sha256`, `eof`, `aborted`, `error`, `started`, `finished`), so a
run compares either end with the other field by field.

- source: writes `PayloadStream(size, seed)` as the send buffer drains (at most
  `high_water` bytes unacknowledged, like a socket's SO_SNDBUF, so 64 MiB never sit in
  memory at once), then closes (FIN after the data, RFC 9293 3.10.4); it is finished
  when everything it wrote is acknowledged.
- sink: hashes every in-order byte (`DataReceived`) and closes when the peer's FIN
  arrives (`PeerClosed`); it is finished at that moment.
- `abort_after=N`: abort (RST, RFC 9293 3.10.5) once N bytes were acknowledged (source)
  or received (sink), instead of closing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from impl.lab.traffic import PayloadStream
from impl.tcp.connection import TcpConnection
from impl.tcp.events import Connected, ConnectionClosed, DataReceived, PeerClosed, Reset
from impl.tcp.state import TcpState

__all__ = ["OurApplication"]

HIGH_WATER = 4 << 20
# Both FINs exchanged: TIME-WAIT is only the 2*MSL guard against old duplicates
# (RFC 9293 3.10.7.4), the transfer is over.
_SETTLED_STATES = (TcpState.CLOSED, TcpState.TIME_WAIT)


class OurApplication:
    def __init__(self, role: str, size: int, *, seed: int = 0, abort_after: int | None = None,
                 high_water: int = HIGH_WATER) -> None:
        if role not in ("source", "sink"):
            raise ValueError(f"role is source or sink, not {role!r}")
        self.role = role
        self.size = size
        self.abort_after = abort_after
        self.high_water = high_water
        self.connection: TcpConnection | None = None
        self._pieces: Iterator[bytes] | None = (
            iter(PayloadStream(size, seed)) if role == "source" else None)
        self._digest = hashlib.sha256()
        self.written = 0
        self.received = 0
        self.eof = False  # the peer's FIN arrived after all its data
        self.aborted = False
        self.error: str | None = None  # "reset", "refused", "timeout"
        self.close_reason: str | None = None
        self.started: float | None = None
        self.established: float | None = None
        self.finished: float | None = None
        self.peer_done_at: float | None = None  # set by the runner
        self._closed_by_us = False

    def attach(self, connection: TcpConnection, now: float) -> None:
        self.connection = connection
        self.started = now

    @property
    def bytes(self) -> int:
        return self.written if self.role == "source" else self.received

    @property
    def settled(self) -> bool:
        """Nothing more will happen on our side: closed, reset, aborted or TIME-WAIT."""
        return self.connection is not None and self.connection.state in _SETTLED_STATES

    def step(self, now: float) -> None:
        connection = self.connection
        if connection is None:
            return
        for event in connection.events():
            if isinstance(event, DataReceived):
                self._digest.update(event.data)
                self.received += len(event.data)
                if (self.role == "sink" and self.abort_after is not None
                        and self.received >= self.abort_after and not self.aborted):
                    self._abort(now)
            elif isinstance(event, Connected):
                self.established = now
            elif isinstance(event, PeerClosed):
                self.eof = True
                if self.role == "sink":
                    self.finished = now
                    if not self.aborted:
                        connection.close()
            elif isinstance(event, Reset):
                self.error = "reset"
            elif isinstance(event, ConnectionClosed):
                self.close_reason = event.reason
                if event.reason in ("refused", "timeout") and self.error is None:
                    self.error = event.reason
        if self.role == "source" and not connection.is_closed and not self.aborted:
            self._feed(connection, now)

    def _feed(self, connection: TcpConnection, now: float) -> None:
        pieces = self._pieces
        while (pieces is not None and not self._closed_by_us
               and connection.send_buffer_size < self.high_water):
            piece = next(pieces, None)
            if piece is None:
                self._pieces = pieces = None
                break
            if self.abort_after is not None and self.written + len(piece) > self.abort_after:
                piece = piece[: max(0, self.abort_after - self.written)]
                self._pieces = pieces = None  # nothing after the abort point
            if piece:
                connection.send(piece)
                self._digest.update(piece)
                self.written += len(piece)
        all_written = pieces is None
        if all_written and connection.send_buffer_size == 0 and self.finished is None:
            self.finished = now
        if not all_written:
            return
        if self.abort_after is not None:
            if connection.send_buffer_size == 0:  # everything written was acknowledged
                self._abort(now)
        elif not self._closed_by_us:
            self._closed_by_us = True
            connection.close()

    def _abort(self, now: float) -> None:
        assert self.connection is not None
        self.aborted = True
        self.finished = self.finished or now
        self.connection.abort()

    def report(self) -> dict[str, Any]:
        connection = self.connection
        unacked = connection.send_buffer_size if connection is not None else 0
        return {
            "role": self.role, "bytes": self.bytes, "sha256": self._digest.hexdigest(),
            "bytes_acked": self.written - unacked, "bytes_received": self.received,
            "eof": self.eof, "aborted": self.aborted, "error": self.error,
            "close_reason": self.close_reason, "started": self.started,
            "established": self.established, "finished": self.finished,
            "state": None if connection is None else str(connection.state),
        }
