"""The path-management and closing options of RFC 8684 section 3: ADD_ADDR (3.4.1),
REMOVE_ADDR (3.4.2), MP_PRIO (3.3.8), MP_FAIL (3.7), MP_FASTCLOSE (3.5), MP_TCPRST (3.6),
and `UnknownMptcpOption` for subtypes this codec does not know (MP_EXPERIMENTAL, 0xf,
included), kept raw so they survive a round trip.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import IntEnum

from ..errors import WireError, check_bool, check_bytes, check_uint
from ..ip import to_address
from ._common import U16, U64, MptcpSubtype, bad_length, header, normalize_truncated_hmac

__all__ = [
    "AddAddr",
    "MpFail",
    "MpFastclose",
    "MpPrio",
    "MpTcpRst",
    "MpTcpRstReason",
    "RemoveAddr",
    "UnknownMptcpOption",
]

# ADD_ADDR, RFC 8684 section 3.4.1, figure 12: byte 2 = subtype << 4 | 3 reserved | E.
# The address family is implied by the length (there is no IPVer field in v1):
#   (family, port, echo) -> length; the HMAC (8 bytes) is there iff E is clear.
_ADD_ADDR_ECHO = 0x01
_ADD_ADDR_LENGTHS = {
    (4, False, False): 16,
    (4, True, False): 18,
    (4, False, True): 8,
    (4, True, True): 10,
    (6, False, False): 28,
    (6, True, False): 30,
    (6, False, True): 20,
    (6, True, True): 22,
}
_ADD_ADDR_SHAPES = {(length, key[2]): key for key, length in _ADD_ADDR_LENGTHS.items()}


@dataclass(frozen=True, slots=True)
class AddAddr:
    """ADD_ADDR: announce (or, with `echo`, acknowledge) an address of the sender.

    `truncated_hmac` is the rightmost 64 bits of the HMAC (RFC 8684 3.4.1), as an int
    (8 raw bytes are accepted and converted); it is present iff `echo` is False.
    `port` is None when the option carries no port.
    """

    address_id: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int | None = None
    truncated_hmac: int | None = None
    echo: bool = False

    def __post_init__(self) -> None:
        check_uint("add_addr.address_id", self.address_id, 8)
        object.__setattr__(self, "address", to_address("add_addr.address", self.address))
        if self.port is not None:
            check_uint("add_addr.port", self.port, 16)
        check_bool("add_addr.echo", self.echo)
        if self.echo and self.truncated_hmac is not None:
            raise WireError("add_addr.truncated_hmac", -1, "an echo carries no HMAC")
        if not self.echo:
            if self.truncated_hmac is None:
                raise WireError("add_addr.truncated_hmac", -1, "required unless echo is set")
            object.__setattr__(
                self,
                "truncated_hmac",
                normalize_truncated_hmac("add_addr.truncated_hmac", self.truncated_hmac),
            )

    @property
    def length(self) -> int:
        return _ADD_ADDR_LENGTHS[(self.address.version, self.port is not None, self.echo)]

    def emit(self) -> bytes:
        out = header(MptcpSubtype.ADD_ADDR, self.length, _ADD_ADDR_ECHO if self.echo else 0)
        out += bytes((self.address_id,)) + self.address.packed
        if self.port is not None:
            out += U16.pack(self.port)
        if self.truncated_hmac is not None:
            out += U64.pack(self.truncated_hmac)
        return out

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> AddAddr:
        echo = bool(opt[2] & _ADD_ADDR_ECHO)
        shape = _ADD_ADDR_SHAPES.get((len(opt), echo))
        if shape is None:
            allowed = "8, 10, 20 or 22 with E set" if echo else "16, 18, 28 or 30"
            raise bad_length("add_addr", opt, base, allowed)
        version, has_port, _ = shape
        end = 4 + (4 if version == 4 else 16)
        raw = bytes(opt[4:end])
        address = ipaddress.IPv4Address(raw) if version == 4 else ipaddress.IPv6Address(raw)
        port = None
        if has_port:
            port = U16.unpack_from(opt, end)[0]
            end += 2
        return cls(
            address_id=opt[3],
            address=address,
            port=port,
            truncated_hmac=None if echo else U64.unpack_from(opt, end)[0],
            echo=echo,
        )


@dataclass(frozen=True, slots=True)
class RemoveAddr:
    """REMOVE_ADDR (3 + n bytes): the address IDs the sender no longer uses (RFC 8684
    3.4.2; ID 0 is the address of the initial subflow). At least one ID."""

    address_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.address_ids, tuple | list):
            raise WireError("remove_addr.address_ids", -1, "must be a tuple of ints")
        ids = tuple(self.address_ids)
        if not 1 <= len(ids) <= 255 - 3:
            raise WireError("remove_addr.address_ids", -1, f"{len(ids)} IDs; need 1 to 252")
        for address_id in ids:
            check_uint("remove_addr.address_ids", address_id, 8)
        object.__setattr__(self, "address_ids", ids)

    def emit(self) -> bytes:
        return header(MptcpSubtype.REMOVE_ADDR, 3 + len(self.address_ids)) + bytes(
            self.address_ids
        )

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> RemoveAddr:
        if len(opt) < 4:
            raise bad_length("remove_addr", opt, base, "3 + at least one address ID")
        return cls(address_ids=tuple(opt[3:]))


@dataclass(frozen=True, slots=True)
class MpPrio:
    """MP_PRIO (3 bytes, RFC 8684 3.3.8): set or clear backup priority for the subflow
    the option arrives on. (RFC 6824's 4-byte form with an address ID is gone in v1.)"""

    backup: bool

    def __post_init__(self) -> None:
        check_bool("mp_prio.backup", self.backup)

    def emit(self) -> bytes:
        return header(MptcpSubtype.MP_PRIO, 3, 0x01 if self.backup else 0)

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> MpPrio:
        if len(opt) != 3:
            raise bad_length("mp_prio", opt, base, "3")
        return cls(backup=bool(opt[2] & 0x01))


def _parse_reserved_then_u64(name: str, opt: memoryview, base: int) -> int:
    # MP_FAIL and MP_FASTCLOSE: subtype, 12 reserved bits, then a 64-bit value.
    if len(opt) != 12:
        raise bad_length(name, opt, base, "12")
    return U64.unpack_from(opt, 4)[0]


@dataclass(frozen=True, slots=True)
class MpFail:
    """MP_FAIL (12 bytes, RFC 8684 3.7): the 64-bit DSN at which the checksum failed."""

    dsn: int

    def __post_init__(self) -> None:
        check_uint("mp_fail.dsn", self.dsn, 64)

    def emit(self) -> bytes:
        return header(MptcpSubtype.MP_FAIL, 12) + b"\x00" + U64.pack(self.dsn)

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> MpFail:
        return cls(dsn=_parse_reserved_then_u64("mp_fail", opt, base))


@dataclass(frozen=True, slots=True)
class MpFastclose:
    """MP_FASTCLOSE (12 bytes, RFC 8684 3.5): the receiver's key, proving the sender
    knows the connection, for an abortive close of the whole connection."""

    receiver_key: int

    def __post_init__(self) -> None:
        check_uint("mp_fastclose.receiver_key", self.receiver_key, 64)

    def emit(self) -> bytes:
        return header(MptcpSubtype.MP_FASTCLOSE, 12) + b"\x00" + U64.pack(self.receiver_key)

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> MpFastclose:
        return cls(receiver_key=_parse_reserved_then_u64("mp_fastclose", opt, base))


class MpTcpRstReason(IntEnum):
    """MP_TCPRST reason codes, RFC 8684 section 3.6 (IANA "MPTCP MP_TCPRST Reason Codes")."""

    UNSPECIFIED = 0x00
    MPTCP_SPECIFIC = 0x01
    LACK_OF_RESOURCES = 0x02
    ADMINISTRATIVELY_PROHIBITED = 0x03
    TOO_MUCH_OUTSTANDING_DATA = 0x04
    UNACCEPTABLE_PERFORMANCE = 0x05
    MIDDLEBOX_INTERFERENCE = 0x06


_TCPRST_TRANSIENT = 0x01  # T; U, V and W (0x08, 0x04, 0x02) are reserved, ignored on receipt


@dataclass(frozen=True, slots=True)
class MpTcpRst:
    """MP_TCPRST (4 bytes, RFC 8684 3.6), sent on a RST to say why a subflow was reset.

    `reason` is an `MpTcpRstReason` when the code is known, else the plain int (0..255)
    so that future codes survive. `transient` is the T flag: the sender expects the
    condition to pass, so the subflow may be retried.
    """

    reason: MpTcpRstReason | int
    transient: bool = False

    def __post_init__(self) -> None:
        check_uint("mp_tcprst.reason", self.reason, 8)
        check_bool("mp_tcprst.transient", self.transient)
        reason = int(self.reason)
        if reason in MpTcpRstReason._value2member_map_:
            object.__setattr__(self, "reason", MpTcpRstReason(reason))
        else:
            object.__setattr__(self, "reason", reason)

    def emit(self) -> bytes:
        return header(
            MptcpSubtype.MP_TCPRST, 4, _TCPRST_TRANSIENT if self.transient else 0
        ) + bytes((int(self.reason),))

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> MpTcpRst:
        if len(opt) != 4:
            raise bad_length("mp_tcprst", opt, base, "4")
        return cls(reason=opt[3], transient=bool(opt[2] & _TCPRST_TRANSIENT))


_KNOWN_SUBTYPES = frozenset(range(MptcpSubtype.MP_TCPRST + 1))


@dataclass(frozen=True, slots=True)
class UnknownMptcpOption:
    """An MPTCP option whose subtype (9..15, MP_EXPERIMENTAL 0xf included) this codec
    does not interpret. `flags` is the low nibble of byte 2, `data` the bytes after it,
    so the option re-emits byte for byte. RFC 8684 section 3 asks receivers to ignore
    options they do not understand; keeping them lets the monitor report them."""

    subtype: int
    data: bytes = b""
    flags: int = 0

    def __post_init__(self) -> None:
        check_uint("mptcp.subtype", self.subtype, 4)
        if self.subtype in _KNOWN_SUBTYPES:
            raise WireError(
                "mptcp.subtype", -1, f"{self.subtype} is a known subtype; use its own class"
            )
        data = check_bytes("mptcp.data", self.data)
        if len(data) > 255 - 3:
            raise WireError("mptcp.data", -1, f"{len(data)} bytes; at most 252 fit")
        object.__setattr__(self, "data", data)
        check_uint("mptcp.flags", self.flags, 4)

    def emit(self) -> bytes:
        return header(self.subtype, 3 + len(self.data), self.flags) + self.data

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> UnknownMptcpOption:
        return cls(subtype=opt[2] >> 4, data=bytes(opt[3:]), flags=opt[2] & 0x0F)
