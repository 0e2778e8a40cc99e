"""Packet codecs: IPv4/IPv6 headers, TCP headers and checksums, TCP options and every
MPTCP option of RFC 8684 section 3 (kind 30).

Values are typed and immutable; parsing reads from `memoryview`s without copying payloads;
malformed input raises `WireError` (and nothing else) naming the field and offset.
The contract other packages code against is docs/wire-api.md.

    errors.py         WireError and the shared field checks
    checksum.py       ones'-complement sums, pseudo-headers, the DSS checksum
    ip.py             IPv4 and IPv6 headers
    tcp_options.py    TCP options and the option-list codec
    tcp.py            the TCP header
    packet.py         whole IP+TCP packets
    mptcp_options/    every MPTCP option (handshake, DSS, signals)
"""

from .checksum import dss_checksum, internet_checksum, pseudo_header
from .errors import WireError
from .ip import IPv4Header, IPv6Header, parse_ip
from .mptcp_options import (
    AddAddr,
    DataSequenceMapping,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MptcpOption,
    MpTcpRst,
    MpTcpRstReason,
    MptcpSubtype,
    RemoveAddr,
    UnknownMptcpOption,
    parse_mptcp_option,
)
from .packet import Packet, build_packet, parse_packet
from .tcp import TcpFlags, TcpHeader
from .tcp_options import (
    EndOfOptionList,
    MaximumSegmentSize,
    NoOperation,
    Sack,
    SackPermitted,
    TcpOption,
    Timestamps,
    UnknownTcpOption,
    WindowScale,
    emit_tcp_options,
    parse_tcp_options,
)

__all__ = [
    "AddAddr",
    "DataSequenceMapping",
    "Dss",
    "EndOfOptionList",
    "IPv4Header",
    "IPv6Header",
    "MaximumSegmentSize",
    "MpCapable",
    "MpFail",
    "MpFastclose",
    "MpJoinAck",
    "MpJoinSyn",
    "MpJoinSynAck",
    "MpPrio",
    "MpTcpRst",
    "MpTcpRstReason",
    "MptcpOption",
    "MptcpSubtype",
    "NoOperation",
    "Packet",
    "RemoveAddr",
    "Sack",
    "SackPermitted",
    "TcpFlags",
    "TcpHeader",
    "TcpOption",
    "Timestamps",
    "UnknownMptcpOption",
    "UnknownTcpOption",
    "WindowScale",
    "WireError",
    "build_packet",
    "dss_checksum",
    "emit_tcp_options",
    "internet_checksum",
    "parse_ip",
    "parse_mptcp_option",
    "parse_packet",
    "parse_tcp_options",
    "pseudo_header",
]
