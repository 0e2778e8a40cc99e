"""The one error type of `impl.wire`, and the small field checks every codec shares.

Every parser in this package raises `WireError` and nothing else on malformed input
(truncated headers, wrong option lengths, bad checksums when asked to verify, ...), as
smoltcp's `wire` module never panics: a receiver must survive any bytes a peer or a
middlebox sends (RFC 8684 section 3.7 asks MPTCP to degrade, not crash).

Construction of a value with an out-of-range field (an address ID of 300, a 65-bit key)
raises `WireError` too, with `offset == -1` because no byte position is involved.
`WireError` is a `ValueError`, so callers that only know Python's conventions still
catch it.
"""

from __future__ import annotations

__all__ = ["BytesLike", "WireError", "byte_view", "check_bool", "check_bytes", "check_uint"]

#: What every parser accepts. Parsers wrap it in a `memoryview` and never copy payloads.
BytesLike = bytes | bytearray | memoryview


class WireError(ValueError):
    """Malformed bytes or an impossible field value.

    `field` names what is wrong in dotted form ("tcp.data_offset", "mptcp.dss.length"),
    `offset` is the byte position of the problem in the buffer handed to the outermost
    parser (-1 when a value was constructed, not parsed). The message reads
    "FIELD at offset N: what is wrong".
    """

    def __init__(self, field: str, offset: int, message: str) -> None:
        super().__init__(f"{field} at offset {offset}: {message}")
        self.field = field
        self.offset = offset
        self.reason = message

    def shifted(self, delta: int) -> WireError:
        """The same error seen from a buffer that starts `delta` bytes earlier.

        Used by outer parsers (IP around TCP, TCP header around its options) so that the
        offset always points into the buffer the caller handed in.
        """
        if self.offset < 0:
            return self
        return WireError(self.field, self.offset + delta, self.reason)


def check_uint(field: str, value: object, bits: int) -> int:
    """`value` as an int in [0, 2**bits), else a construction `WireError`."""
    # bool is an int subclass; a flag passed where a number belongs is a caller bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError(field, -1, f"must be an int, got {type(value).__name__}")
    if not 0 <= value < (1 << bits):
        raise WireError(field, -1, f"{value} does not fit in {bits} unsigned bits")
    return value


def check_bool(field: str, value: object) -> bool:
    """`value` must be a real bool, so that equality after a round trip is exact."""
    if not isinstance(value, bool):
        raise WireError(field, -1, f"must be a bool, got {type(value).__name__}")
    return value


def check_bytes(field: str, value: object, length: int | None = None) -> bytes:
    """`value` as immutable `bytes` (of exactly `length` bytes when given)."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise WireError(field, -1, f"must be bytes, got {type(value).__name__}")
    data = bytes(value)
    if length is not None and len(data) != length:
        raise WireError(field, -1, f"must be {length} bytes, got {len(data)}")
    return data


def byte_view(data: object, field: str = "data") -> memoryview:
    """A flat, unsigned-byte `memoryview` of `data`, without copying it."""
    try:
        view = memoryview(data)  # type: ignore[arg-type]
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
    except (TypeError, ValueError) as error:
        raise WireError(field, -1, f"not a flat bytes-like object: {error}") from None
    return view
