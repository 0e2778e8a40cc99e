"""Lab topologies (impl.lab.topology): what they build inside their namespaces, that they
route each path through its own TUN and link, and that they leave nothing behind."""

from __future__ import annotations

import os
import re

import pytest

from impl.lab.netns import list_namespaces
from impl.lab.run import LabRunSpec, run_lab
from impl.lab.topology import KernelPairLab, KernelPeerLab, LabPath, PathSpec, RefPairLab
from impl.lab.traffic import KernelTraffic

pytestmark = pytest.mark.netns


def _mine() -> list[str]:
    return [name for name in list_namespaces() if name.startswith(f"mptcpref-{os.getpid()}-")]


def test_path_addresses_follow_the_plan() -> None:
    assert str(LabPath(3, ipv6=False).server) == "198.18.3.1"
    assert str(LabPath(3, ipv6=False).client) == "198.18.3.2"
    assert str(LabPath(10, ipv6=True).server) == "fd00:0:0:a::1"
    assert LabPath(1, ipv6=True).interface(2) == "fd00:0:0:1::2/64"


def test_rate_limited_paths_get_a_bounded_queue() -> None:
    assert PathSpec().link_config().queue_limit is None
    config = PathSpec(delay=0.05, rate=100e6).link_config()
    assert config.rate == 100e6 and config.queue_limit == int(100e6 / 8 * 0.12)


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_kernel_peer_lab_with_three_paths(ipv6: bool) -> None:
    with KernelPeerLab([PathSpec()] * 3, ipv6=ipv6) as lab:
        namespace = lab.namespace
        assert sorted(namespace.links()) == ["lo", "path1", "path2", "path3"]
        family = "-6" if ipv6 else "-4"
        for path, tun in zip(lab.paths, lab.tuns, strict=True):
            shown = namespace.run("ip", family, "addr", "show", tun.name).stdout
            assert path.interface(1) in shown and "mtu 1500" in shown
            # Source routing: a rule per kernel address, its own table via its own TUN.
            rules = namespace.run("ip", family, "rule").stdout
            assert re.search(rf"from {path.server} lookup {100 + path.index}\b", rules)
            table = namespace.run("ip", family, "route", "show", "table",
                                  str(100 + path.index)).stdout
            assert f"dev {tun.name}" in table
        if not ipv6:
            assert namespace.run("sysctl", "-n", "net.ipv4.conf.all.rp_filter").stdout \
                .strip() == "0"
        name = namespace.name
    assert name not in list_namespaces()


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_labs_are_removed_when_the_body_raises(error: BaseException) -> None:
    with pytest.raises(type(error)):
        with KernelPairLab([PathSpec()] * 2) as lab:
            names = [lab.server.name, lab.client.name]
            forwarder = lab.forwarder
            raise error
    assert not set(names) & set(list_namespaces())
    assert forwarder.poll() is not None  # the forwarder process is gone too
    assert not _mine()


def test_kernel_path_manager_is_configured_through_pyroute2() -> None:
    with KernelPeerLab([PathSpec()] * 2) as lab:
        lab.mptcp_limits(subflows=4, add_addr_accepted=3)
        lab.mptcp_endpoint(lab.kernel_addresses[1], flags=1, endpoint_id=7, ifname="path2")
        limits = lab.namespace.run("ip", "mptcp", "limits", "show").stdout
        assert "subflows 4" in limits and "add_addr_accepted 3" in limits
        endpoints = lab.namespace.run("ip", "mptcp", "endpoint", "show").stdout
        assert re.search(r"198\.18\.2\.1 id 7 signal dev path2", endpoints), endpoints


def test_forwarder_applies_the_link_delay_between_two_kernels() -> None:
    # 20 ms each way: connect() returns after one round trip, so at least 40 ms.
    with KernelPairLab([PathSpec(delay=0.02)]) as lab:
        target = str(lab.paths[0].server)
        sink = KernelTraffic(lab.server, "sink", address=target, port=5201, listen=True,
                             timeout=10)
        sink.wait_listening()
        source = KernelTraffic(lab.client, "source", address=target, port=5201,
                               listen=False, size=1000, timeout=10)
        sent, received = source.wait(15), sink.wait(5)
        stats = lab.stop_forwarder()
    assert sent["ok"] and received["ok"] and received["sha256"] == sent["sha256"]
    handshake = sent["established"] - sent["started"]
    assert 0.04 <= handshake < 0.5, handshake
    by_label = {entry["label"]: entry for entry in stats}
    assert by_label["path1:a>b"]["forwarded"] >= 3  # SYN, ACK + data, FIN, ...
    assert by_label["path1:b>a"]["forwarded"] >= 3


def test_kernel_to_kernel_transfer_follows_source_routing() -> None:
    # The client connects from its path-2 address to the server's path-1 address: its
    # source rule sends the SYN over path 2, the server's answers leave from 198.18.1.1
    # over path 1. Each direction crosses exactly the path its source address selects.
    with KernelPairLab([PathSpec(), PathSpec(loss=0.01)]) as lab:
        one, two = lab.paths
        sink = KernelTraffic(lab.server, "sink", address=str(one.server), port=5201,
                             listen=True, timeout=30)
        sink.wait_listening()
        source = KernelTraffic(lab.client, "source", address=str(one.server), port=5201,
                               listen=False, bind=str(two.client), size=4 << 20, seed=3,
                               timeout=30)
        received, sent = sink.wait(40), source.wait(10)
        stats = {entry["label"]: entry for entry in lab.stop_forwarder()}
    assert received["ok"] and sent["ok"], (received, sent)
    assert received["sha256"] == sent["sha256"] and received["bytes"] == 4 << 20
    assert received["peer"].startswith("198.18.2.2:")
    # (The other direction of each path carries at most an IPv6 router solicitation.)
    assert stats["path2:a>b"]["bytes"] > 4 << 20 and stats["path1:a>b"]["bytes"] < 1000
    assert stats["path1:b>a"]["forwarded"] > 100 and stats["path2:b>a"]["bytes"] < 1000
    assert stats["path2:a>b"]["link"]["lost"] > 0


def test_ref_pair_lab_routes_between_our_two_endpoints() -> None:
    with RefPairLab([PathSpec()] * 2) as lab:
        routes = lab.router.run("ip", "route").stdout
        assert "198.18.2.2 dev cli2" in routes and "198.18.1.1 dev srv1" in routes
        assert lab.router.run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"


@pytest.mark.parametrize(("direction", "ipv6"), [("up", False), ("down", True)],
                         ids=["up-ipv4", "down-ipv6"])
def test_ref_to_ref_transfer(direction: str, ipv6: bool) -> None:
    # Both MSS options must fit the 1500-byte MTU of the router's TUNs (1440 over IPv6),
    # or the router drops every full-sized segment.
    report = run_lab(LabRunSpec(peer="ref", direction=direction, size=2 << 20, ipv6=ipv6,
                                paths=[PathSpec(delay=0.002, loss=0.01)], timeout=60))
    assert report["ok"] and report["sha256_match"], report["reason"]
    assert report["peer_side"]["eof"] and report["ours"]["eof"]
    assert not _mine()
