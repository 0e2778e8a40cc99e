"""The TCP header (RFC 9293 section 3.1): parse, emit, and the checksum over the IPv4 or
IPv6 pseudo-header.

`TcpHeader.parse` takes the whole segment (header, options, payload) as the IP layer cut
it, and returns the header and a `memoryview` of the payload. `TcpHeader.emit` returns
header + options + payload with the checksum filled in. The four reserved bits of byte
12 (RFC 9293; the old NS bit / AccECN's AE among them) are ignored on parse and sent as
zero, so canonical segments have them clear.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntFlag

from .checksum import internet_checksum, pseudo_header
from .errors import BytesLike, WireError, byte_view, check_uint
from .mptcp_options import MPTCP_OPTION_TYPES, MptcpOption
from .tcp_options import TCP_OPTION_TYPES, TcpOption, emit_tcp_options, parse_tcp_options

__all__ = ["TCP_HEADER_LENGTH", "TCP_PROTOCOL", "TcpFlags", "TcpHeader"]

TCP_PROTOCOL = 6
TCP_HEADER_LENGTH = 20
_HEADER = struct.Struct("!HHIIBBHHH")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TcpFlags(IntFlag):
    """The control bits of byte 13 (RFC 9293 3.1; ECE and CWR from RFC 3168)."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


@dataclass(frozen=True, slots=True)
class TcpHeader:
    """A TCP header with its options; the checksum is not stored but computed on emit
    (and checked on parse when asked). `options` must encode to at most 40 bytes; a
    list whose encoding is not a multiple of 4 bytes gets EOL padding on emit."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int
    urgent: int = 0
    options: tuple[TcpOption, ...] = ()

    def __post_init__(self) -> None:
        check_uint("tcp.src_port", self.src_port, 16)
        check_uint("tcp.dst_port", self.dst_port, 16)
        check_uint("tcp.seq", self.seq, 32)
        check_uint("tcp.ack", self.ack, 32)
        check_uint("tcp.flags", self.flags, 8)
        if not isinstance(self.flags, TcpFlags):
            object.__setattr__(self, "flags", TcpFlags(self.flags))
        check_uint("tcp.window", self.window, 16)
        check_uint("tcp.urgent", self.urgent, 16)
        if not isinstance(self.options, tuple | list):
            raise WireError("tcp.options", -1, "must be a tuple of TCP option values")
        options = tuple(self.options)
        for option in options:
            if not isinstance(option, TCP_OPTION_TYPES):
                raise WireError("tcp.options", -1, f"{option!r} is not a TCP option value")
        object.__setattr__(self, "options", options)

    def mptcp_options(self) -> tuple[MptcpOption, ...]:
        """The MPTCP options (kind 30) among `options`, in order."""
        return tuple(option for option in self.options if isinstance(option, MPTCP_OPTION_TYPES))

    def option(self, kind: type) -> TcpOption | None:
        """The first option of class `kind` (e.g. `Dss`, `MaximumSegmentSize`), or None."""
        for option in self.options:
            if isinstance(option, kind):
                return option
        return None

    @property
    def header_length(self) -> int:
        return TCP_HEADER_LENGTH + len(emit_tcp_options(self.options))

    @classmethod
    def parse(
        cls,
        data: BytesLike,
        src_ip: Address | None = None,
        dst_ip: Address | None = None,
        verify_checksum: bool = False,
    ) -> tuple[TcpHeader, memoryview]:
        """The header and a view of the payload. The checksum is verified only when
        `verify_checksum` is set and both addresses are given (it covers the pseudo-
        header). Errors name the field and its offset within `data`."""
        view = byte_view(data)
        if len(view) < TCP_HEADER_LENGTH:
            raise WireError("tcp.header", 0, f"truncated: {len(view)} bytes, need 20")
        src_port, dst_port, seq, ack, offset_byte, flags, window, _checksum, urgent = (
            _HEADER.unpack_from(view)
        )
        header_length = (offset_byte >> 4) * 4
        if header_length < TCP_HEADER_LENGTH:
            raise WireError("tcp.data_offset", 12, f"{header_length} bytes is shorter than 20")
        if header_length > len(view):
            raise WireError(
                "tcp.data_offset", 12, f"{header_length} bytes runs past the {len(view)} bytes"
            )
        if verify_checksum and src_ip is not None and dst_ip is not None:
            try:
                pseudo = pseudo_header(src_ip, dst_ip, TCP_PROTOCOL, len(view))
            except WireError as error:
                raise WireError("tcp.checksum", 16, error.reason) from None
            if internet_checksum(pseudo, view) != 0:
                raise WireError("tcp.checksum", 16, "does not verify")
        try:
            options = parse_tcp_options(view[TCP_HEADER_LENGTH:header_length])
        except WireError as error:
            raise error.shifted(TCP_HEADER_LENGTH) from None
        header = cls(
            src_port=src_port,
            dst_port=dst_port,
            seq=seq,
            ack=ack,
            flags=TcpFlags(flags),
            window=window,
            urgent=urgent,
            options=options,
        )
        return header, view[header_length:]

    def emit(self, payload: BytesLike, src_ip: Address, dst_ip: Address) -> bytes:
        """Header, options and payload, with the checksum over the pseudo-header of
        `src_ip`/`dst_ip` (RFC 9293 3.1; RFC 8200 8.1 for IPv6)."""
        options = emit_tcp_options(self.options)
        header_length = TCP_HEADER_LENGTH + len(options)
        segment = bytearray(
            _HEADER.pack(
                self.src_port, self.dst_port, self.seq, self.ack, (header_length // 4) << 4,
                int(self.flags), self.window, 0, self.urgent,
            )
        )
        segment += options
        segment += payload
        checksum = internet_checksum(
            pseudo_header(src_ip, dst_ip, TCP_PROTOCOL, len(segment)), segment
        )
        segment[16:18] = checksum.to_bytes(2, "big")
        return bytes(segment)
