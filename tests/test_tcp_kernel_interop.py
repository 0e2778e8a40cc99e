"""Our TCP against Linux's, over TUN devices in a fresh namespace, through the link model.

The matrix: both directions x IPv4/IPv6 x {clean, 1% loss each way} at 1 MiB and 8 MiB,
and one 64 MiB clean transfer per direction; the receiver's SHA-256 must equal the
sender's every time and both ends must close in order. The full 1..64 MiB sweep is
`bench/interop_matrix.py`. Then the ways a connection ends: graceful close with either
side first, abortive close (RST) by either side, and a connect to a closed port in both
directions (answered with RST, RFC 9293 3.10.7.1).
"""

from __future__ import annotations

import os

import pytest

from impl.io.sim import TcpHost
from impl.lab.netns import NAME_PREFIX, list_namespaces
from impl.lab.run import LabRunSpec, kernel_session, run_lab
from impl.lab.topology import PathSpec
from impl.lab.traffic import KernelTraffic
from impl.tcp.state import TcpState

pytestmark = pytest.mark.netns

MiB = 1 << 20
CLEAN = PathSpec()
LOSSY = PathSpec(loss=0.01)


def _summary(report: dict) -> str:
    keys = ("ok", "reason", "bytes", "sha256_match", "seconds", "goodput_mbit")
    return ", ".join(f"{key}={report.get(key)}" for key in keys) + \
        f"; ours={report['ours']}; peer={report['peer_side']}"


def _transfer(**spec: object) -> dict:
    report = run_lab(LabRunSpec(**spec))  # type: ignore[arg-type]
    assert report["ok"], _summary(report)
    assert report["sha256_match"], _summary(report)
    assert report["bytes"] == spec["size"]
    return report


@pytest.mark.parametrize("size", [1 * MiB, 8 * MiB], ids=["1MiB", "8MiB"])
@pytest.mark.parametrize("path", [CLEAN, LOSSY], ids=["clean", "loss1"])
@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_transfer_with_linux_arrives_intact(direction: str, ipv6: bool, path: PathSpec,
                                            size: int) -> None:
    report = _transfer(peer="kernel", direction=direction, ipv6=ipv6, paths=[path],
                       size=size, seed=size + int(ipv6), timeout=60)
    subflow, = report["subflows"]
    if direction == "up":
        assert subflow["bytes_sent"] == size
    else:
        assert subflow["bytes_received"] == size
    if path.loss:
        # The link really dropped packets, and the sender really repaired them.
        link = report["links"][0]
        assert link["ours_to_peer"]["lost"] + link["peer_to_ours"]["lost"] > 0
    counters = report["kernel_mib_delta"]
    assert counters.get("TcpPassiveOpens") == 1
    if direction == "down" and path.loss and report["links"][0]["peer_to_ours"]["lost"]:
        assert counters.get("TcpRetransSegs", 0) > 0


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["up", "down"])
def test_64_mib_clean_transfer(direction: str) -> None:
    _transfer(peer="kernel", direction=direction, size=64 * MiB, seed=64, timeout=90)


@pytest.mark.parametrize("size", [0, 1, 1449])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_tiny_transfers(direction: str, size: int) -> None:
    # Nothing at all (SYN, FIN, FIN), one byte (data and FIN on one segment), one full
    # segment plus one byte; with 10 ms each way so every segment is its own round.
    _transfer(peer="kernel", direction=direction, size=size,
              paths=[PathSpec(delay=0.01)], timeout=20)


@pytest.mark.parametrize("direction", ["up", "down"])
def test_linux_connects_to_our_listener(direction: str) -> None:
    # Our passive open (RFC 9293 3.10.7.2) answering Linux's SYN with all its options.
    report = _transfer(peer="kernel", direction=direction, size=MiB, initiator="peer",
                       timeout=30)
    assert report["kernel_mib_delta"].get("TcpActiveOpens") == 1


BARE_LINUX = {"net.ipv4.tcp_sack": 0, "net.ipv4.tcp_timestamps": 0,
              "net.ipv4.tcp_window_scaling": 0}


@pytest.mark.parametrize("direction", ["up", "down"])
@pytest.mark.parametrize(("sysctls", "initiator"), [(BARE_LINUX, "ref"),
                                                    ({"net.ipv4.tcp_ecn": 1}, "peer")],
                         ids=["no-sack-ts-wscale", "linux-asks-for-ecn"])
def test_linux_without_options_or_with_ecn(direction: str, sysctls: dict,
                                           initiator: str) -> None:
    # A Linux that offers no SACK, timestamps or window scaling gets none (RFC 2018,
    # RFC 7323: each only if both SYNs carry it), and recovery falls back to NewReno; a
    # Linux asking for ECN on its SYN (ECE+CWR, RFC 3168 6.1.1) gets a SYN/ACK without
    # ECE, so it never sets ECT on data.
    _transfer(peer="kernel", direction=direction, size=2 * MiB, sysctls=sysctls,
              initiator=initiator, paths=[PathSpec(loss=0.02, delay=0.002)], timeout=60)


# -- how connections end ------------------------------------------------------------------


def test_graceful_close_we_close_first() -> None:
    # We send and close: FIN-WAIT-1/2, the kernel reads to EOF and closes, we end in
    # TIME-WAIT (the active closer, RFC 9293 3.6); the kernel reaches CLOSED via LAST-ACK.
    report = _transfer(peer="kernel", direction="up", size=256 * 1024, timeout=30)
    assert report["ours"]["state"] == str(TcpState.TIME_WAIT)
    assert report["ours"]["eof"] and report["peer_side"]["eof"]
    assert "TcpEstabResets" not in report["kernel_mib_delta"]


def test_graceful_close_linux_closes_first() -> None:
    # The kernel sends and shuts down; we see its FIN after the data (CLOSE-WAIT), close,
    # and end CLOSED from LAST-ACK; the kernel sees our FIN (EOF): no reset anywhere.
    report = _transfer(peer="kernel", direction="down", size=256 * 1024, timeout=30)
    assert report["ours"]["state"] == str(TcpState.CLOSED)
    assert report["ours"]["close_reason"] == "closed"
    assert report["peer_side"]["eof"]
    assert "TcpEstabResets" not in report["kernel_mib_delta"]


@pytest.mark.parametrize("direction", ["up", "down"])
def test_we_abort_and_linux_sees_a_reset(direction: str) -> None:
    report = run_lab(LabRunSpec(peer="kernel", direction=direction, size=2 * MiB,
                                close="abort-ref", abort_after=MiB, timeout=30))
    assert report["ok"], _summary(report)
    assert report["ours"]["aborted"] and report["ours"]["close_reason"] == "aborted"
    assert report["peer_side"]["error"] == "reset"
    assert report["kernel_mib_delta"].get("TcpEstabResets", 0) >= 1


@pytest.mark.parametrize("direction", ["up", "down"])
def test_linux_aborts_and_we_see_a_reset(direction: str) -> None:
    report = run_lab(LabRunSpec(peer="kernel", direction=direction, size=2 * MiB,
                                close="abort-peer", abort_after=MiB, timeout=30))
    assert report["ok"], _summary(report)
    assert report["peer_side"]["aborted"]
    assert report["ours"]["error"] == "reset"
    assert report["ours"]["close_reason"] == "reset"
    assert report["kernel_mib_delta"].get("TcpOutRsts", 0) >= 1


def test_connect_to_a_closed_linux_port_is_refused() -> None:
    with kernel_session([CLEAN]) as session:
        before = session.counters()
        path = session.lab.paths[0]
        connection = session.host.connect(path.server, 9, 0.0)
        assert session.driver.run(lambda: connection.is_closed, timeout=5)
        assert connection.close_reason == "refused"
        delta = session.counters()
        assert delta["TcpOutRsts"] - before["TcpOutRsts"] == 1
        assert delta["TcpAttemptFails"] == before["TcpAttemptFails"]  # a server-side RST


def test_linux_connecting_to_our_closed_port_is_refused() -> None:
    with kernel_session([CLEAN]) as session:
        host: TcpHost = session.host
        path = session.lab.paths[0]
        kernel = KernelTraffic(session.lab.namespace, "source", address=str(path.client),
                               port=9, listen=False, size=1, timeout=5)
        try:
            session.driver.watch(kernel.process.stdout, kernel.on_readable)
            assert session.driver.run(lambda: kernel.poll() is not None, timeout=10)
            assert kernel.poll()["error"] == "refused"
        finally:
            kernel.stop()
        assert host.resets_sent == 1
        assert not host.connections


def test_no_lab_namespace_outlives_the_runs() -> None:
    # Every test above created and removed namespaces; none of this process's remain.
    mine = f"{NAME_PREFIX}{os.getpid()}-"
    run_lab(LabRunSpec(peer="kernel", direction="up", size=1000, timeout=20))
    assert not [name for name in list_namespaces() if name.startswith(mine)]
