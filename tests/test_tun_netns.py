"""Lab namespaces (impl.lab.netns) and the TUN driver (impl.io.tun), against the kernel.

Packets in these tests are built and read with scapy, an implementation independent of
ours, so a bug in our codec cannot hide a bug in the driver.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import select
import socket
import time

import pytest
from scapy.layers.inet import IP, UDP

from impl.io.tun import TunDevice, current_netns_inode, in_netns
from impl.lab.netns import LabAddressError, NetworkNamespace, check_lab_network, list_namespaces

pytestmark = pytest.mark.netns

WAIT = 2.0  # seconds: upper bound on any wait for a packet


def _tun_name() -> str:
    # Unique, so "absent from the root namespace" cannot be confused with another device.
    return f"mrt{secrets.token_hex(3)}"


def _read_matching(tun: TunDevice, predicate, timeout: float = WAIT) -> bytes:  # noqa: ANN001
    """The first packet from the TUN for which predicate(scapy IP) holds; the device also
    carries IPv6 router solicitations and MLD reports, which are skipped."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([tun], [], [], left)
        if not ready:
            break
        while (packet := tun.read()) is not None:
            if packet[0] >> 4 == 4 and predicate(IP(packet)):
                return packet
    raise AssertionError(f"no matching packet on {tun.name} within {timeout}s")


def test_namespace_exists_inside_and_is_gone_after() -> None:
    with NetworkNamespace() as ns:
        assert ns.name.startswith("mptcpref-")
        assert ns.name in list_namespaces()
        assert ns.links() == ["lo"]
        assert "UP" in ns.run("ip", "-br", "link", "show", "lo").stdout
    assert ns.name not in list_namespaces()


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_namespace_is_removed_when_the_body_raises(error: BaseException) -> None:
    with pytest.raises(type(error)):
        with NetworkNamespace() as ns:
            name = ns.name
            raise error
    assert name not in list_namespaces()


def test_in_netns_returns_to_the_original_namespace(netns: NetworkNamespace) -> None:
    before = current_netns_inode()
    with pytest.raises(ValueError):
        with in_netns(netns.name):
            assert current_netns_inode() == os.stat(f"/run/netns/{netns.name}").st_ino
            raise ValueError
    assert current_netns_inode() == before


def test_socket_created_in_netns_stays_there(netns: NetworkNamespace) -> None:
    netns.add_address("lo", "198.18.7.1/32")
    with netns.entered():
        listener = socket.create_server(("198.18.7.1", 0))
    # Outside the block the thread is back in the root namespace, which has no 198.18.7.1,
    # yet the listener still works inside the lab namespace.
    with listener:
        with netns.entered():
            client = socket.create_connection(listener.getsockname(), timeout=WAIT)
        with client:
            listener.settimeout(WAIT)
            accepted, peer = listener.accept()
            accepted.close()
        assert peer[0] == "198.18.7.1"


def test_tun_device_lives_in_the_namespace_only(netns: NetworkNamespace) -> None:
    name = _tun_name()
    with TunDevice(name, netns=netns.name) as tun:
        assert tun.name == name
        assert name in netns.links()
        with pytest.raises(OSError):
            socket.if_nametoindex(name)  # not in the root namespace
    assert name not in netns.links()  # a non-persistent TUN goes away with its fd
    assert tun.closed


def test_tun_reads_what_the_kernel_sends_and_writes_what_it_receives(
        netns: NetworkNamespace) -> None:
    with TunDevice(_tun_name(), netns=netns.name) as tun:
        netns.add_address(tun.name, "198.18.0.1/24")
        netns.set_link_up(tun.name)
        with netns.entered():
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with udp:
            udp.bind(("198.18.0.1", 0))
            udp.settimeout(WAIT)
            port = udp.getsockname()[1]

            # kernel -> TUN: a datagram to the (absent) peer 198.18.0.2 leaves by the TUN.
            udp.sendto(b"to the tun", ("198.18.0.2", 9))
            raw = _read_matching(tun, lambda ip: UDP in ip and ip[UDP].dport == 9)
            packet = IP(raw)
            assert (packet.src, packet.dst) == ("198.18.0.1", "198.18.0.2")
            assert bytes(packet[UDP].payload) == b"to the tun"

            # TUN -> kernel: a datagram written to the fd is delivered to the socket.
            tun.write(bytes(IP(src="198.18.0.2", dst="198.18.0.1") /
                            UDP(sport=9, dport=port) / b"from the tun"))
            data, sender = udp.recvfrom(100)
            assert (data, sender) == (b"from the tun", ("198.18.0.2", 9))


def test_tun_read_returns_none_when_nothing_waits(netns: NetworkNamespace) -> None:
    with TunDevice(_tun_name(), netns=netns.name) as tun:
        assert tun.read() is None
    with pytest.raises(ValueError):
        tun.fileno()


@pytest.mark.parametrize("address", ["10.0.0.1/24", "192.168.1.1/24", "198.20.0.1/24",
                                     "2001:db8::1/64", "fe80::1/64", "8.8.8.8"])
def test_addresses_outside_the_lab_ranges_are_refused(netns: NetworkNamespace,
                                                      address: str) -> None:
    with pytest.raises(LabAddressError, match="outside the lab ranges"):
        netns.add_address("lo", address)
    with pytest.raises(LabAddressError):
        netns.add_route(address if "/" in address else f"{address}/32", ifname="lo")
    with pytest.raises(LabAddressError):
        netns.add_route("198.18.9.0/24", gateway=address.split("/")[0])


def test_lab_ranges_are_accepted(netns: NetworkNamespace) -> None:
    assert check_lab_network("198.19.255.1/24") == ipaddress.ip_network("198.19.255.0/24")
    assert check_lab_network("fd12::1/64") == ipaddress.ip_network("fd12::/64")
    with pytest.raises(LabAddressError):
        check_lab_network("198.18.0.0/14")  # wider than the lab range
    netns.add_address("lo", "fd00::1/128")
    assert "fd00::1" in netns.run("ip", "-6", "addr", "show", "lo").stdout


def test_veth_between_two_namespaces(netns: NetworkNamespace) -> None:
    with NetworkNamespace() as other:
        netns.add_veth("va", other, "vb")
        assert "va" in netns.links() and "vb" in other.links()
        netns.add_address("va", "198.18.3.1/24")
        other.add_address("vb", "198.18.3.2/24")
        netns.set_link_up("va")
        other.set_link_up("vb")
        with other.entered():
            server = socket.create_server(("198.18.3.2", 0))
        with server, netns.entered():
            client = socket.create_connection(server.getsockname(), timeout=WAIT)
        client.close()
