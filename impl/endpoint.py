"""`mptcp-ref serve` and `mptcp-ref connect`: a reference MPTCP endpoint on TUN devices in
the current network namespace, built on the socket API (`impl.api`).

Each `--address OURS/PREFIX` gets a TUN device `mptcpref<N>` whose kernel side takes the
lowest other host address of the prefix (198.18.1.1 for 198.18.1.2/24), so the Linux
kernel of this namespace (an IPPROTO_MPTCP program, or `mptcpize run curl`) reaches our
endpoint at OURS through it (`impl.lab.interfaces`). Only 198.18.0.0/15 and fd00::/8.

Modes say what this side does with one connection (the same for both commands):

- `sink`: read until the peer's DATA_FIN, then close (`--output PATH` keeps the bytes);
- `source`: send `--size` pseudo-random bytes (`impl.lab.traffic.PayloadStream`, `--seed`),
  shut down the sending side, then read until the peer closes;
- `echo`: send back everything read, close after the peer's DATA_FIN;
- `file`: like `source`, with the bytes of `--file PATH` (serve: every client downloads
  it; connect: we upload it).

The summary (`--json FILE`) has one entry per connection: bytes and SHA-256 of what was
sent and received, seconds, subflows (`impl.mptcp.info`), fallback and our MIB
counters. A rich Live table (subflows, bytes per TUN) runs unless `--quiet`. Bad
arguments raise `EndpointUsageError` (the CLI exits 2); Ctrl-C or SIGTERM closes the
stack, which removes the TUN devices (exit 130).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from impl.api import SHUT_WR, MptcpSocket, MptcpStack
from impl.io.eventlog import JsonLinesLog
from impl.lab.interfaces import parse_interface, parse_interfaces
from impl.lab.netns import LabAddressError, check_lab_network
from impl.lab.traffic import PayloadStream
from impl.mptcp.connection import MptcpConfig
from impl.mptcp.fullmesh import MAX_SUBFLOWS

__all__ = ["MODES", "EndpointOptions", "EndpointSetupError", "EndpointUsageError",
           "run_endpoint"]

MODES = ("sink", "source", "echo", "file")
CHUNK = 64 << 10
REFRESH = 0.25  # seconds between live display updates
CLOSE_WAIT = 5.0  # seconds a finished connection gets for the DATA_FIN exchange


class EndpointUsageError(ValueError):
    """A bad command line: the CLI prints it and exits 2."""


class EndpointSetupError(RuntimeError):
    """The TUN devices or the stack could not be set up (not root, an address the
    kernel already has, ...): the CLI prints it and exits 1."""


@dataclass
class EndpointOptions:
    command: str  # "serve" or "connect"
    addresses: list[str]
    port: int
    mode: str
    host: str | None = None  # connect: the peer
    file: Path | None = None
    output: Path | None = None
    size: int = 1 << 20
    seed: int = 0
    count: int = 1  # serve: connections to handle before exiting (0: until interrupted)
    timeout: float | None = None  # seconds any one socket call may wait
    checksums: bool = False
    max_subflows: int = MAX_SUBFLOWS
    pcap: Path | None = None
    events: Path | None = None
    json_path: Path | None = None
    quiet: bool = False

    def validate(self) -> None:
        """Every check that needs no network: raise EndpointUsageError saying what is
        wrong."""
        if self.command not in ("serve", "connect"):
            raise EndpointUsageError(f"unknown command {self.command!r}")
        if not self.addresses:
            raise EndpointUsageError("give at least one --address (e.g. 198.18.1.2/24)")
        try:
            parse_interfaces(self.addresses)
            if self.host is not None:
                check_lab_network(self.host)
        except (LabAddressError, ValueError) as error:
            raise EndpointUsageError(str(error)) from None
        if self.command == "connect":
            if self.host is None:
                raise EndpointUsageError("connect needs the peer's address")
            peer = ipaddress.ip_address(self.host)
            if all(parse_interface(a).version != peer.version for a in self.addresses):
                raise EndpointUsageError(f"no --address of the family of {self.host}")
        if not 1 <= self.port <= 65535:
            raise EndpointUsageError(f"port {self.port} is not 1 to 65535")
        if self.mode not in MODES:
            raise EndpointUsageError(f"--mode {self.mode!r}: one of {', '.join(MODES)}")
        if self.mode == "file":
            if self.file is None:
                raise EndpointUsageError("--mode file needs --file PATH")
            if not self.file.is_file():
                raise EndpointUsageError(f"--file {self.file}: no such file")
        elif self.file is not None:
            raise EndpointUsageError("--file goes with --mode file")
        if self.output is not None and self.mode != "sink":
            raise EndpointUsageError("--output goes with --mode sink")
        if self.size < 0:
            raise EndpointUsageError("--size must not be negative")
        if self.count < 0:
            raise EndpointUsageError("--count must not be negative")
        if self.timeout is not None and self.timeout <= 0:
            raise EndpointUsageError("--timeout must be positive")
        if not 1 <= self.max_subflows <= MAX_SUBFLOWS:
            raise EndpointUsageError(f"--max-subflows is 1 to {MAX_SUBFLOWS}")
        for output in (self.json_path, self.pcap, self.events, self.output):
            if output is None:
                continue
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise EndpointUsageError(f"cannot write {output}: {error}") from None


@dataclass
class Transfer:
    """One connection's work in `mode` (module docstring) and what it measured."""

    sock: MptcpSocket
    mode: str
    options: EndpointOptions
    peer: str = ""
    sent: int = 0
    received: int = 0
    sent_digest: Any = field(default_factory=hashlib.sha256)
    received_digest: Any = field(default_factory=hashlib.sha256)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    error: str | None = None
    subflows: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def run(self) -> None:
        sock = self.sock
        try:
            if self.mode in ("source", "file"):
                self._send_all()
                sock.shutdown(SHUT_WR)
                self._receive()
            elif self.mode == "echo":
                self._receive(echo=True)
            else:
                self._receive()
            sock.wait_sent()  # done when the peer has every byte (DATA_ACK)
            self.finished = time.monotonic()
            self.subflows = sock.subflows()
            self.info = sock.mptcp_info()
            sock.close()
            sock.settimeout(CLOSE_WAIT)
            try:
                sock.wait_closed()  # the DATA_FIN exchange (3.3.3); no error if slow
            except TimeoutError:
                pass
        except OSError as error:
            self.error = self.error or f"{type(error).__name__}: {error}"
            try:
                self.subflows = self.subflows or sock.subflows()
            except OSError:
                pass
            sock.abort()

    def _pieces(self):
        if self.mode == "file":
            with open(self.options.file, "rb") as source:
                while piece := source.read(CHUNK):
                    yield piece
        else:
            yield from PayloadStream(self.options.size, self.options.seed, chunk=CHUNK)

    def _send_all(self) -> None:
        for piece in self._pieces():
            self.sock.sendall(piece)
            self.sent_digest.update(piece)
            self.sent += len(piece)

    def _receive(self, echo: bool = False) -> None:
        output = open(self.options.output, "ab") if self.options.output else None  # noqa: SIM115
        try:
            while data := self.sock.recv(CHUNK):
                self.received_digest.update(data)
                self.received += len(data)
                if output is not None:
                    output.write(data)
                if echo:
                    self.sock.sendall(data)
                    self.sent_digest.update(data)
                    self.sent += len(data)
            if echo:
                self.sock.shutdown(SHUT_WR)
        finally:
            if output is not None:
                output.close()

    def report(self) -> dict[str, Any]:
        end = self.finished if self.finished is not None else time.monotonic()
        return {
            "peer": self.peer, "mode": self.mode, "ok": self.error is None and (
                self.finished is not None),
            "error": self.error, "bytes_sent": self.sent, "bytes_received": self.received,
            "sha256_sent": self.sent_digest.hexdigest(),
            "sha256_received": self.received_digest.hexdigest(),
            "seconds": end - self.started, "subflows": self.subflows,
            "fallback": self.info.get("fallback"), "checksums": self.info.get("checksums"),
            "counters": self.info.get("counters", {}),
        }


class Endpoint:
    """The running endpoint: the stack, its transfers and the worker thread."""

    def __init__(self, options: EndpointOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.transfers: list[Transfer] = []
        self.threads: list[threading.Thread] = []
        self.error: str | None = None
        self.started = time.monotonic()
        self._log_lock = threading.Lock()
        self._eventlog = JsonLinesLog(str(options.events)) if options.events else None
        self.stack = MptcpStack.create(
            options.addresses, config=MptcpConfig(checksums=options.checksums),
            pcap=options.pcap, logger=self._log if self._eventlog else None,
            max_subflows=options.max_subflows)

    def _log(self, event: dict) -> None:
        with self._log_lock:
            self._eventlog(event)

    def log(self, kind: str, **fields: Any) -> None:
        if self._eventlog is not None:
            self._log({"type": kind, "t": time.monotonic(), **fields})

    def _start(self, sock: MptcpSocket, peer: tuple[str, int]) -> None:
        transfer = Transfer(sock, self.options.mode, self.options,
                            peer=f"{peer[0]}:{peer[1]}")
        self.transfers.append(transfer)
        self.log("api:connection", peer=transfer.peer, mode=transfer.mode)

        def run() -> None:
            transfer.run()
            self.log("api:done", **{
                k: v for k, v in transfer.report().items() if k != "subflows"})

        thread = threading.Thread(target=run, daemon=True, name=f"transfer {transfer.peer}")
        self.threads.append(thread)
        thread.start()

    def work(self) -> None:
        """The worker thread: accept or connect, one transfer thread per connection."""
        options = self.options
        try:
            if options.command == "connect":
                sock = self.stack.socket()
                sock.settimeout(options.timeout)
                sock.connect((options.host, options.port))
                self._start(sock, (options.host, options.port))
            else:
                listener = self.stack.socket()
                listener.bind(("", options.port))
                listener.listen()
                listener.settimeout(options.timeout)
                names = ", ".join(i.label for i in self.stack.interfaces)
                self.console.print(f"serving {options.mode} on port {options.port} "
                                   f"({', '.join(map(str, self.stack.addresses))}; {names})",
                                   highlight=False, soft_wrap=True)
                accepted = 0
                while options.count == 0 or accepted < options.count:
                    sock, peer = listener.accept()
                    sock.settimeout(options.timeout)
                    accepted += 1
                    self._start(sock, peer)
                listener.close()
            for thread in self.threads:
                thread.join()
        except OSError as error:
            self.error = f"{type(error).__name__}: {error}"

    # -- display ---------------------------------------------------------------------------

    def render(self) -> Group:
        table = Table(title=f"mptcp-ref {self.options.command} ({self.options.mode})",
                      expand=False)
        for column in ("local", "remote", "state", "B", "sent", "received", "rtt ms"):
            table.add_column(column, no_wrap=True, justify="right" if column in (
                "sent", "received", "rtt ms") else "left")
        for transfer in list(self.transfers):
            try:
                subflows = transfer.subflows or transfer.sock.subflows()
            except OSError:
                subflows = transfer.subflows
            table.add_section()
            for subflow in subflows:
                rtt = subflow["rtt"]
                table.add_row(subflow["local"], subflow["remote"], subflow["state"],
                              "B" if subflow["backup"] else "",
                              f"{subflow['bytes_sent']:,}", f"{subflow['bytes_received']:,}",
                              "-" if rtt is None else f"{rtt * 1000:.1f}")
        ports = Table(title="bytes per TUN", expand=False)
        for column in ("device", "packets in", "bytes in", "packets out", "bytes out"):
            ports.add_column(column, justify="left" if column == "device" else "right")
        try:
            for stats in self.stack.port_stats():
                ports.add_row(stats["label"], f"{stats['packets_in']:,}",
                              f"{stats['bytes_in']:,}", f"{stats['packets_out']:,}",
                              f"{stats['bytes_out']:,}")
        except OSError:
            pass
        return Group(table, ports)

    # -- summary ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        connections = [transfer.report() for transfer in self.transfers]
        options = self.options
        expected = 1 if options.command == "connect" else options.count
        ok = (self.error is None and all(c["ok"] for c in connections)
              and (expected == 0 or len(connections) == expected))
        return {
            "command": options.command, "mode": options.mode, "ok": ok,
            "error": self.error or next((c["error"] for c in connections if c["error"]), None),
            "addresses": [str(a) for a in self.stack.addresses],
            "devices": [i.label for i in self.stack.interfaces],
            "peer": None if options.host is None else f"{options.host}:{options.port}",
            "port": options.port, "seconds": time.monotonic() - self.started,
            "connections": connections,
            "bytes_sent": sum(c["bytes_sent"] for c in connections),
            "bytes_received": sum(c["bytes_received"] for c in connections),
        }

    def close(self, linger: float = 3.0) -> None:
        self.stack.close(linger=linger)
        if self._eventlog is not None:
            self._eventlog.close()


def run_endpoint(options: EndpointOptions, console: Console) -> dict[str, Any]:
    """Run `serve` or `connect` until done (or KeyboardInterrupt, which still closes the
    stack and its TUN devices before it propagates); returns the summary."""
    options.validate()
    try:
        endpoint = Endpoint(options, console)
    except Exception as error:
        raise EndpointSetupError(f"cannot set up the TUN devices: "
                                 f"{type(error).__name__}: {error}") from error
    interrupted = False
    try:
        worker = threading.Thread(target=endpoint.work, daemon=True, name="endpoint")
        worker.start()
        if options.quiet:
            while worker.is_alive():
                worker.join(REFRESH)
        else:
            with Live(endpoint.render(), console=console, refresh_per_second=4,
                      transient=False) as live:
                while worker.is_alive():
                    worker.join(REFRESH)
                    live.update(endpoint.render())
            console.line()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        summary = endpoint.summary()
        endpoint.close(linger=0.0 if interrupted else 3.0)
        if interrupted:
            summary["ok"], summary["error"] = False, "interrupted"
        if options.json_path is not None:
            options.json_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
