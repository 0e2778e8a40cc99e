"""TCP options (RFC 9293 section 3.1 and 3.2; RFC 7323; RFC 2018) and the list codec.

`parse_tcp_options` turns the options area of a TCP header into a tuple of values, kind
30 going to the MPTCP option codec (`impl.wire.mptcp_options`). NOP and EOL are kept as
values so that canonical bytes re-emit exactly. Parsing stops at the first EOL (RFC 9293
3.1: "the end of the option list"); whatever follows it is padding and is not read.

`emit_tcp_options` concatenates and pads with zero bytes (EOL) to a multiple of 4, as the
data offset counts 32-bit words. Canonical bytes are what `emit_tcp_options` produces
from a list whose encoding is 4-aligned or ends with EOL; for those,
`emit(parse(b)) == b` and `parse(emit(x)) == x`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import BytesLike, WireError, byte_view, check_bytes, check_uint
from .mptcp_options import MPTCP_OPTION_TYPES, TCPOPT_MPTCP, MptcpOption, parse_mptcp_option

__all__ = [
    "MAX_OPTIONS_LENGTH",
    "EndOfOptionList",
    "MaximumSegmentSize",
    "NoOperation",
    "Sack",
    "SackPermitted",
    "TcpOption",
    "Timestamps",
    "UnknownTcpOption",
    "WindowScale",
    "emit_tcp_options",
    "parse_tcp_options",
]

MAX_OPTIONS_LENGTH = 40  # a 4-bit data offset allows 60 header bytes, 20 are fixed

KIND_EOL = 0
KIND_NOP = 1
KIND_MSS = 2
KIND_WINDOW_SCALE = 3
KIND_SACK_PERMITTED = 4
KIND_SACK = 5
KIND_TIMESTAMPS = 8

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TIMESTAMPS = struct.Struct("!II")


@dataclass(frozen=True, slots=True)
class EndOfOptionList:
    """Kind 0: marks the end of the options; the bytes after it are padding."""

    def emit(self) -> bytes:
        return b"\x00"


@dataclass(frozen=True, slots=True)
class NoOperation:
    """Kind 1: one byte of filler, used to align the next option."""

    def emit(self) -> bytes:
        return b"\x01"


@dataclass(frozen=True, slots=True)
class MaximumSegmentSize:
    """Kind 2, length 4 (RFC 9293 3.7.1): the largest segment the sender will receive."""

    mss: int

    def __post_init__(self) -> None:
        check_uint("tcp.mss", self.mss, 16)

    def emit(self) -> bytes:
        return bytes((KIND_MSS, 4)) + _U16.pack(self.mss)


@dataclass(frozen=True, slots=True)
class WindowScale:
    """Kind 3, length 3 (RFC 7323 2.2): the shift count. Values above 14 are kept as
    sent; RFC 7323 2.3 tells the receiver to use 14 instead, a policy, not a codec rule."""

    shift: int

    def __post_init__(self) -> None:
        check_uint("tcp.window_scale", self.shift, 8)

    def emit(self) -> bytes:
        return bytes((KIND_WINDOW_SCALE, 3, self.shift))


@dataclass(frozen=True, slots=True)
class SackPermitted:
    """Kind 4, length 2 (RFC 2018 section 2), on SYNs only."""

    def emit(self) -> bytes:
        return bytes((KIND_SACK_PERMITTED, 2))


@dataclass(frozen=True, slots=True)
class Sack:
    """Kind 5 (RFC 2018 section 3): 1 to 4 (left edge, right edge) blocks of 32 bits."""

    blocks: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.blocks, tuple | list):
            raise WireError("tcp.sack.blocks", -1, "must be a tuple of (left, right) pairs")
        blocks = tuple(tuple(block) for block in self.blocks)
        if not 1 <= len(blocks) <= 4:
            raise WireError("tcp.sack.blocks", -1, f"{len(blocks)} blocks; 1 to 4 fit")
        for block in blocks:
            if len(block) != 2:
                raise WireError("tcp.sack.blocks", -1, "each block is a (left, right) pair")
            check_uint("tcp.sack.left", block[0], 32)
            check_uint("tcp.sack.right", block[1], 32)
        object.__setattr__(self, "blocks", blocks)

    def emit(self) -> bytes:
        out = bytes((KIND_SACK, 2 + 8 * len(self.blocks)))
        for left, right in self.blocks:
            out += _U32.pack(left) + _U32.pack(right)
        return out


@dataclass(frozen=True, slots=True)
class Timestamps:
    """Kind 8, length 10 (RFC 7323 section 3): TSval and TSecr."""

    value: int
    echo_reply: int

    def __post_init__(self) -> None:
        check_uint("tcp.timestamps.value", self.value, 32)
        check_uint("tcp.timestamps.echo_reply", self.echo_reply, 32)

    def emit(self) -> bytes:
        return bytes((KIND_TIMESTAMPS, 10)) + _TIMESTAMPS.pack(self.value, self.echo_reply)


_KNOWN_KINDS = frozenset(
    (KIND_EOL, KIND_NOP, KIND_MSS, KIND_WINDOW_SCALE, KIND_SACK_PERMITTED, KIND_SACK,
     KIND_TIMESTAMPS, TCPOPT_MPTCP)
)


@dataclass(frozen=True, slots=True)
class UnknownTcpOption:
    """Any other kind, kept as its body bytes (everything after kind and length), so the
    segment re-emits unchanged (RFC 9293 3.1: unknown options must be ignored, and a
    middlebox-faithful endpoint must not drop them)."""

    kind: int
    data: bytes = b""

    def __post_init__(self) -> None:
        check_uint("tcp.option.kind", self.kind, 8)
        if self.kind in _KNOWN_KINDS:
            raise WireError("tcp.option.kind", -1, f"{self.kind} is known; use its own class")
        data = check_bytes("tcp.option.data", self.data)
        if len(data) > 253:
            raise WireError("tcp.option.data", -1, f"{len(data)} bytes; at most 253 fit")
        object.__setattr__(self, "data", data)

    def emit(self) -> bytes:
        return bytes((self.kind, 2 + len(self.data))) + self.data


TcpOption = (
    EndOfOptionList
    | NoOperation
    | MaximumSegmentSize
    | WindowScale
    | SackPermitted
    | Sack
    | Timestamps
    | UnknownTcpOption
    | MptcpOption
)

TCP_OPTION_TYPES = (
    EndOfOptionList, NoOperation, MaximumSegmentSize, WindowScale, SackPermitted, Sack,
    Timestamps, UnknownTcpOption, *MPTCP_OPTION_TYPES,
)

# kind -> (allowed lengths, or None for "any >= 2")
_FIXED_LENGTHS = {
    KIND_MSS: (4,),
    KIND_WINDOW_SCALE: (3,),
    KIND_SACK_PERMITTED: (2,),
    KIND_SACK: (10, 18, 26, 34),
    KIND_TIMESTAMPS: (10,),
}
_NAMES = {
    KIND_MSS: "mss",
    KIND_WINDOW_SCALE: "window_scale",
    KIND_SACK_PERMITTED: "sack_permitted",
    KIND_SACK: "sack",
    KIND_TIMESTAMPS: "timestamps",
}


def _parse_known(kind: int, body: memoryview) -> TcpOption:
    if kind == KIND_MSS:
        return MaximumSegmentSize(_U16.unpack_from(body)[0])
    if kind == KIND_WINDOW_SCALE:
        return WindowScale(body[0])
    if kind == KIND_SACK_PERMITTED:
        return SackPermitted()
    if kind == KIND_SACK:
        words = struct.unpack(f"!{len(body) // 4}I", body)
        return Sack(tuple(zip(words[0::2], words[1::2], strict=True)))
    return Timestamps(*_TIMESTAMPS.unpack_from(body))


def parse_tcp_options(data: BytesLike) -> tuple[TcpOption, ...]:
    """The options in a TCP header's options area (at most 40 bytes).

    Raises `WireError` (offsets relative to `data`) for a length byte that is missing,
    below 2, past the end of the area, or wrong for its kind.
    """
    view = byte_view(data)
    if len(view) > MAX_OPTIONS_LENGTH:
        raise WireError("tcp.options", 0, f"{len(view)} bytes; the area holds at most 40")
    options: list[TcpOption] = []
    position = 0
    end = len(view)
    while position < end:
        kind = view[position]
        if kind == KIND_EOL:
            options.append(EndOfOptionList())
            break
        if kind == KIND_NOP:
            options.append(NoOperation())
            position += 1
            continue
        if position + 1 >= end:
            raise WireError("tcp.option.length", position + 1, f"kind {kind} has no length byte")
        length = view[position + 1]
        if length < 2:
            raise WireError("tcp.option.length", position + 1, f"{length} is shorter than 2")
        if position + length > end:
            raise WireError(
                "tcp.option.length",
                position + 1,
                f"{length} for kind {kind} runs past the options area ({end - position} left)",
            )
        if kind == TCPOPT_MPTCP:
            options.append(parse_mptcp_option(view, position))
        elif kind in _FIXED_LENGTHS:
            if length not in _FIXED_LENGTHS[kind]:
                raise WireError(
                    f"tcp.option.{_NAMES[kind]}.length",
                    position + 1,
                    f"{length} is not one of {_FIXED_LENGTHS[kind]}",
                )
            options.append(_parse_known(kind, view[position + 2 : position + length]))
        else:
            options.append(UnknownTcpOption(kind, bytes(view[position + 2 : position + length])))
        position += length
    return tuple(options)


def emit_tcp_options(options: tuple[TcpOption, ...] | list[TcpOption]) -> bytes:
    """The options' bytes, padded with EOL (zero) bytes to a multiple of 4 bytes."""
    for option in options:
        if not isinstance(option, TCP_OPTION_TYPES):
            raise WireError("tcp.options", -1, f"{option!r} is not a TCP option value")
    out = b"".join(option.emit() for option in options)
    out += bytes(-len(out) % 4)
    if len(out) > MAX_OPTIONS_LENGTH:
        raise WireError("tcp.options", -1, f"{len(out)} bytes; the area holds at most 40")
    return out
