"""`mptcp-ref lab run --proto mptcp --peer ref`: two of our MPTCP hosts, one per side of a
`RefPairLab` (a Linux router namespace between per-path TUN devices), on one driver.

"Our endpoint" is the host at the .2 addresses (the `ours` side of the report), the peer
the host at the .1 addresses. The initiator connects to the other's path-1 address and
then joins from each of its other addresses to it (full mesh over its own addresses,
`impl.mptcp.fullmesh`, RFC 8684 3.2): subflow i leaves by path i, whose link model (delay,
loss, rate) sits on the .2 side's TUN of that path, both ways. Same report as the kernel
runs (`impl.lab.mptcp_run`), with `peer_side` our other host's application report and
`peer_counters` its MIB counters.
"""

from __future__ import annotations

import secrets
import time
import traceback
from contextlib import ExitStack
from types import SimpleNamespace
from typing import Any

from impl.io.eventlog import JsonLinesLog
from impl.io.mptcp_host import SimMptcpHost
from impl.io.pcap import PcapFile
from impl.io.tun_loop import TunDriver
from impl.lab.mptcp_run import MAX_LIMIT, MptcpApplication, subflow_report
from impl.lab.topology import RefPairLab
from impl.mptcp.connection import MptcpConfig
from impl.mptcp.fullmesh import FullMesh
from impl.mptcp.host import MptcpHost

__all__ = ["run_mptcp_with_ref"]


def run_mptcp_with_ref(spec: Any) -> dict[str, Any]:
    """One MPTCP transfer between two of our hosts as `spec` (a `LabRunSpec`) says."""
    from impl.lab.run import NotBuiltYet, _judge, _link_report, _roles, our_config

    if spec.close != "graceful":
        raise NotBuiltYet("--proto mptcp --close abort-*: not built yet")
    with ExitStack() as stack:
        logger = stack.enter_context(JsonLinesLog(str(spec.eventlog))) if spec.eventlog else None
        capture = stack.enter_context(PcapFile(spec.pcap)) if spec.pcap else None
        lab = stack.enter_context(RefPairLab(spec.paths, ipv6=spec.ipv6, seed=spec.seed))
        driver = TunDriver(pcap=capture, logger=logger, sticky=True)
        stack.callback(driver.close)
        ours_host = MptcpHost(lab.client_addresses, seed=secrets.randbits(64), logger=logger)
        peer_host = MptcpHost(lab.server_addresses, seed=secrets.randbits(64))
        driver.add_endpoint(SimMptcpHost(ours_host))
        driver.add_endpoint(SimMptcpHost(peer_host))
        ports = lab.attach(driver)
        config = MptcpConfig(checksums=bool(spec.checksums), tcp=our_config(spec.ipv6))
        our_role, peer_role = _roles(spec)
        ours = MptcpApplication(our_role, spec.size, seed=spec.seed)
        peer = MptcpApplication(peer_role, spec.size, seed=spec.seed)
        if spec.initiator == "ref":
            connector, listener, connector_app = ours_host, peer_host, ours
            own, target = lab.client_addresses, lab.server_addresses[0]
        else:
            connector, listener, connector_app = peer_host, ours_host, peer
            own, target = lab.server_addresses, lab.client_addresses[0]
        limit = max(1, min(MAX_LIMIT, len(spec.paths) if spec.kernel_limits is None
                           else spec.kernel_limits + 1))
        listener.listen(spec.port, config)
        started = time.monotonic()
        connection = connector.connect(target, spec.port, started, config)
        connector_app.attach(connection, started)
        FullMesh(own, max_subflows=limit).apply(connection, started)
        failure: str | None = None

        def step() -> bool:
            now = time.monotonic()
            for app, host in ((ours, ours_host), (peer, peer_host)):
                if app.connection is None and host.accepted:
                    app.attach(host.accepted[0], now)
                app.step(now)
            return ours.settled and peer.settled

        try:
            if not driver.run(step, timeout=spec.time_limit):
                failure = (f"timeout after {spec.time_limit:.0f}s: ours "
                           f"{ours.report()['state']}, peer {peer.report()['state']}")
        except Exception as error:
            traceback.print_exc()
            failure = f"{type(error).__name__} in our endpoint: {error}"
        finally:
            driver.drain(timeout=1.0)
        mine, theirs = ours.report(), peer.report()
        sender, receiver = (mine, theirs) if spec.direction == "up" else (theirs, mine)
        received = receiver.get("bytes", 0)
        sha_match = (sender.get("sha256") == receiver.get("sha256")
                     and sender.get("bytes") == received)
        finished = receiver.get("finished")
        seconds = finished - started if finished is not None else None
        reason = failure or _judge(spec, mine, theirs, received, sha_match)
        goodput = received * 8 / seconds / 1e6 if seconds and seconds > 0 else None
        view = SimpleNamespace(our_addresses=lab.client_addresses,
                               kernel_addresses=lab.server_addresses)
        return {
            "ok": reason is None, "reason": reason, "peer": spec.peer, "proto": "mptcp",
            "direction": spec.direction, "family": "ipv6" if spec.ipv6 else "ipv4",
            "initiator": spec.initiator, "close": spec.close, "size": spec.size,
            "bytes": received, "sha256_match": sha_match, "seconds": seconds,
            "goodput_mbit": goodput, "checksums": mine["checksums"],
            "fallback": mine["fallback"], "paths": [path.as_dict() for path in spec.paths],
            "subflows": subflow_report(ours.connection, view),
            "links": _link_report(SimpleNamespace(ports=ports)),
            "kernel_mib_delta": {}, "our_counters": ours_host.counters.snapshot(),
            "peer_counters": peer_host.counters.snapshot(), "ours": mine,
            "peer_side": theirs,
        }
