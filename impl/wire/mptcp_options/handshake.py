"""MP_CAPABLE (RFC 8684 section 3.1) and MP_JOIN (section 3.2): the options that open a
connection and add subflows to it.

Which variant an option is follows from its length alone, as Linux's
`mptcp_parse_option` does: MP_CAPABLE 4 (SYN), 12 (SYN/ACK), 20 (third ACK), 22 (ACK with
data, RFC 8684 3.1 figure 4 "Data-Level Length") and 24 (the same plus a DSS checksum);
MP_JOIN 12 (SYN), 16 (SYN/ACK) and 24 (third ACK).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WireError, check_bool, check_bytes, check_uint
from ._common import U16, U32, U64, MptcpSubtype, bad_length, header, normalize_truncated_hmac

__all__ = ["MpCapable", "MpJoinAck", "MpJoinSyn", "MpJoinSynAck"]

# MP_CAPABLE flag byte, RFC 8684 section 3.1: A B C D E F G H.
_CAP_CHECKSUM = 0x80  # A: "checksum required" (DSS checksums, section 3.3.1)
_CAP_EXTENSIBILITY = 0x40  # B: must be 0 in v1, reserved for future specifications
_CAP_NO_INITIAL_JOIN = 0x20  # C: do not open subflows to the initial address and port
_CAP_RESERVED = 0x1E  # D, E, F, G: unassigned crypto-algorithm bits
_CAP_HMAC_SHA256 = 0x01  # H: HMAC-SHA256, the only algorithm v1 defines

_CAPABLE_LENGTHS = "4, 12, 20, 22 or 24"


@dataclass(frozen=True, slots=True)
class MpCapable:
    """MP_CAPABLE, RFC 8684 section 3.1.

    The fields that are present decide the length: no key (4, the SYN), `sender_key`
    (12, the SYN/ACK), both keys (20, the third ACK), both keys and `data_length` (22,
    the first data on the ACK) and `checksum` too (24, when checksums are required).
    `version` is the low nibble of byte 2; `reserved_flags` keeps the D..G bits (mask
    0x1e) as received, so unknown crypto bits survive a round trip.
    """

    version: int = 1
    checksum_required: bool = False
    extensibility: bool = False
    no_initial_join: bool = False
    hmac_sha256: bool = True
    reserved_flags: int = 0
    sender_key: int | None = None
    receiver_key: int | None = None
    data_length: int | None = None
    checksum: int | None = None

    def __post_init__(self) -> None:
        check_uint("mp_capable.version", self.version, 4)
        check_bool("mp_capable.checksum_required", self.checksum_required)
        check_bool("mp_capable.extensibility", self.extensibility)
        check_bool("mp_capable.no_initial_join", self.no_initial_join)
        check_bool("mp_capable.hmac_sha256", self.hmac_sha256)
        check_uint("mp_capable.reserved_flags", self.reserved_flags, 8)
        if self.reserved_flags & ~_CAP_RESERVED:
            raise WireError(
                "mp_capable.reserved_flags", -1, "only the D..G bits (mask 0x1e) belong here"
            )
        # Each later field only exists on the wire when every earlier one does.
        present = [
            ("sender_key", self.sender_key, 64),
            ("receiver_key", self.receiver_key, 64),
            ("data_length", self.data_length, 16),
            ("checksum", self.checksum, 16),
        ]
        missing: str | None = None
        for name, value, bits in present:
            if value is None:
                missing = missing or name
                continue
            if missing is not None:
                raise WireError(f"mp_capable.{name}", -1, f"cannot be present without {missing}")
            check_uint(f"mp_capable.{name}", value, bits)

    @property
    def length(self) -> int:
        if self.sender_key is None:
            return 4
        if self.receiver_key is None:
            return 12
        if self.data_length is None:
            return 20
        return 22 if self.checksum is None else 24

    @property
    def flags(self) -> int:
        return (
            (_CAP_CHECKSUM if self.checksum_required else 0)
            | (_CAP_EXTENSIBILITY if self.extensibility else 0)
            | (_CAP_NO_INITIAL_JOIN if self.no_initial_join else 0)
            | self.reserved_flags
            | (_CAP_HMAC_SHA256 if self.hmac_sha256 else 0)
        )

    def emit(self) -> bytes:
        out = header(MptcpSubtype.MP_CAPABLE, self.length, self.version) + bytes((self.flags,))
        if self.sender_key is not None:
            out += U64.pack(self.sender_key)
        if self.receiver_key is not None:
            out += U64.pack(self.receiver_key)
        if self.data_length is not None:
            out += U16.pack(self.data_length)
        if self.checksum is not None:
            out += U16.pack(self.checksum)
        return out

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> MpCapable:
        length = len(opt)
        if length not in (4, 12, 20, 22, 24):
            raise bad_length("mp_capable", opt, base, _CAPABLE_LENGTHS)
        flags = opt[3]
        return cls(
            version=opt[2] & 0x0F,
            checksum_required=bool(flags & _CAP_CHECKSUM),
            extensibility=bool(flags & _CAP_EXTENSIBILITY),
            no_initial_join=bool(flags & _CAP_NO_INITIAL_JOIN),
            hmac_sha256=bool(flags & _CAP_HMAC_SHA256),
            reserved_flags=flags & _CAP_RESERVED,
            sender_key=U64.unpack_from(opt, 4)[0] if length >= 12 else None,
            receiver_key=U64.unpack_from(opt, 12)[0] if length >= 20 else None,
            data_length=U16.unpack_from(opt, 20)[0] if length >= 22 else None,
            checksum=U16.unpack_from(opt, 22)[0] if length == 24 else None,
        )


# MP_JOIN, RFC 8684 section 3.2, figures 5-7. Byte 2 is subtype << 4 | reserved | B on
# the SYN and SYN/ACK; the third ACK has 12 reserved bits instead.
_JOIN_BACKUP = 0x01


@dataclass(frozen=True, slots=True)
class MpJoinSyn:
    """MP_JOIN on a SYN (12 bytes): backup flag, sender's address ID, the receiver's
    32-bit token and the sender's 32-bit random nonce R-A."""

    backup: bool
    address_id: int
    receiver_token: int
    sender_nonce: int

    def __post_init__(self) -> None:
        check_bool("mp_join.backup", self.backup)
        check_uint("mp_join.address_id", self.address_id, 8)
        check_uint("mp_join.receiver_token", self.receiver_token, 32)
        check_uint("mp_join.sender_nonce", self.sender_nonce, 32)

    def emit(self) -> bytes:
        return (
            header(MptcpSubtype.MP_JOIN, 12, _JOIN_BACKUP if self.backup else 0)
            + bytes((self.address_id,))
            + U32.pack(self.receiver_token)
            + U32.pack(self.sender_nonce)
        )

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> MpJoinSyn:
        return cls(
            backup=bool(opt[2] & _JOIN_BACKUP),
            address_id=opt[3],
            receiver_token=U32.unpack_from(opt, 4)[0],
            sender_nonce=U32.unpack_from(opt, 8)[0],
        )


@dataclass(frozen=True, slots=True)
class MpJoinSynAck:
    """MP_JOIN on a SYN/ACK (16 bytes): backup flag, address ID, the leftmost 64 bits of
    HMAC-B (as an int; 8 raw bytes are accepted and converted) and the nonce R-B."""

    backup: bool
    address_id: int
    sender_truncated_hmac: int
    sender_nonce: int

    def __post_init__(self) -> None:
        check_bool("mp_join.backup", self.backup)
        check_uint("mp_join.address_id", self.address_id, 8)
        object.__setattr__(
            self,
            "sender_truncated_hmac",
            normalize_truncated_hmac("mp_join.sender_truncated_hmac", self.sender_truncated_hmac),
        )
        check_uint("mp_join.sender_nonce", self.sender_nonce, 32)

    def emit(self) -> bytes:
        return (
            header(MptcpSubtype.MP_JOIN, 16, _JOIN_BACKUP if self.backup else 0)
            + bytes((self.address_id,))
            + U64.pack(self.sender_truncated_hmac)
            + U32.pack(self.sender_nonce)
        )

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> MpJoinSynAck:
        return cls(
            backup=bool(opt[2] & _JOIN_BACKUP),
            address_id=opt[3],
            sender_truncated_hmac=U64.unpack_from(opt, 4)[0],
            sender_nonce=U32.unpack_from(opt, 12)[0],
        )


@dataclass(frozen=True, slots=True)
class MpJoinAck:
    """MP_JOIN on the third ACK (24 bytes): the leftmost 160 bits of HMAC-A."""

    sender_hmac: bytes

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "sender_hmac", check_bytes("mp_join.sender_hmac", self.sender_hmac, 20)
        )

    def emit(self) -> bytes:
        return header(MptcpSubtype.MP_JOIN, 24) + b"\x00" + self.sender_hmac

    @classmethod
    def _parse(cls, opt: memoryview, base: int) -> MpJoinAck:
        return cls(sender_hmac=bytes(opt[4:24]))


def parse_mp_join(opt: memoryview, base: int) -> MpJoinSyn | MpJoinSynAck | MpJoinAck:
    """The MP_JOIN variant its length names (RFC 8684 3.2: 12, 16 or 24 bytes)."""
    length = len(opt)
    if length == 12:
        return MpJoinSyn._parse(opt, base)
    if length == 16:
        return MpJoinSynAck._parse(opt, base)
    if length == 24:
        return MpJoinAck._parse(opt, base)
    raise bad_length("mp_join", opt, base, "12, 16 or 24")
