"""Whole IP packets carrying TCP: what a TUN device or a pcap hands us, and what we send.

`parse_packet` peels IPv4/IPv6, then TCP, and returns the headers and a `memoryview` of
the payload (no copy, so a 64 KB GSO super-segment costs nothing extra). `build_packet`
does the reverse, choosing IPv4 or IPv6 by the address type. `WireError` offsets always
point into the buffer handed to `parse_packet`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .errors import BytesLike, WireError, byte_view
from .ip import IPv4Header, IPv6Header, parse_ip, to_address
from .tcp import TCP_PROTOCOL, TcpHeader

__all__ = ["Packet", "build_packet", "parse_packet"]


@dataclass(frozen=True, slots=True)
class Packet:
    """An IP packet carrying one TCP segment. `payload` views the parsed buffer."""

    ip: IPv4Header | IPv6Header
    tcp: TcpHeader
    payload: memoryview

    @property
    def src(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return self.ip.src

    @property
    def dst(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return self.ip.dst

    def emit(self) -> bytes:
        """The packet's bytes: IP header (checksum computed) + TCP segment (checksum
        computed) + payload."""
        segment = self.tcp.emit(self.payload, self.ip.src, self.ip.dst)
        return self.ip.emit(len(segment)) + segment


def parse_packet(data: BytesLike, verify_checksums: bool = True) -> Packet:
    """Parse an IPv4 or IPv6 packet that carries TCP.

    Rejects, with `WireError`: anything `parse_ip` or `TcpHeader.parse` rejects, a
    protocol other than TCP (IPv6 extension headers are not walked), and IPv4 fragments
    (never reassembled here; our endpoints set DF).
    """
    view = byte_view(data)
    ip, segment = parse_ip(view, verify_checksums)
    if ip.protocol != TCP_PROTOCOL:
        field = "ipv4.protocol" if isinstance(ip, IPv4Header) else "ipv6.next_header"
        raise WireError(field, 9 if isinstance(ip, IPv4Header) else 6,
                        f"is {ip.protocol}, expected TCP (6)")
    if isinstance(ip, IPv4Header) and (ip.more_fragments or ip.fragment_offset):
        raise WireError("ipv4.fragment", 6, "fragments are not reassembled")
    try:
        tcp, payload = TcpHeader.parse(segment, ip.src, ip.dst, verify_checksums)
    except WireError as error:
        raise error.shifted(ip.header_length) from None
    return Packet(ip=ip, tcp=tcp, payload=payload)


def build_packet(
    src: ipaddress.IPv4Address | ipaddress.IPv6Address | str,
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address | str,
    tcp: TcpHeader,
    payload: BytesLike = b"",
    ttl: int = 64,
) -> bytes:
    """The bytes of an IP packet from `src` to `dst` carrying `tcp` and `payload`:
    IPv4 (DF set) or IPv6 by the address type, both checksums computed."""
    source = to_address("packet.src", src)
    destination = to_address("packet.dst", dst)
    ip: IPv4Header | IPv6Header
    if isinstance(source, ipaddress.IPv4Address) and isinstance(
        destination, ipaddress.IPv4Address
    ):
        ip = IPv4Header(src=source, dst=destination, protocol=TCP_PROTOCOL, ttl=ttl)
    elif isinstance(source, ipaddress.IPv6Address) and isinstance(
        destination, ipaddress.IPv6Address
    ):
        ip = IPv6Header(src=source, dst=destination, next_header=TCP_PROTOCOL, hop_limit=ttl)
    else:
        raise WireError("packet.dst", -1, "src and dst must be the same IP version")
    segment = tcp.emit(payload, source, destination)
    return ip.emit(len(segment)) + segment
