"""The Linux kernel as a peer: its counters and sysctls per namespace (impl.lab.kernel),
and a real MP_CAPABLE handshake with it over a TUN device (impl.lab.handshake)."""

from __future__ import annotations

import socket

import pytest

from impl.lab.kernel import (
    counter_delta,
    parse_proc_net_counters,
    read_counters,
    read_mptcp_counters,
    read_sysctl,
    write_sysctl,
)
from impl.lab.netns import NetworkNamespace, list_namespaces

pytestmark = pytest.mark.netns

IPPROTO_MPTCP = 262


def test_parse_proc_net_counters() -> None:
    text = "TcpExt: SyncookiesSent Foo\nTcpExt: 3 4\nMPTcpExt: MPCapableSYNRX\nMPTcpExt: 7\n"
    assert parse_proc_net_counters(text) == {
        "TcpExtSyncookiesSent": 3, "TcpExtFoo": 4, "MPTcpExtMPCapableSYNRX": 7}
    with pytest.raises(ValueError):
        parse_proc_net_counters("TcpExt: A B\nTcpExt: 1\n")


def test_counter_delta() -> None:
    before = {"a": 1, "b": 5, "gone": 2}
    after = {"a": 1, "b": 7, "new": 3}
    assert counter_delta(before, after) == {"b": 2, "gone": -2, "new": 3}
    assert counter_delta(before, after, nonzero_only=False)["a"] == 0


def test_counters_are_per_namespace(netns: NetworkNamespace) -> None:
    counters = read_mptcp_counters(netns.name)
    assert {"MPTcpExtMPCapableSYNRX", "MPTcpExtMPCapableACKRX"} <= counters.keys()
    assert all(value == 0 for value in counters.values())  # a fresh namespace counts nothing
    before = read_counters(netns.name)
    netns.add_address("lo", "198.18.7.1/32")
    with netns.entered():
        server = socket.create_server(("198.18.7.1", 0))
        client = socket.create_connection(server.getsockname(), timeout=2)
    client.close()
    server.close()
    delta = counter_delta(before, read_counters(netns.name))
    assert delta["TcpActiveOpens"] == 1 and delta["TcpPassiveOpens"] == 1


def test_kernel_mptcp_counts_its_own_loopback_connection(netns: NetworkNamespace) -> None:
    # Kernel <-> kernel over lo: one MP_CAPABLE SYN, SYN/ACK and ACK each way.
    netns.add_address("lo", "198.18.7.1/32")
    before = read_mptcp_counters(netns.name)
    with netns.entered():
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
        server.bind(("198.18.7.1", 0))
        server.listen()
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    with server, client:
        client.settimeout(2)
        server.settimeout(2)
        client.connect(server.getsockname())
        client.sendall(b"x")  # the ACK with the keys may ride on the first data
        accepted, _ = server.accept()
        with accepted:
            accepted.settimeout(2)
            assert accepted.recv(1) == b"x"
    delta = counter_delta(before, read_mptcp_counters(netns.name))
    assert delta["MPTcpExtMPCapableSYNRX"] == 1
    assert delta["MPTcpExtMPCapableSYNACKRX"] == 1
    assert delta["MPTcpExtMPCapableACKRX"] == 1


def test_sysctl_read_write_stays_in_the_namespace(netns: NetworkNamespace) -> None:
    root_value = open("/proc/sys/net/mptcp/checksum_enabled").read().strip()
    assert read_sysctl(netns.name, "net.mptcp.enabled") == "1"
    new_value = "0" if root_value == "1" else "1"
    write_sysctl(netns.name, "net.mptcp.checksum_enabled", new_value)
    assert read_sysctl(netns.name, "net.mptcp.checksum_enabled") == new_value
    assert netns.run("sysctl", "-n", "net.mptcp.checksum_enabled").stdout.strip() == new_value
    assert open("/proc/sys/net/mptcp/checksum_enabled").read().strip() == root_value


@pytest.mark.parametrize("name", ["kernel.hostname", "net/../kernel/hostname", "vm.swappiness"])
def test_only_net_sysctls_are_touched(netns: NetworkNamespace, name: str) -> None:
    with pytest.raises(ValueError):
        write_sysctl(netns.name, name, "x")


def test_netns_fixture_cleans_up() -> None:
    with NetworkNamespace() as ns:
        pass
    assert ns.name not in list_namespaces()
