"""TCP option policy: what we offer on a SYN, what both sides agreed, and how the 40
bytes of option space are shared on every segment.

Layouts copy Linux's (`tcp_options_write`), so captures look like the kernel's:
SYN `MSS, SACK_PERM, TS, NOP, WS` (20 bytes); without timestamps `MSS, NOP, NOP,
SACK_PERM, NOP, WS`; established segments `NOP, NOP, TS` (12 bytes) then, with
holes, `NOP, NOP, SACK` (4 + 8n bytes). Which options are in force follows RFC 7323
(window scaling and timestamps only if both SYNs carried them; a shift above 14 is used
as 14, section 2.3) and RFC 2018 (SACK only if both SYNs carried SACK-permitted).
"""

from __future__ import annotations

from dataclasses import dataclass

from impl.wire.tcp import TcpHeader
from impl.wire.tcp_options import (
    MaximumSegmentSize,
    NoOperation,
    Sack,
    SackPermitted,
    Timestamps,
    WindowScale,
)

from .config import TcpConfig

__all__ = [
    "DEFAULT_MSS",
    "TIMESTAMPS_LENGTH",
    "Negotiated",
    "PeerSynOptions",
    "sack_option",
    "syn_options",
    "window_shift_for",
]

DEFAULT_MSS = 536  # RFC 9293 3.7.1: assumed when the SYN carries no MSS option (IPv4)
TIMESTAMPS_LENGTH = 12  # NOP, NOP, TS
MAX_WINDOW_SHIFT = 14  # RFC 7323 2.3
_NOP = NoOperation()


def window_shift_for(buffer_size: int) -> int:
    """The smallest shift that lets a 16-bit field cover `buffer_size`."""
    shift = 0
    while (0xFFFF << shift) < buffer_size and shift < MAX_WINDOW_SHIFT:
        shift += 1
    return shift


@dataclass(frozen=True, slots=True)
class PeerSynOptions:
    """What the peer's SYN (or SYN/ACK) offered."""

    mss: int
    window_shift: int | None  # None: no WS option
    sack_permitted: bool
    timestamp: Timestamps | None

    @classmethod
    def from_header(cls, header: TcpHeader) -> PeerSynOptions:
        mss = header.option(MaximumSegmentSize)
        scale = header.option(WindowScale)
        return cls(
            mss=mss.mss if mss is not None and mss.mss > 0 else DEFAULT_MSS,
            window_shift=None if scale is None else min(scale.shift, MAX_WINDOW_SHIFT),
            sack_permitted=header.option(SackPermitted) is not None,
            timestamp=header.option(Timestamps),
        )


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The options in force once both SYNs were seen."""

    send_mss: int  # largest payload + options we may send (peer MSS, our MTU)
    snd_shift: int  # Snd.Wind.Shift: applied to windows the peer sends
    rcv_shift: int  # Rcv.Wind.Shift: applied to windows we send
    sack: bool
    timestamps: bool

    @classmethod
    def agree(cls, config: TcpConfig, peer: PeerSynOptions, our_shift: int) -> Negotiated:
        scaling = config.window_scaling and peer.window_shift is not None
        return cls(
            send_mss=min(peer.mss, config.mss),
            snd_shift=peer.window_shift if scaling else 0,
            rcv_shift=our_shift if scaling else 0,
            sack=config.sack and peer.sack_permitted,
            timestamps=config.timestamps and peer.timestamp is not None,
        )

    @property
    def data_mss(self) -> int:
        """Payload bytes of a full segment carrying our fixed options (Linux's
        mss_cache): the segment size congestion control counts in."""
        return self.send_mss - (TIMESTAMPS_LENGTH if self.timestamps else 0)


def syn_options(
    config: TcpConfig,
    our_shift: int,
    tsval: int,
    peer: PeerSynOptions | None = None,
    echo: int = 0,
) -> list:
    """Options for our SYN (peer None) or SYN/ACK (only what the peer offered; `echo`
    is TS.Recent, the peer's latest TSval)."""
    offer_sack = config.sack and (peer is None or peer.sack_permitted)
    offer_ts = config.timestamps and (peer is None or peer.timestamp is not None)
    offer_ws = config.window_scaling and (peer is None or peer.window_shift is not None)
    options: list = [MaximumSegmentSize(config.mss)]
    if offer_ts:
        options += [SackPermitted()] if offer_sack else [_NOP, _NOP]
        options.append(Timestamps(tsval, echo))
    elif offer_sack:
        options += [_NOP, _NOP, SackPermitted()]
    if offer_ws:
        options += [_NOP, WindowScale(our_shift)]
    return options


def sack_option(blocks: list[tuple[int, int]], aligned: bool) -> list:
    """A SACK option (with two leading NOPs when `aligned`) for wire-valued blocks."""
    option = Sack(tuple(blocks))
    return [_NOP, _NOP, option] if aligned else [option]
