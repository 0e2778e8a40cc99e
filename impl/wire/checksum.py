"""Internet checksums: the ones'-complement sum of RFC 1071, the TCP pseudo-headers of
RFC 9293 section 3.1 (IPv4) and RFC 8200 section 8.1 (IPv6), and the DSS checksum
pseudo-header of RFC 8684 section 3.3.1.

The sum is computed with big integers rather than a Python loop over 16-bit words:
because 2**16 == 1 (mod 0xffff), a buffer read as one big-endian integer is congruent,
modulo 0xffff, to the sum of its 16-bit words, which is what the ones'-complement sum
is (with end-around carry). `int.from_bytes` reads a `memoryview` without copying it, so
a 64 KB TSO super-segment costs one pass in C.
"""

from __future__ import annotations

import ipaddress

from .errors import BytesLike, WireError

__all__ = ["dss_checksum", "internet_checksum", "ones_complement_sum", "pseudo_header"]

_MODULUS = 0xFFFF


def ones_complement_sum(*chunks: BytesLike) -> int:
    """The 16-bit ones'-complement sum (RFC 1071) of the concatenation of `chunks`.

    An odd total length is padded with one zero byte at the end, as RFC 9293 3.1 says.
    Chunks of odd length are fine anywhere: they are treated as concatenated, not padded.
    """
    accumulator = 0
    total_length = 0
    nonzero = False
    for chunk in chunks:
        length = chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)
        value = int.from_bytes(chunk, "big")
        # Appending `length` bytes shifts what came before left by 8*length bits;
        # modulo 0xffff only the parity of `length` matters (256**2 == 1).
        accumulator = (accumulator * (256 if length % 2 else 1) + value) % _MODULUS
        total_length += length
        nonzero = nonzero or value != 0
    if total_length % 2:
        accumulator = accumulator * 256 % _MODULUS
    # End-around carry never produces 0 from a non-zero sum: it produces 0xffff.
    if accumulator == 0 and nonzero:
        return _MODULUS
    return accumulator


def internet_checksum(*chunks: BytesLike) -> int:
    """The Internet checksum (ones' complement of the ones'-complement sum) of `chunks`.

    Over data that already holds a correct checksum the result is 0, which is how
    receivers verify (RFC 1071 section 1).
    """
    return ~ones_complement_sum(*chunks) & 0xFFFF


def pseudo_header(
    src: ipaddress.IPv4Address | ipaddress.IPv6Address,
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
    protocol: int,
    length: int,
) -> bytes:
    """The pseudo-header a transport checksum covers, IPv4 or IPv6 by address type.

    IPv4 (RFC 9293 3.1): src, dst, zero, protocol, 16-bit TCP length.
    IPv6 (RFC 8200 8.1): src, dst, 32-bit upper-layer length, 3 zero bytes, next header.
    """
    if isinstance(src, ipaddress.IPv4Address) and isinstance(dst, ipaddress.IPv4Address):
        if not 0 <= length <= 0xFFFF:
            raise WireError("pseudo_header.length", -1, f"{length} does not fit 16 bits")
        return src.packed + dst.packed + bytes((0, protocol & 0xFF)) + length.to_bytes(2, "big")
    if isinstance(src, ipaddress.IPv6Address) and isinstance(dst, ipaddress.IPv6Address):
        if not 0 <= length <= 0xFFFFFFFF:
            raise WireError("pseudo_header.length", -1, f"{length} does not fit 32 bits")
        return (
            src.packed
            + dst.packed
            + length.to_bytes(4, "big")
            + bytes((0, 0, 0, protocol & 0xFF))
        )
    raise WireError(
        "pseudo_header.address", -1, "src and dst must both be IPv4Address or both IPv6Address"
    )


def dss_checksum(
    dsn: int, subflow_sequence: int, data_level_length: int, payload: BytesLike
) -> int:
    """The DSS checksum of RFC 8684 section 3.3.1.

    It covers a pseudo-header of the 64-bit DSN, the 32-bit relative subflow sequence
    number, the 16-bit data-level length and a 16-bit zero (where the checksum itself
    sits), followed by the payload of the mapping. The DSN is always the full 64 bits,
    even when the option carried only its low 32 bits.
    """
    header = (
        (dsn & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
        + (subflow_sequence & 0xFFFFFFFF).to_bytes(4, "big")
        + (data_level_length & 0xFFFF).to_bytes(2, "big")
        + b"\x00\x00"
    )
    return internet_checksum(header, payload)
