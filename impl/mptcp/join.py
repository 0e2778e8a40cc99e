"""MP_JOIN (RFC 8684 3.2): the per-subflow state of a join and its HMAC checks.

With A the subflow initiator and B the listener: A's SYN carries B's token and nonce
R-A; B's SYN/ACK carries the leftmost 64 bits of HMAC-B and R-B; A's third ACK carries
the leftmost 160 bits of HMAC-A. A may send data only after B acknowledged the third
ACK (the "fourth ACK"), because only then does A know B accepted the HMAC. A failed
HMAC resets the subflow (with MP_TCPRST) and leaves the connection alone.
"""

from __future__ import annotations

import hmac as _hmac
from dataclasses import dataclass

from impl.crypto import join_ack_hmac, join_syn_ack_hmac
from impl.wire.mptcp_options import MpJoinAck, MpJoinSyn, MpJoinSynAck

__all__ = ["JoinState"]


@dataclass
class JoinState:
    """One MP_JOIN exchange. `active` is True on A (the initiator)."""

    active: bool
    local_nonce: int
    address_id: int
    backup: bool = False
    remote_nonce: int | None = None
    remote_address_id: int | None = None
    remote_backup: bool = False
    verified: bool = False  # A: HMAC-B checked; B: HMAC-A checked
    fourth_ack_seen: bool = False  # A only: B acknowledged our third ACK

    # -- A (initiator) -----------------------------------------------------------------

    def syn_option(self, remote_token: int) -> MpJoinSyn:
        return MpJoinSyn(self.backup, self.address_id, remote_token, self.local_nonce)

    def check_syn_ack(self, option: MpJoinSynAck, local_key: int, remote_key: int) -> bool:
        """A verifies the truncated HMAC-B of the SYN/ACK (3.2)."""
        self.remote_nonce = option.sender_nonce
        self.remote_address_id = option.address_id
        self.remote_backup = option.backup
        expected = join_syn_ack_hmac(remote_key, local_key, option.sender_nonce,
                                     self.local_nonce)
        self.verified = expected == option.sender_truncated_hmac
        return self.verified

    def third_ack_option(self, local_key: int, remote_key: int) -> MpJoinAck:
        return MpJoinAck(join_ack_hmac(local_key, remote_key, self.local_nonce,
                                       self.remote_nonce))

    # -- B (listener) ------------------------------------------------------------------

    def take_syn(self, option: MpJoinSyn) -> None:
        self.remote_nonce = option.sender_nonce
        self.remote_address_id = option.address_id
        self.remote_backup = option.backup

    def syn_ack_option(self, local_key: int, remote_key: int) -> MpJoinSynAck:
        truncated = join_syn_ack_hmac(local_key, remote_key, self.local_nonce,
                                      self.remote_nonce)
        return MpJoinSynAck(self.backup, self.address_id, truncated, self.local_nonce)

    def check_third_ack(self, option: MpJoinAck, local_key: int, remote_key: int) -> bool:
        """B verifies HMAC-A (160 bits) of the third ACK (3.2)."""
        expected = join_ack_hmac(remote_key, local_key, self.remote_nonce, self.local_nonce)
        self.verified = _hmac.compare_digest(expected, bytes(option.sender_hmac))
        return self.verified
