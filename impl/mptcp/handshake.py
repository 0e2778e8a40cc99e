"""MP_CAPABLE (RFC 8684 3.1): what each side puts on the handshake segments and how it
reads the peer's, and the fallback decisions of 3.7.

Pure functions over plain values; `MptcpConnection` keeps the state.

- initiator SYN: MP_CAPABLE with no key (4 bytes, v1), A flag if we want checksums;
- listener SYN/ACK: its key (12 bytes); A if either side wants checksums;
- initiator third ACK: both keys (20 bytes); on the first data segment, both keys plus
  the data-level length (22, or 24 with the DSS checksum) standing for a mapping with
  DSN = IDSN + 1 and subflow sequence 1; repeated until a DSS arrives from the listener.
"""

from __future__ import annotations

from impl.wire.mptcp_options import MpCapable

__all__ = [
    "acceptable_mp_capable", "find_option", "syn_ack_option", "syn_option",
    "third_ack_option",
]


def find_option(options: tuple, cls: type) -> object | None:
    for option in options:
        if isinstance(option, cls):
            return option
    return None


def acceptable_mp_capable(option: MpCapable | None) -> bool:
    """3.1: version 1 with the H flag (HMAC-SHA256); anything else is not MPTCP v1
    to us, so the connection falls back (3.7)."""
    return option is not None and option.version == 1 and option.hmac_sha256


def syn_option(checksums: bool) -> MpCapable:
    return MpCapable(checksum_required=checksums)


def syn_ack_option(local_key: int, checksums: bool, no_initial_join: bool = False,
                   ) -> MpCapable:
    """3.1: the listener's key; C (`no_initial_join`) when it takes no join to the
    address and port of this subflow."""
    return MpCapable(checksum_required=checksums, sender_key=local_key,
                     no_initial_join=no_initial_join)


def third_ack_option(
    local_key: int,
    remote_key: int,
    checksums: bool,
    data_length: int | None = None,
    checksum: int | None = None,
) -> MpCapable:
    """3.1: the initiator's key is the "sender" key and the listener's the "receiver"
    key on the ACK; with data, the data-level length (and checksum) of the first
    mapping."""
    return MpCapable(
        checksum_required=checksums, sender_key=local_key, receiver_key=remote_key,
        data_length=data_length, checksum=checksum if checksums else None,
    )
