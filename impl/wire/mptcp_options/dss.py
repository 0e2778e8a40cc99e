"""DSS, the Data Sequence Signal (RFC 8684 section 3.3, figure 9): DATA_ACK, the data
sequence mapping, DATA_FIN and the optional DSS checksum, in one option.

Flags (byte 3; byte 2 is the subtype and 4 reserved bits):

    F 0x10  DATA_FIN (section 3.3.3)
    m 0x08  the DSN is 8 bytes (else 4)
    M 0x04  a mapping (DSN, subflow sequence number, data-level length) is present
    a 0x02  the DATA_ACK is 8 bytes (else 4)
    A 0x01  a DATA_ACK is present

The length must be exactly 4 + ack (0/4/8) + mapping (0, or dsn 4/8 + 4 + 2) + checksum
(0/2, only with a mapping): whether the checksum is there is known only from the length,
as in Linux's `mptcp_parse_option` (the checksum is negotiated at MP_CAPABLE time).

Canonical form: 'a' is sent only with 'A', 'm' only with 'M'. A received 'a' without 'A'
(or 'm' without 'M') means nothing and is ignored, so such bytes parse but do not
re-emit identically.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WireError, check_bool, check_uint
from ._common import U16, U32, U64, MptcpSubtype, header

__all__ = ["DataSequenceMapping", "Dss"]

DSS_DATA_FIN = 0x10
DSS_DSN64 = 0x08
DSS_MAPPING = 0x04
DSS_ACK64 = 0x02
DSS_ACK = 0x01


@dataclass(frozen=True, slots=True)
class DataSequenceMapping:
    """The mapping part of a DSS (RFC 8684 section 3.3.1).

    Subflow bytes [subflow_sequence, subflow_sequence + data_level_length) carry data
    bytes [dsn, dsn + data_level_length). `subflow_sequence` is relative to the subflow's
    ISN; `data_level_length == 0` is the infinite mapping (section 3.7). `dsn` is the
    value as carried: with `dsn_is_64bit=False` it must fit 32 bits (widening it is the
    connection's job, section 3.3.1). `checksum` is present iff checksums were negotiated.
    """

    dsn: int
    subflow_sequence: int
    data_level_length: int
    checksum: int | None = None
    dsn_is_64bit: bool = True

    def __post_init__(self) -> None:
        check_bool("dss.dsn_is_64bit", self.dsn_is_64bit)
        check_uint("dss.dsn", self.dsn, 64 if self.dsn_is_64bit else 32)
        check_uint("dss.subflow_sequence", self.subflow_sequence, 32)
        check_uint("dss.data_level_length", self.data_level_length, 16)
        if self.checksum is not None:
            check_uint("dss.checksum", self.checksum, 16)

    @property
    def is_infinite(self) -> bool:
        """A data-level length of 0 maps the rest of the subflow (RFC 8684 3.7)."""
        return self.data_level_length == 0

    @property
    def length(self) -> int:
        return (8 if self.dsn_is_64bit else 4) + 6 + (0 if self.checksum is None else 2)

    def emit(self) -> bytes:
        """The mapping's bytes inside a DSS option (not an option by itself)."""
        out = (U64 if self.dsn_is_64bit else U32).pack(self.dsn)
        out += U32.pack(self.subflow_sequence) + U16.pack(self.data_level_length)
        if self.checksum is not None:
            out += U16.pack(self.checksum)
        return out


@dataclass(frozen=True, slots=True)
class Dss:
    """A DSS option (RFC 8684 section 3.3).

    `data_ack` is the value as carried (a 32-bit value when `data_ack_is_64bit=False`);
    `data_ack_is_64bit` only means something with a DATA_ACK, so without one it is
    normalised to its default, True, and two DSS options without DATA_ACK compare equal
    whatever was passed for it.
    """

    data_ack: int | None = None
    data_ack_is_64bit: bool = True
    mapping: DataSequenceMapping | None = None
    data_fin: bool = False

    def __post_init__(self) -> None:
        check_bool("dss.data_ack_is_64bit", self.data_ack_is_64bit)
        check_bool("dss.data_fin", self.data_fin)
        if self.data_ack is None:
            object.__setattr__(self, "data_ack_is_64bit", True)
        else:
            check_uint("dss.data_ack", self.data_ack, 64 if self.data_ack_is_64bit else 32)
        if self.mapping is not None and not isinstance(self.mapping, DataSequenceMapping):
            raise WireError("dss.mapping", -1, "must be a DataSequenceMapping or None")

    @property
    def flags(self) -> int:
        flags = DSS_DATA_FIN if self.data_fin else 0
        if self.data_ack is not None:
            flags |= DSS_ACK | (DSS_ACK64 if self.data_ack_is_64bit else 0)
        if self.mapping is not None:
            flags |= DSS_MAPPING | (DSS_DSN64 if self.mapping.dsn_is_64bit else 0)
        return flags

    @property
    def length(self) -> int:
        length = 4
        if self.data_ack is not None:
            length += 8 if self.data_ack_is_64bit else 4
        if self.mapping is not None:
            length += self.mapping.length
        return length

    def emit(self) -> bytes:
        out = header(MptcpSubtype.DSS, self.length) + bytes((self.flags,))
        if self.data_ack is not None:
            out += (U64 if self.data_ack_is_64bit else U32).pack(self.data_ack)
        if self.mapping is not None:
            out += self.mapping.emit()
        return out

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> Dss:
        length = len(opt)
        if length < 4:
            raise WireError("mptcp.dss.length", base + 1, f"{length} is shorter than 4")
        flags = opt[3]
        has_ack = bool(flags & DSS_ACK)
        ack64 = bool(flags & DSS_ACK64)
        has_mapping = bool(flags & DSS_MAPPING)
        dsn64 = bool(flags & DSS_DSN64)
        expected = 4
        if has_ack:
            expected += 8 if ack64 else 4
        if has_mapping:
            expected += (8 if dsn64 else 4) + 4 + 2
        if length == expected:
            has_checksum = False
        elif has_mapping and length == expected + 2:
            has_checksum = True
        else:
            allowed = f"{expected} or {expected + 2}" if has_mapping else f"{expected}"
            raise WireError(
                "mptcp.dss.length",
                base + 1,
                f"{length} does not match flags 0x{flags:02x} (expected {allowed})",
            )
        position = 4
        data_ack = None
        if has_ack:
            if ack64:
                data_ack = U64.unpack_from(opt, position)[0]
                position += 8
            else:
                data_ack = U32.unpack_from(opt, position)[0]
                position += 4
        mapping = None
        if has_mapping:
            if dsn64:
                dsn = U64.unpack_from(opt, position)[0]
                position += 8
            else:
                dsn = U32.unpack_from(opt, position)[0]
                position += 4
            subflow_sequence = U32.unpack_from(opt, position)[0]
            data_level_length = U16.unpack_from(opt, position + 4)[0]
            checksum = U16.unpack_from(opt, position + 6)[0] if has_checksum else None
            mapping = DataSequenceMapping(
                dsn=dsn,
                subflow_sequence=subflow_sequence,
                data_level_length=data_level_length,
                checksum=checksum,
                dsn_is_64bit=dsn64,
            )
        return cls(
            data_ack=data_ack,
            data_ack_is_64bit=ack64 if has_ack else True,
            mapping=mapping,
            data_fin=bool(flags & DSS_DATA_FIN),
        )
