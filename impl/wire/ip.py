"""IPv4 (RFC 791) and IPv6 (RFC 8200) fixed headers: parse and emit.

Only what a TCP endpoint on a TUN device needs: the header fields as typed values and a
`memoryview` of the payload, cut to the length the header declares (trailing link-layer
padding is dropped, a declared length past the buffer is an error). IPv4 options are
kept as raw bytes so a parsed header re-emits byte for byte; IPv6 extension headers are
not walked (`next_header` says what follows and the caller decides).

Fragments are represented (`more_fragments`, `fragment_offset`) but never reassembled:
TCP over our TUN devices sets DF, and a fragment reaching `parse_packet` is rejected there.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from .checksum import internet_checksum
from .errors import BytesLike, WireError, byte_view, check_bool, check_bytes, check_uint

__all__ = ["IPv4Header", "IPv6Header", "IpHeader", "parse_ip", "to_address"]

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
IPV4_MIN_HEADER = 20
IPV6_HEADER = 40


def to_address(
    field: str, value: object, version: int | None = None
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An `ipaddress` object from an address object or its text form, else `WireError`."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        address = value
    elif isinstance(value, str):
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise WireError(field, -1, f"{value!r} is not an IP address") from None
    else:
        raise WireError(field, -1, f"must be an IP address, got {type(value).__name__}")
    if version is not None and address.version != version:
        raise WireError(field, -1, f"must be an IPv{version} address, got {address}")
    return address


@dataclass(frozen=True, slots=True)
class IPv4Header:
    """An IPv4 header (RFC 791 section 3.1); the checksum is computed on emit."""

    src: ipaddress.IPv4Address
    dst: ipaddress.IPv4Address
    protocol: int = 6
    ttl: int = 64
    identification: int = 0
    tos: int = 0
    dont_fragment: bool = True
    more_fragments: bool = False
    fragment_offset: int = 0  # in units of 8 bytes, as on the wire
    options: bytes = b""  # raw IPv4 options, a multiple of 4 bytes, at most 40

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", to_address("ipv4.src", self.src, 4))
        object.__setattr__(self, "dst", to_address("ipv4.dst", self.dst, 4))
        check_uint("ipv4.protocol", self.protocol, 8)
        check_uint("ipv4.ttl", self.ttl, 8)
        check_uint("ipv4.identification", self.identification, 16)
        check_uint("ipv4.tos", self.tos, 8)
        check_bool("ipv4.dont_fragment", self.dont_fragment)
        check_bool("ipv4.more_fragments", self.more_fragments)
        check_uint("ipv4.fragment_offset", self.fragment_offset, 13)
        options = check_bytes("ipv4.options", self.options)
        if len(options) % 4 or len(options) > 40:
            raise WireError("ipv4.options", -1, "must be a multiple of 4 bytes, at most 40")
        object.__setattr__(self, "options", options)

    @property
    def header_length(self) -> int:
        return IPV4_MIN_HEADER + len(self.options)

    @classmethod
    def parse(
        cls, data: BytesLike, verify_checksum: bool = True
    ) -> tuple[IPv4Header, memoryview]:
        """The header and a view of the payload (total length honoured, options kept)."""
        view = byte_view(data)
        if len(view) < IPV4_MIN_HEADER:
            raise WireError("ipv4.header", 0, f"truncated: {len(view)} bytes, need 20")
        (
            version_ihl, tos, total_length, identification, flags_fragment,
            ttl, protocol, _checksum, src, dst,
        ) = _IPV4.unpack_from(view)
        if version_ihl >> 4 != 4:
            raise WireError("ipv4.version", 0, f"is {version_ihl >> 4}, expected 4")
        header_length = (version_ihl & 0x0F) * 4
        if header_length < IPV4_MIN_HEADER:
            raise WireError("ipv4.ihl", 0, f"{header_length} bytes is shorter than 20")
        if header_length > len(view):
            raise WireError("ipv4.ihl", 0, f"{header_length} bytes runs past {len(view)}")
        if total_length < header_length:
            raise WireError(
                "ipv4.total_length", 2, f"{total_length} is shorter than the header"
            )
        if total_length > len(view):
            raise WireError(
                "ipv4.total_length", 2, f"{total_length} runs past the {len(view)} bytes"
            )
        if verify_checksum and internet_checksum(view[:header_length]) != 0:
            raise WireError("ipv4.checksum", 10, "does not verify")
        # The reserved flag bit (0x8000, RFC 791) is ignored as receivers must.
        header = cls(
            src=ipaddress.IPv4Address(src),
            dst=ipaddress.IPv4Address(dst),
            protocol=protocol,
            ttl=ttl,
            identification=identification,
            tos=tos,
            dont_fragment=bool(flags_fragment & 0x4000),
            more_fragments=bool(flags_fragment & 0x2000),
            fragment_offset=flags_fragment & 0x1FFF,
            options=bytes(view[IPV4_MIN_HEADER:header_length]),
        )
        return header, view[header_length:total_length]

    def emit(self, payload_length: int) -> bytes:
        """The header bytes, checksum filled in, for a payload of `payload_length` bytes."""
        total_length = self.header_length + payload_length
        if payload_length < 0 or total_length > 0xFFFF:
            raise WireError("ipv4.total_length", -1, f"{total_length} does not fit 16 bits")
        flags_fragment = (
            (0x4000 if self.dont_fragment else 0)
            | (0x2000 if self.more_fragments else 0)
            | self.fragment_offset
        )
        header = bytearray(
            _IPV4.pack(
                0x40 | self.header_length // 4, self.tos, total_length, self.identification,
                flags_fragment, self.ttl, self.protocol, 0, self.src.packed, self.dst.packed,
            )
            + self.options
        )
        header[10:12] = internet_checksum(header).to_bytes(2, "big")
        return bytes(header)


@dataclass(frozen=True, slots=True)
class IPv6Header:
    """An IPv6 fixed header (RFC 8200 section 3)."""

    src: ipaddress.IPv6Address
    dst: ipaddress.IPv6Address
    next_header: int = 6
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "src", to_address("ipv6.src", self.src, 6))
        object.__setattr__(self, "dst", to_address("ipv6.dst", self.dst, 6))
        check_uint("ipv6.next_header", self.next_header, 8)
        check_uint("ipv6.hop_limit", self.hop_limit, 8)
        check_uint("ipv6.traffic_class", self.traffic_class, 8)
        check_uint("ipv6.flow_label", self.flow_label, 20)

    @property
    def protocol(self) -> int:
        """The upper-layer protocol, named as in IPv4 so callers need not branch."""
        return self.next_header

    @property
    def ttl(self) -> int:
        return self.hop_limit

    @property
    def header_length(self) -> int:
        return IPV6_HEADER

    @classmethod
    def parse(
        cls, data: BytesLike, verify_checksum: bool = True
    ) -> tuple[IPv6Header, memoryview]:
        """The header and a view of the payload. IPv6 has no header checksum, so
        `verify_checksum` is accepted for symmetry and ignored."""
        del verify_checksum
        view = byte_view(data)
        if len(view) < IPV6_HEADER:
            raise WireError("ipv6.header", 0, f"truncated: {len(view)} bytes, need 40")
        first_word, payload_length, next_header, hop_limit, src, dst = _IPV6.unpack_from(view)
        if first_word >> 28 != 6:
            raise WireError("ipv6.version", 0, f"is {first_word >> 28}, expected 6")
        # A payload length of 0 would announce a jumbogram (RFC 2675) only together with a
        # hop-by-hop option; without one it is an empty payload, which is what we read.
        if IPV6_HEADER + payload_length > len(view):
            raise WireError(
                "ipv6.payload_length",
                4,
                f"{payload_length} runs past the {len(view) - IPV6_HEADER} bytes after the header",
            )
        header = cls(
            src=ipaddress.IPv6Address(src),
            dst=ipaddress.IPv6Address(dst),
            next_header=next_header,
            hop_limit=hop_limit,
            traffic_class=(first_word >> 20) & 0xFF,
            flow_label=first_word & 0xFFFFF,
        )
        return header, view[IPV6_HEADER : IPV6_HEADER + payload_length]

    def emit(self, payload_length: int) -> bytes:
        """The 40 header bytes for a payload of `payload_length` bytes."""
        if not 0 <= payload_length <= 0xFFFF:
            raise WireError(
                "ipv6.payload_length", -1, f"{payload_length} does not fit 16 bits"
            )
        first_word = (6 << 28) | (self.traffic_class << 20) | self.flow_label
        return _IPV6.pack(
            first_word, payload_length, self.next_header, self.hop_limit,
            self.src.packed, self.dst.packed,
        )


IpHeader = IPv4Header | IPv6Header


def parse_ip(
    data: BytesLike, verify_checksum: bool = True
) -> tuple[IPv4Header | IPv6Header, memoryview]:
    """Parse an IPv4 or IPv6 packet, chosen by the version nibble of the first byte."""
    view = byte_view(data)
    if len(view) < 1:
        raise WireError("ip.version", 0, "empty packet")
    version = view[0] >> 4
    if version == 4:
        return IPv4Header.parse(view, verify_checksum)
    if version == 6:
        return IPv6Header.parse(view, verify_checksum)
    raise WireError("ip.version", 0, f"is {version}, expected 4 or 6")
