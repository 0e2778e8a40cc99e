"""Every MPTCP option of RFC 8684 section 3 (TCP option kind 30), as frozen values.

Each value has `.emit() -> bytes` (the whole option: kind, length and body);
`parse_mptcp_option(data, offset=0)` reads the one option whose kind byte is at
`data[offset]` and returns the value its subtype and length name. Malformed bytes raise
`WireError` with offsets relative to `data`.

Where each option lives:
    handshake.py  MP_CAPABLE (3.1), MP_JOIN (3.2)
    dss.py        DSS: DATA_ACK, mapping, DATA_FIN, checksum (3.3)
    signals.py    ADD_ADDR, REMOVE_ADDR, MP_PRIO, MP_FAIL, MP_FASTCLOSE, MP_TCPRST,
                  and unknown subtypes kept raw
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import BytesLike, WireError, byte_view
from ._common import TCPOPT_MPTCP, MptcpSubtype
from .dss import DataSequenceMapping, Dss
from .handshake import MpCapable, MpJoinAck, MpJoinSyn, MpJoinSynAck, parse_mp_join
from .signals import (
    AddAddr,
    MpFail,
    MpFastclose,
    MpPrio,
    MpTcpRst,
    MpTcpRstReason,
    RemoveAddr,
    UnknownMptcpOption,
)

__all__ = [
    "TCPOPT_MPTCP",
    "AddAddr",
    "DataSequenceMapping",
    "Dss",
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
    "RemoveAddr",
    "UnknownMptcpOption",
    "parse_mptcp_option",
]

MptcpOption = (
    MpCapable
    | MpJoinSyn
    | MpJoinSynAck
    | MpJoinAck
    | Dss
    | AddAddr
    | RemoveAddr
    | MpPrio
    | MpFail
    | MpFastclose
    | MpTcpRst
    | UnknownMptcpOption
)

#: The classes that are MPTCP options, for isinstance checks.
MPTCP_OPTION_TYPES = MptcpOption.__args__

_PARSERS: dict[int, Callable[[memoryview, int], MptcpOption]] = {
    MptcpSubtype.MP_CAPABLE: MpCapable._parse,
    MptcpSubtype.MP_JOIN: parse_mp_join,
    MptcpSubtype.DSS: Dss._parse,
    MptcpSubtype.ADD_ADDR: AddAddr._parse,
    MptcpSubtype.REMOVE_ADDR: RemoveAddr._parse,
    MptcpSubtype.MP_PRIO: MpPrio._parse,
    MptcpSubtype.MP_FAIL: MpFail._parse,
    MptcpSubtype.MP_FASTCLOSE: MpFastclose._parse,
    MptcpSubtype.MP_TCPRST: MpTcpRst._parse,
}


def parse_mptcp_option(data: BytesLike, offset: int = 0) -> MptcpOption:
    """Parse the one MPTCP option whose kind byte is at `data[offset]`.

    The option's own length byte says where it ends; bytes after it are not looked at.
    Errors carry offsets into `data`.
    """
    view = byte_view(data)
    if not 0 <= offset < len(view):
        raise WireError("mptcp.kind", offset, f"no option at offset {offset} of {len(view)}")
    if view[offset] != TCPOPT_MPTCP:
        raise WireError("mptcp.kind", offset, f"is {view[offset]}, expected {TCPOPT_MPTCP}")
    if offset + 2 > len(view):
        raise WireError("mptcp.length", offset + 1, "truncated before the length byte")
    length = view[offset + 1]
    if length < 3:
        # RFC 8684 section 3: every MPTCP option has at least kind, length and subtype.
        raise WireError("mptcp.length", offset + 1, f"{length} is shorter than 3")
    if offset + length > len(view):
        raise WireError(
            "mptcp.length", offset + 1, f"{length} runs past the {len(view) - offset} bytes left"
        )
    option = view[offset : offset + length]
    parser = _PARSERS.get(option[2] >> 4, UnknownMptcpOption._parse)
    return parser(option, offset)
