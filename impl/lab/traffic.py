"""Kernel-side traffic for labs: a Linux TCP (later MPTCP) socket as sink or source.

The kernel end of a lab transfer runs in a child process inside the kernel's namespace
(`ip netns exec NS python -m impl.lab.traffic ...`), not in a thread of the measuring
process: our userspace endpoint is CPU-bound Python, and a sink in the same process would
fight it for the GIL and slow down both. The child prints JSON lines on stdout:

    {"event": "listening"}                  once listen() returned (listen mode only)
    {"event": "result", "ok": ..., ...}     exactly once, at the end

The result carries `bytes`, `sha256` of exactly the bytes moved, `established` /
`finished` times on CLOCK_MONOTONIC (system-wide, so the parent can compare them with
its own clock), whether the peer's FIN was seen (`eof`), and on failure `error`
("reset", "refused", "timeout", ...). Every blocking call is bounded by `--timeout`.

Closing (RFC 9293 3.10.4/3.10.5 as Linux exposes them):
- graceful: the source shuts down writing (FIN) after the last byte and waits for the
  peer's FIN; the sink reads to end-of-stream and then closes (its FIN);
- abortive (`--abort-after N`): after N payload bytes, SO_LINGER {on, 0 s} and close(),
  which makes Linux send a RST instead of a FIN (tcp_disconnect via tcp_close).

`PayloadStream` is the deterministic payload both kinds of endpoint send (ours too), so
a transfer is reproducible from its seed; the receiver still hashes what it really got.

`KernelTraffic` is the parent's handle on such a child: start, wait for "listening",
poll for the result without blocking (the parent runs its own event loop meanwhile).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import select
import socket
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

IPPROTO_MPTCP = 262
CHUNK = 1 << 20  # payload is generated, sent and hashed in 1 MiB pieces
RECEIVE_BUFFER = 1 << 20


class PayloadStream:
    """`size` pseudo-random bytes from `seed`, produced in `chunk`-sized pieces."""

    def __init__(self, size: int, seed: int = 0, chunk: int = CHUNK) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        self.size = size
        self.seed = seed
        self.chunk = chunk

    def __iter__(self) -> Iterator[bytes]:
        rng = random.Random(self.seed)
        left = self.size
        while left > 0:
            piece = min(self.chunk, left)
            left -= piece
            yield rng.randbytes(piece)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for piece in self:
            digest.update(piece)
        return digest.hexdigest()


# -- the child process -------------------------------------------------------------------


def die_with_parent(parent: int) -> None:
    """Get SIGTERM when `parent` dies (PR_SET_PDEATHSIG), so a lab process killed with
    SIGKILL leaves no orphan behind; exit now if it is already gone."""
    import ctypes
    import ctypes.util
    import signal

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:
        raise SystemExit(1)


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _socket(family: int, proto: str) -> socket.socket:
    number = IPPROTO_MPTCP if proto == "mptcp" else socket.IPPROTO_TCP
    return socket.socket(family, socket.SOCK_STREAM, number)


def _reset_on_close(sock: socket.socket) -> None:
    # struct linger {int l_onoff; int l_linger;}: on with 0 s makes close() send a RST.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _open(args: argparse.Namespace, family: int, deadline: float,
          keep: list[socket.socket]) -> socket.socket:
    """The connected socket: accepted from a listener, or actively connected.

    The listener goes into `keep` and stays open until the transfer is over: Linux
    looks up MP_JOIN SYNs through the listening socket of the port (RFC 8684 3.2), and
    without one it answers a join with a RST, so closing it after accept() would limit
    an MPTCP connection to its first subflow."""
    if args.listen:
        listener = _socket(family, args.proto)
        keep.append(listener)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((args.address, args.port))
        listener.listen(4)
        _emit({"event": "listening"})
        listener.settimeout(max(0.01, deadline - time.monotonic()))
        connection, _ = listener.accept()
        return connection
    connection = _socket(family, args.proto)
    try:
        if args.bind:
            connection.bind((args.bind, 0))
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        connection.connect((args.address, args.port))
    except BaseException:
        connection.close()
        raise
    return connection


def _sink(connection: socket.socket, args: argparse.Namespace, deadline: float,
          result: dict[str, Any]) -> None:
    digest = hashlib.sha256()
    buffer = bytearray(RECEIVE_BUFFER)
    view = memoryview(buffer)
    received = 0
    while True:
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        count = connection.recv_into(buffer)
        if count == 0:
            result["eof"] = True
            break
        digest.update(view[:count])
        received += count
        result["bytes"] = received
        if args.abort_after is not None and received >= args.abort_after:
            result["aborted"] = True
            _reset_on_close(connection)
            break
    result["finished"] = time.monotonic()
    result["sha256"] = digest.hexdigest()


def _source(connection: socket.socket, args: argparse.Namespace, deadline: float,
            result: dict[str, Any]) -> None:
    digest = hashlib.sha256()
    sent = 0
    for piece in PayloadStream(args.size, args.seed):
        if args.abort_after is not None and sent + len(piece) > args.abort_after:
            piece = piece[: max(0, args.abort_after - sent)]
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        connection.sendall(piece)
        digest.update(piece)
        sent += len(piece)
        result["bytes"] = sent
        if args.abort_after is not None and sent >= args.abort_after:
            break
    result["sha256"] = digest.hexdigest()
    result["finished"] = time.monotonic()
    if args.abort_after is not None:
        result["aborted"] = True
        _reset_on_close(connection)
        return
    # Graceful: our FIN follows the data; the peer's FIN tells us it read everything.
    connection.shutdown(socket.SHUT_WR)
    while True:
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = connection.recv(65536)
        if not chunk:
            result["eof"] = True
            break


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    family = socket.AF_INET6 if ":" in args.address else socket.AF_INET
    deadline = time.monotonic() + args.timeout
    result: dict[str, Any] = {"event": "result", "ok": False, "role": args.role, "bytes": 0,
                              "sha256": None, "eof": False, "aborted": False, "error": None,
                              "established": None, "finished": None, "peer": None}
    keep: list[socket.socket] = []
    try:
        result["started"] = time.monotonic()
        connection = _open(args, family, deadline, keep)
        with connection:
            result["established"] = time.monotonic()
            peer = connection.getpeername()
            result["peer"] = f"{peer[0]}:{peer[1]}"
            local = connection.getsockname()
            result["local"] = f"{local[0]}:{local[1]}"
            if args.role == "sink":
                _sink(connection, args, deadline, result)
            else:
                _source(connection, args, deadline, result)
        result["ok"] = result["eof"] or result["aborted"]
    except ConnectionRefusedError:
        result["error"] = "refused"
    except (ConnectionResetError, BrokenPipeError):
        result["error"] = "reset"
    except TimeoutError:
        result["error"] = "timeout"
    except OSError as error:
        result["error"] = f"{type(error).__name__}: {error}"
    finally:
        for listener in keep:
            listener.close()
    return result


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m impl.lab.traffic",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("sink", "source"))
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--listen", action="store_true", help="accept one connection")
    how.add_argument("--connect", action="store_true", help="connect to ADDRESS PORT")
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", help="source address when connecting")
    parser.add_argument("--proto", choices=("tcp", "mptcp"), default="tcp")
    parser.add_argument("--size", type=int, default=0, help="bytes a source sends")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--abort-after", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--parent", type=int, default=None, help="exit when it dies")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.parent is not None:
        die_with_parent(args.parent)
    result = run_child(args)
    _emit(result)
    return 0 if result["ok"] else 1


# -- the parent's handle -------------------------------------------------------------------


class KernelTrafficError(RuntimeError):
    """The kernel-side process did not start or answer in time."""


class KernelTraffic:
    """A running kernel-side sink or source in a lab namespace (see the module doc).

    Started with `NetworkNamespace.popen`, so removing the namespace also stops it.
    """

    def __init__(self, namespace: Any, role: str, *, address: str, port: int,
                 listen: bool, size: int = 0, seed: int = 0, proto: str = "tcp",
                 bind: str | None = None, abort_after: int | None = None,
                 timeout: float = 60.0) -> None:
        argv = [sys.executable, "-m", "impl.lab.traffic", role,
                "--listen" if listen else "--connect", "--address", address,
                "--port", str(port), "--proto", proto, "--size", str(size),
                "--seed", str(seed), "--timeout", str(timeout), "--parent", str(os.getpid())]
        if bind is not None:
            argv += ["--bind", bind]
        if abort_after is not None:
            argv += ["--abort-after", str(abort_after)]
        self.role = role
        self._buffer = b""
        self._records: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None
        # The child imports only this module; run it from the project root so
        # `impl` resolves without an installed distribution.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.process = namespace.popen(*argv, stdout=-1, stderr=-1, cwd=root)
        os.set_blocking(self.process.stdout.fileno(), False)

    def on_readable(self) -> bool:
        """For an event loop watching `self.process.stdout`: take what the child wrote;
        False once the pipe is at end of file (stop watching it)."""
        return self._pump()

    def _pump(self) -> bool:
        stream = self.process.stdout
        open_ = True
        while True:
            try:
                chunk = os.read(stream.fileno(), 65536)
            except BlockingIOError:
                break
            if not chunk:
                open_ = False
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            self._records.append(record)
            if record.get("event") == "result":
                self.result = record
        return open_

    def _wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._pump()
            if predicate():
                return
            if self.process.poll() is not None:
                self._pump()
                if predicate():
                    return
                raise KernelTrafficError(f"the kernel {self.role} exited before {what}: "
                                         f"{self.stderr()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise KernelTrafficError(f"the kernel {self.role} gave no {what} in "
                                         f"{timeout}s")
            select.select([self.process.stdout], [], [], min(left, 0.1))

    def wait_listening(self, timeout: float = 10.0) -> None:
        self._wait_for(lambda: any(r.get("event") == "listening" for r in self._records),
                       timeout, "listening line")

    def poll(self) -> dict[str, Any] | None:
        """The result if the child has printed it, else None (never blocks)."""
        if self.result is None:
            self._pump()
        return self.result

    def wait(self, timeout: float) -> dict[str, Any]:
        self._wait_for(lambda: self.result is not None, timeout, "result")
        assert self.result is not None
        return self.result

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read().decode(errors="replace").strip()[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except Exception:
                self.process.kill()
                self.process.wait(timeout=2)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


if __name__ == "__main__":
    raise SystemExit(main())
