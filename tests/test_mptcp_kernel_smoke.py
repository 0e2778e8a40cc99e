"""Our MPTCP client against the Linux kernel's MPTCP listener (IPPROTO_MPTCP) over a
TUN device in a fresh namespace: MP_CAPABLE v1, 1 MiB with DSS mappings and DATA_ACKs,
DATA_FIN both ways; the kernel's SHA-256 of what it received must equal ours and its
MPTcpExt counters must show an MPTCP connection, not a fallback.

Uses the lab (`impl.lab.topology.KernelPeerLab`, `impl.lab.traffic.KernelTraffic`) and
the TUN driver (`impl.io.tun_loop.TunDriver`) as they are; `tests/mptcp_sim.SimMptcpHost`
adapts our host to the driver's endpoint interface.
"""

from __future__ import annotations

import time

import pytest

from impl.io.tun_loop import TunDriver
from impl.lab.netns import list_namespaces
from impl.lab.run import our_config
from impl.lab.topology import KernelPeerLab, PathSpec, kernel_counter_delta
from impl.lab.traffic import KernelTraffic
from impl.mptcp.connection import MptcpConfig
from impl.mptcp.host import MptcpHost

from .mptcp_sim import SimMptcpHost, payload, sha256

pytestmark = pytest.mark.netns

PORT = 5201
SIZE = 1 << 20


def test_our_client_sends_1_mib_to_a_kernel_mptcp_listener() -> None:
    data = payload(SIZE, seed=42)
    with KernelPeerLab([PathSpec()], seed=0) as lab:
        namespace = lab.namespace.name
        driver = TunDriver()
        kernel = None
        try:
            host = MptcpHost(lab.our_addresses[0], seed=7)
            driver.add_endpoint(SimMptcpHost(host))
            outbound, inbound = lab.links(0)
            driver.attach(lab.tuns[0], [lab.our_addresses[0]], label="path1",
                          outbound=outbound, inbound=inbound)
            kernel = KernelTraffic(lab.namespace, "sink", address=lab.kernel_addresses[0],
                                   port=PORT, listen=True, size=SIZE, proto="mptcp",
                                   timeout=60)
            driver.watch(kernel.process.stdout, kernel.on_readable)
            kernel.wait_listening()
            before = lab.counters()
            config = MptcpConfig(tcp=our_config(False))
            connection = host.connect(lab.kernel_addresses[0], PORT, time.monotonic(), config)
            connection.send(data)
            connection.close()
            done = driver.run(lambda: kernel.poll() is not None and connection.is_closed,
                              timeout=60)
            result = kernel.poll()
            assert result is not None, f"no kernel result: {kernel.stderr()}"
            assert result.get("bytes") == SIZE, result
            assert result.get("sha256") == sha256(data)
            assert result.get("eof") is True  # our DATA_FIN closed the kernel's stream
            assert done, (connection.data_state, [sf.tcp.state for sf in connection.subflows])
            assert not connection.fallback
            assert connection.snd_una == connection.local_idsn + 1 + SIZE + 1  # DATA_FIN acked
            assert connection.peer_closed  # the kernel's DATA_FIN reached us
            delta = kernel_counter_delta(before, lab.counters())
            assert delta.get("MPTcpExtMPCapableSYNRX") == 1, delta
            assert delta.get("MPTcpExtMPCapableACKRX") == 1, delta
            assert not delta.get("MPTcpExtMPCapableFallbackACK"), delta
            assert not delta.get("MPTcpExtDSSNotMatching"), delta
            assert host.counters["MPCapableSYNACKRX"] == 1
        finally:
            if kernel is not None:
                kernel.stop()
            driver.close()
    assert namespace not in list_namespaces()
