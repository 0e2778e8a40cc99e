"""TUN devices set up as a host's interfaces: one device per address of our endpoint,
configured so that the Linux kernel of the namespace routes that address into it.

`open_tun_interfaces(["198.18.1.2/24", ...], netns=None)` makes, for each entry, a TUN
device `mptcpref<N>` in namespace `netns` (None: the current one), brings it up (MTU
1500) and gives the kernel's side of the device an address of the same prefix: the
lowest host address of the prefix that is not ours (198.18.1.1 for 198.18.1.2/24). The
kernel's connected route then sends the whole prefix, our address included, into the
device, and our endpoint (behind the TUN) answers from 198.18.1.2. A /32 (/128) entry
gives the kernel no address, only a host route to ours through the device.

Only the lab ranges are accepted (`impl.lab.netns.check_lab_network`: 198.18.0.0/15 and
fd00::/8), and two entries may not share a prefix. Closing an interface closes the fd,
which removes the device with its address and routes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from impl.io.tun import TunDevice, in_netns
from impl.lab.netns import check_lab_network

__all__ = ["TunInterface", "kernel_side_address", "open_tun_interfaces", "parse_interface",
           "parse_interfaces"]

MTU = 1500
TXQUEUELEN = 1000
IFA_F_NODAD = 0x02  # IPv6: no duplicate address detection (it would hold the address back)

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass
class TunInterface:
    """One TUN device and our address behind it."""

    tun: TunDevice
    address: str  # ours
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    kernel_address: str | None  # the kernel's address on the device, if any

    @property
    def label(self) -> str:
        return self.tun.name

    def close(self) -> None:
        self.tun.close()


def parse_interface(text: str) -> Interface:
    """"198.18.1.2/24" (a bare address means /32 or /128), checked against the lab
    ranges; ValueError with a readable message otherwise."""
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(f"not an address with prefix length: {text!r}") from None
    check_lab_network(interface)
    network = interface.network
    if network.num_addresses > 2 and interface.ip in (network.network_address,
                                                      network.broadcast_address):
        raise ValueError(f"{text}: the network or broadcast address is not a host address")
    return interface


def parse_interfaces(addresses: Sequence[str]) -> list[Interface]:
    """Every entry parsed (`parse_interface`), at least one, no two sharing a prefix."""
    interfaces = [parse_interface(text) for text in addresses]
    if not interfaces:
        raise ValueError("give at least one address")
    networks = [i.network for i in interfaces]
    for index, network in enumerate(networks):
        for other in networks[:index]:
            if network.version == other.version and network.overlaps(other):
                raise ValueError(f"{network} and {other} overlap: one prefix per address")
    return interfaces


def kernel_side_address(interface: Interface):
    """The lowest host address of the prefix that is not ours (None for /32 and /128)."""
    network = interface.network
    if network.num_addresses == 1:
        return None
    hosts = network.hosts() if network.num_addresses > 2 else iter(network)
    for candidate in hosts:
        if candidate != interface.ip:
            return candidate
    return None


def open_tun_interfaces(addresses: Sequence[str], netns: str | None = None) -> list[TunInterface]:
    """Make and configure one TUN device per address (module docstring)."""
    interfaces = parse_interfaces(addresses)
    opened: list[TunInterface] = []
    try:
        for interface in interfaces:
            tun = TunDevice("mptcpref%d", netns=netns)
            kernel = kernel_side_address(interface)
            opened.append(TunInterface(tun, str(interface.ip), interface.network,
                                       None if kernel is None else str(kernel)))
            _configure(tun.name, interface, kernel, netns)
    except BaseException:
        for interface in opened:
            interface.close()
        raise
    return opened


def _configure(ifname: str, interface: Interface, kernel, netns: str | None) -> None:
    from pyroute2 import IPRoute

    with in_netns(netns):
        ipr = IPRoute()
    try:
        index = ipr.link_lookup(ifname=ifname)[0]
        ipr.link("set", index=index, state="up", mtu=MTU, txqlen=TXQUEUELEN)
        if kernel is not None:
            extra = {"flags": IFA_F_NODAD} if interface.version == 6 else {}
            ipr.addr("add", index=index, address=str(kernel),
                     prefixlen=interface.network.prefixlen, **extra)
        else:
            ipr.route("add", dst=f"{interface.ip}/{interface.max_prefixlen}", oif=index)
    finally:
        ipr.close()
