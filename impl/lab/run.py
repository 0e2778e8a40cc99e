"""`mptcp-ref lab run`: one transfer in a fresh lab, reported as a JSON-able dict.

    run_lab(LabRunSpec(peer="kernel", size=1 << 20, direction="up")) -> dict

- `peer="kernel"`: a `KernelPeerLab`; our `TcpHost` runs on the `TunDriver` in this
  process, the kernel's socket in a child process (`impl.lab.traffic`) in the lab
  namespace.
- `peer="ref"`: a `RefPairLab`; both ends are `TcpHost`s on one driver (our client with
  the links, our server behind the router namespace).

"up" means our endpoint (the client, at .2) sends, "down" that it receives. By default
our endpoint connects and the other end listens; `initiator="peer"` swaps that. With
`proto="tcp"` and several paths a TCP connection uses path 1 and the other paths stay
idle; `proto="mptcp"` (with `peer="kernel"`) runs `impl.lab.mptcp_run`, one subflow per
path (`kernel_endpoints`, `kernel_limits`, `checksums` apply only there).

The report: `ok`, `reason` (why not ok), `bytes` (received by the receiver),
`sha256_match` (the receiver hashed exactly what the sender hashed), `seconds` (from the
initiator's connect to the receiver's end-of-stream, on CLOCK_MONOTONIC, which every
process on the machine shares), `goodput_mbit`, `subflows` (per subflow: addresses and
bytes sent/received, from our endpoint's view), `links` (per path and direction: link
model and TUN counters), `kernel_mib_delta` (MPTcpExt*/Tcp*/TcpExt* counters of the kernel
host that changed), and the two ends' own accounts under `ours` and `peer`.

`close`: "graceful" (FIN both ways), "abort-ref" (our endpoint aborts with a RST after
`abort_after` bytes), "abort-peer" (the other end does). For the abort cases `ok` means
the abort was seen as such on both sides. Every wait is bounded by `timeout`; on expiry
the report says ok=false and why, and the lab is torn down all the same.
"""

from __future__ import annotations

import secrets
import time
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from impl.io.eventlog import JsonLinesLog
from impl.io.pcap import PcapFile
from impl.io.sim import TcpHost
from impl.io.tun_loop import TunDriver, TunPort
from impl.lab.app import OurApplication
from impl.lab.topology import MTU, KernelPeerLab, PathSpec, RefPairLab, kernel_counter_delta
from impl.lab.traffic import KernelTraffic, KernelTrafficError
from impl.tcp.config import TcpConfig

__all__ = ["LabRunSpec", "NotBuiltYet", "kernel_session", "our_config", "per_path", "run_lab"]

PORT = 5201
SETTLE = 2.0  # seconds one side may wait for the other to report after it finished


class NotBuiltYet(Exception):
    """The run asks for something a later issue builds (MPTCP)."""


def per_path(text: str | None, paths: int, name: str, scale: float = 1.0) -> list[float | None]:
    """"10" or "10,20" -> one value per path (a single value applies to all)."""
    if text is None or text == "":
        return [None] * paths
    try:
        values: list[float | None] = [float(item) * scale for item in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--{name}: expected numbers separated by commas, got {text!r}") from None
    if len(values) == 1:
        values = values * paths
    if len(values) != paths:
        raise ValueError(f"--{name}: {len(values)} values for {paths} paths")
    if any(value is not None and value < 0 for value in values):
        raise ValueError(f"--{name}: values must not be negative")
    return values


@dataclass
class LabRunSpec:
    peer: str = "kernel"  # "kernel" | "ref"
    paths: list[PathSpec] = field(default_factory=lambda: [PathSpec()])
    size: int = 1 << 20
    direction: str = "up"  # "up": our endpoint sends
    proto: str = "tcp"
    ipv6: bool = False
    pcap: Path | None = None
    eventlog: Path | None = None
    seed: int = 0
    timeout: float | None = None
    port: int = PORT
    initiator: str = "ref"  # who connects: our endpoint ("ref") or the other end ("peer")
    close: str = "graceful"  # "graceful" | "abort-ref" | "abort-peer"
    abort_after: int | None = None
    config: TcpConfig | None = None  # our endpoint's TCP (MSS capped to the lab MTU)
    sysctls: dict[str, str | int] = field(default_factory=dict)  # the kernel host's net.*
    checksums: bool = False  # MPTCP: our endpoint asks for DSS checksums (RFC 8684 3.3.1)
    kernel_endpoints: str = "subflow"  # MPTCP: see impl.lab.mptcp_run
    kernel_limits: int | None = None  # MPTCP: ip mptcp limits (default paths - 1)

    def __post_init__(self) -> None:
        checks = (("peer", self.peer, ("kernel", "ref")), ("direction", self.direction,
                  ("up", "down")), ("proto", self.proto, ("tcp", "mptcp")),
                  ("initiator", self.initiator, ("ref", "peer")),
                  ("close", self.close, ("graceful", "abort-ref", "abort-peer")))
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.size < 0:
            raise ValueError("size must not be negative")
        if self.kernel_endpoints not in ("subflow", "signal", "fullmesh", "backup"):
            raise ValueError("kernel endpoints must be one of subflow, signal, fullmesh, "
                             f"backup, got {self.kernel_endpoints!r}")

    @property
    def time_limit(self) -> float:
        # Generous: 30 s plus 1.5 s per MiB (a lossy, delayed path at a few Mbit/s).
        return self.timeout if self.timeout is not None else 30 + 1.5 * self.size / 2**20


@dataclass
class Session:
    """A live lab with our endpoint(s) on the driver (see `kernel_session`)."""

    lab: Any
    driver: TunDriver
    host: TcpHost  # our endpoint (the client side, at .2)
    ports: list[TunPort]
    server_host: TcpHost | None = None  # with peer="ref": our other endpoint, at .1
    stack: ExitStack = field(default_factory=ExitStack)

    def counters(self) -> dict[str, int]:
        return self.lab.counters()


def our_config(ipv6: bool, base: TcpConfig | None = None) -> TcpConfig:
    """Our endpoint's TCP configuration on a lab TUN (MTU 1500).

    The MSS option says what fits the MTU after the IP and TCP headers (RFC 9293 3.7.1;
    RFC 8200 makes the IPv6 header 40 bytes, so 1440 rather than IPv4's 1460), and our
    MSS also caps what we send, so no packet exceeds the TUN's MTU. A 4 MiB receive
    buffer keeps the window off the critical path on delayed links. TIME-WAIT is not
    waited out in a lab: a transfer is over once both FINs are exchanged.
    """
    mss = MTU - (60 if ipv6 else 40)
    if base is None:
        return TcpConfig(mss=mss, receive_buffer=4 << 20)
    return replace(base, mss=min(base.mss, mss))


@contextmanager
def kernel_session(paths: list[PathSpec], *, ipv6: bool = False, seed: int = 0,
                   peer: str = "kernel", pcap: Path | None = None,
                   eventlog: Path | None = None) -> Iterator[Session]:
    """Build the lab for `peer`, attach our endpoint(s) to its TUNs; tear all down after."""
    with ExitStack() as stack:
        logger = stack.enter_context(JsonLinesLog(str(eventlog))) if eventlog else None
        capture = stack.enter_context(PcapFile(pcap)) if pcap else None
        driver = TunDriver(pcap=capture, logger=logger)
        stack.callback(driver.close)
        # ISNs and timestamp offsets unpredictable (RFC 6528); links seeded for repeats.
        host_seed = secrets.randbits(64)
        if peer == "kernel":
            lab = stack.enter_context(KernelPeerLab(paths, ipv6=ipv6, seed=seed))
            host = TcpHost(lab.our_addresses[0], seed=host_seed, logger=logger)
            host.addresses[1:] = [host.addresses[0].__class__(a)
                                  for a in lab.our_addresses[1:]]
            driver.add_endpoint(host)
            ports = []
            for index, (tun, ours) in enumerate(zip(lab.tuns, lab.our_addresses,
                                                    strict=True)):
                outbound, inbound = lab.links(index)
                ports.append(driver.attach(tun, [ours], label=f"path{index + 1}",
                                           outbound=outbound, inbound=inbound))
            yield Session(lab, driver, host, ports, stack=stack)
            return
        lab = stack.enter_context(RefPairLab(paths, ipv6=ipv6, seed=seed))
        host = TcpHost(lab.client_addresses[0], seed=host_seed, logger=logger)
        server = TcpHost(lab.server_addresses[0], seed=host_seed + 1, logger=logger)
        driver.add_endpoint(host)
        driver.add_endpoint(server)
        yield Session(lab, driver, host, lab.attach(driver), server_host=server, stack=stack)


def run_lab(spec: LabRunSpec) -> dict[str, Any]:
    """Run one transfer as `spec` says; the report described in the module docstring."""
    if spec.proto == "mptcp":
        if spec.peer == "ref":
            from impl.lab.mptcp_ref_run import run_mptcp_with_ref

            return run_mptcp_with_ref(spec)
        from impl.lab.mptcp_run import run_mptcp_with_kernel

        return run_mptcp_with_kernel(spec, kernel_endpoints=spec.kernel_endpoints,
                                     kernel_limits=spec.kernel_limits)
    with kernel_session(spec.paths, ipv6=spec.ipv6, seed=spec.seed, peer=spec.peer,
                        pcap=spec.pcap, eventlog=spec.eventlog) as session:
        if spec.peer == "kernel":
            return _run_with_kernel(spec, session)
        return _run_with_ref(spec, session)


def _roles(spec: LabRunSpec) -> tuple[str, str]:
    ours = "source" if spec.direction == "up" else "sink"
    return ours, "sink" if ours == "source" else "source"


def _abort_for(spec: LabRunSpec, side: str) -> int | None:
    if spec.close == f"abort-{side}":
        return spec.abort_after if spec.abort_after is not None else spec.size // 2
    return None


def _run_with_kernel(spec: LabRunSpec, session: Session) -> dict[str, Any]:
    lab, driver, host = session.lab, session.driver, session.host
    path = lab.paths[0]
    our_role, kernel_role = _roles(spec)
    limit = spec.time_limit
    config = our_config(spec.ipv6, spec.config)
    app = OurApplication(our_role, spec.size, seed=spec.seed,
                         abort_after=_abort_for(spec, "ref"))
    for name, value in spec.sysctls.items():
        lab.set_sysctl(name, value)
    before = session.counters()
    failure: str | None = None
    kernel: KernelTraffic | None = None
    started: float | None = None  # the initiator's connect; the kernel's when it connects
    try:
        kernel_listens = spec.initiator == "ref"
        if not kernel_listens:
            host.listen(spec.port, config)
        kernel = KernelTraffic(
            lab.namespace, kernel_role, address=str(path.server if kernel_listens
                                                    else path.client),
            port=spec.port, listen=kernel_listens, size=spec.size, seed=spec.seed,
            abort_after=_abort_for(spec, "peer"), timeout=limit)
        driver.watch(kernel.process.stdout, kernel.on_readable)  # wake on its result
        if kernel_listens:
            kernel.wait_listening()
            started = time.monotonic()
            app.attach(host.connect(path.server, spec.port, started, config), started)
        done = driver.run(lambda: _step(app, host, kernel), timeout=limit)
        if not done:
            failure = _timeout_reason(app, kernel, limit)
    except KernelTrafficError as error:
        failure = str(error)
    except Exception as error:
        # A bug in our endpoint (or the driver) is a failed run, reported as such with
        # its traceback on stderr; the lab still comes down.
        traceback.print_exc()
        failure = f"{type(error).__name__} in our endpoint: {error}"
    finally:
        driver.drain(timeout=1.0)
        after = session.counters()
        peer = (kernel.poll() if kernel is not None else None) or {}
        if kernel is not None:
            kernel.stop()
            if failure and not peer:
                failure += f" ({kernel.stderr() or 'no output'})"
    if started is None:
        started = peer.get("started")
    report = _report(spec, app, peer, started, failure, session)
    report["kernel_mib_delta"] = kernel_counter_delta(before, after)
    return report


def _step(app: OurApplication, host: TcpHost, kernel: KernelTraffic) -> bool:
    if app.connection is None and host.accepted:
        app.attach(host.accepted[0], time.monotonic())
    app.step(time.monotonic())
    peer = kernel.poll()
    if peer is None:
        return False
    # The kernel is done; our end may need a moment to see the last FIN/RST.
    if app.settled:
        return True
    app.peer_done_at = app.peer_done_at or time.monotonic()
    return time.monotonic() - app.peer_done_at > SETTLE


def _timeout_reason(app: OurApplication, kernel: KernelTraffic | None, limit: float) -> str:
    state = app.connection.state if app.connection is not None else "no connection"
    peer = "reported" if kernel is not None and kernel.poll() is not None else "no result"
    return (f"timeout after {limit:.0f}s: our connection {state}, {app.bytes} bytes "
            f"moved; kernel side: {peer}")


def _run_with_ref(spec: LabRunSpec, session: Session) -> dict[str, Any]:
    driver, client, server = session.driver, session.host, session.server_host
    assert server is not None
    path = session.lab.paths[0]
    our_role, other_role = _roles(spec)
    config = our_config(spec.ipv6, spec.config)
    ours = OurApplication(our_role, spec.size, seed=spec.seed,
                          abort_after=_abort_for(spec, "ref"))
    other = OurApplication(other_role, spec.size, seed=spec.seed,
                           abort_after=_abort_for(spec, "peer"))
    connector, listener = (client, server) if spec.initiator == "ref" else (server, client)
    listener.listen(spec.port, config)
    started = time.monotonic()
    target = path.server if spec.initiator == "ref" else path.client
    first = connector.connect(target, spec.port, started, config)
    (ours if connector is client else other).attach(first, started)

    def step() -> bool:
        now = time.monotonic()
        for app in (ours, other):
            if app.connection is None and (client if app is ours else server).accepted:
                host = client if app is ours else server
                app.attach(host.accepted[0], now)
            app.step(now)
        return ours.settled and other.settled

    before = session.counters()
    failure: str | None = None
    try:
        done = driver.run(step, timeout=spec.time_limit)
        failure = None if done else _timeout_reason(ours, None, spec.time_limit)
        driver.drain(timeout=1.0)
    except Exception as error:
        traceback.print_exc()
        failure = f"{type(error).__name__} in our endpoint: {error}"
    if failure is None and not (ours.settled and other.settled):
        failure = "our endpoints did not both close"
    report = _report(spec, ours, other.report(), started, failure, session)
    report["kernel_mib_delta"] = kernel_counter_delta(before, session.counters())
    return report


def _report(spec: LabRunSpec, ours: OurApplication, peer: dict[str, Any], started: float | None,
            failure: str | None, session: Session) -> dict[str, Any]:
    mine = ours.report()
    sender, receiver = (mine, peer) if spec.direction == "up" else (peer, mine)
    received = receiver.get("bytes", 0)
    sha_match = (sender.get("sha256") is not None
                 and sender.get("sha256") == receiver.get("sha256")
                 and sender.get("bytes") == received)
    finished = receiver.get("finished")
    seconds = (finished - started) if finished is not None and started is not None else None
    reason = failure
    if reason is None:
        reason = _judge(spec, mine, peer, received, sha_match)
    goodput = (received * 8 / seconds / 1e6) if seconds and seconds > 0 else None
    connection = ours.connection
    subflows = []
    if connection is not None:
        local = session.host.address
        remote_host = session.lab.paths[0]
        remote = remote_host.server if str(local) == str(remote_host.client) \
            else remote_host.client
        subflows.append({
            "path": 1, "local": f"{local}:{connection.local_port}",
            "remote": f"{remote}:{connection.remote_port}",
            "bytes_sent": mine["bytes_acked"], "bytes_received": mine["bytes_received"],
            "retransmitted_segments": connection.sender.retrans_segs,
            "timeouts": connection.sender.timeouts, "state": str(connection.state),
        })
    return {
        "ok": reason is None, "reason": reason, "peer": spec.peer, "proto": spec.proto,
        "direction": spec.direction, "family": "ipv6" if spec.ipv6 else "ipv4",
        "close": spec.close, "size": spec.size, "bytes": received,
        "sha256_match": sha_match, "seconds": seconds, "goodput_mbit": goodput,
        "paths": [path.as_dict() for path in spec.paths], "subflows": subflows,
        "links": _link_report(session), "ours": mine, "peer_side": peer,
    }


def _judge(spec: LabRunSpec, mine: dict[str, Any], peer: dict[str, Any], received: int,
           sha_match: bool) -> str | None:
    """None when the run did what `spec.close` says it should, else why not."""
    if not peer:
        return "the peer reported nothing"
    if spec.close == "graceful":
        if mine["error"] or peer.get("error"):
            return f"errors: ours {mine['error']}, peer {peer.get('error')}"
        if received != spec.size:
            return f"received {received} of {spec.size} bytes"
        if not sha_match:
            return "SHA-256 mismatch"
        if not (mine["eof"] and peer.get("eof")):
            return f"no orderly close: our eof {mine['eof']}, peer eof {peer.get('eof')}"
        return None
    aborter, victim = (mine, peer) if spec.close == "abort-ref" else (peer, mine)
    if not aborter.get("aborted"):
        return f"the aborting side did not abort ({aborter.get('error')})"
    if victim.get("error") != "reset":
        return f"the other side saw {victim.get('error')!r}, not a reset"
    return None


def _link_report(session: Session) -> list[dict[str, Any]]:
    report = []
    for index, port in enumerate(session.ports):
        entry: dict[str, Any] = {"path": index + 1, "tun": port.stats.as_dict()}
        for name, link in (("ours_to_peer", port.outbound), ("peer_to_ours", port.inbound)):
            if link is not None:
                entry[name] = dict(link.stats.__dict__)
        report.append(entry)
    return report
