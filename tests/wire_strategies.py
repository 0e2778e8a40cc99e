"""Hypothesis strategies for every `impl.wire` value, reusable by any test.

Every strategy draws valid values only (constructors would reject others). The option
lists and headers are *canonical*: their encoding needs no EOL padding (it is 4-aligned
or already ends with EOL), so `parse(emit(x)) == x` holds exactly.
"""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from impl.wire import (
    AddAddr,
    DataSequenceMapping,
    Dss,
    EndOfOptionList,
    IPv4Header,
    IPv6Header,
    MaximumSegmentSize,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpTcpRst,
    NoOperation,
    Packet,
    RemoveAddr,
    Sack,
    SackPermitted,
    TcpFlags,
    TcpHeader,
    Timestamps,
    UnknownMptcpOption,
    UnknownTcpOption,
    WindowScale,
)

u4 = st.integers(0, 0xF)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)

ipv4_addresses = st.builds(ipaddress.IPv4Address, u32)
ipv6_addresses = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
ip_addresses = st.one_of(ipv4_addresses, ipv6_addresses)


# -- MPTCP options (RFC 8684 section 3) -------------------------------------------------


@st.composite
def mp_capables(draw: st.DrawFn) -> MpCapable:
    """Any of the five lengths: 4, 12, 20, 22, 24."""
    present = draw(st.integers(0, 4))
    values = [draw(u64), draw(u64), draw(u16), draw(u16)]
    sender_key, receiver_key, data_length, checksum = (
        value if index < present else None for index, value in enumerate(values)
    )
    return MpCapable(
        version=draw(u4),
        checksum_required=draw(st.booleans()),
        extensibility=draw(st.booleans()),
        no_initial_join=draw(st.booleans()),
        hmac_sha256=draw(st.booleans()),
        reserved_flags=draw(st.integers(0, 0xF)) << 1,
        sender_key=sender_key,
        receiver_key=receiver_key,
        data_length=data_length,
        checksum=checksum,
    )


mp_join_syns = st.builds(MpJoinSyn, st.booleans(), u8, u32, u32)
mp_join_synacks = st.builds(MpJoinSynAck, st.booleans(), u8, u64, u32)
mp_join_acks = st.builds(MpJoinAck, st.binary(min_size=20, max_size=20))
mp_joins = st.one_of(mp_join_syns, mp_join_synacks, mp_join_acks)


@st.composite
def data_sequence_mappings(draw: st.DrawFn) -> DataSequenceMapping:
    dsn_is_64bit = draw(st.booleans())
    return DataSequenceMapping(
        dsn=draw(u64 if dsn_is_64bit else u32),
        subflow_sequence=draw(u32),
        data_level_length=draw(u16),
        checksum=draw(st.none() | u16),
        dsn_is_64bit=dsn_is_64bit,
    )


@st.composite
def dsses(draw: st.DrawFn) -> Dss:
    """Every flag combination: ack absent/32/64, mapping absent/32/64 (+ checksum), F."""
    ack_is_64bit = draw(st.booleans())
    return Dss(
        data_ack=draw(st.none() | (u64 if ack_is_64bit else u32)),
        data_ack_is_64bit=ack_is_64bit,
        mapping=draw(st.none() | data_sequence_mappings()),
        data_fin=draw(st.booleans()),
    )


@st.composite
def add_addrs(draw: st.DrawFn) -> AddAddr:
    """IPv4/IPv6, with or without port, announcement (HMAC) or echo."""
    echo = draw(st.booleans())
    return AddAddr(
        address_id=draw(u8),
        address=draw(ip_addresses),
        port=draw(st.none() | u16),
        truncated_hmac=None if echo else draw(u64),
        echo=echo,
    )


def remove_addrs(max_ids: int = 37) -> st.SearchStrategy[RemoveAddr]:
    """REMOVE_ADDR with 1..max_ids IDs (37 fill the 40-byte options area)."""
    return st.builds(
        RemoveAddr, st.lists(u8, min_size=1, max_size=max_ids).map(tuple)
    )


mp_prios = st.builds(MpPrio, st.booleans())
mp_fails = st.builds(MpFail, u64)
mp_fastcloses = st.builds(MpFastclose, u64)
mp_tcprsts = st.builds(MpTcpRst, u8, st.booleans())
unknown_mptcp_options = st.builds(
    UnknownMptcpOption, st.integers(9, 15), st.binary(max_size=20), u4
)

mptcp_options = st.one_of(
    mp_capables(),
    mp_joins,
    dsses(),
    add_addrs(),
    remove_addrs(),
    mp_prios,
    mp_fails,
    mp_fastcloses,
    mp_tcprsts,
    unknown_mptcp_options,
)


# -- plain TCP options ------------------------------------------------------------------

sacks = st.builds(
    Sack, st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(tuple)
)
_KNOWN_TCP_KINDS = {0, 1, 2, 3, 4, 5, 8, 30}
unknown_tcp_options = st.builds(
    UnknownTcpOption,
    u8.filter(lambda kind: kind not in _KNOWN_TCP_KINDS),
    st.binary(max_size=12),
)
plain_tcp_options = st.one_of(
    st.just(NoOperation()),
    st.builds(MaximumSegmentSize, u16),
    st.builds(WindowScale, u8),
    st.just(SackPermitted()),
    sacks,
    st.builds(Timestamps, u32, u32),
    unknown_tcp_options,
)
tcp_options = st.one_of(plain_tcp_options, mptcp_options)


@st.composite
def canonical_tcp_option_lists(draw: st.DrawFn, max_length: int = 40) -> tuple:
    """Options (no EOL inside) that fit `max_length` bytes, ended by EOL when their
    encoding is not 4-aligned, so that emitting adds no padding that parses back."""
    options: list = []
    used = 0
    for _ in range(draw(st.integers(0, 6))):
        option = draw(tcp_options)
        size = len(option.emit())
        if used + size > max_length:
            continue
        options.append(option)
        used += size
    if used % 4 or draw(st.booleans()) and used < max_length:
        options.append(EndOfOptionList())
    return tuple(options)


# -- headers and packets ----------------------------------------------------------------

tcp_flags = st.builds(TcpFlags, u8)


@st.composite
def tcp_headers(draw: st.DrawFn) -> TcpHeader:
    return TcpHeader(
        src_port=draw(u16),
        dst_port=draw(u16),
        seq=draw(u32),
        ack=draw(u32),
        flags=draw(tcp_flags),
        window=draw(u16),
        urgent=draw(u16),
        options=draw(canonical_tcp_option_lists()),
    )


ipv4_options = st.integers(0, 10).flatmap(lambda words: st.binary(min_size=4 * words,
                                                                   max_size=4 * words))


@st.composite
def ipv4_headers(draw: st.DrawFn, protocol: int | None = None, fragments: bool = True):
    more_fragments = draw(st.booleans()) if fragments else False
    return IPv4Header(
        src=draw(ipv4_addresses),
        dst=draw(ipv4_addresses),
        protocol=draw(u8) if protocol is None else protocol,
        ttl=draw(u8),
        identification=draw(u16),
        tos=draw(u8),
        dont_fragment=draw(st.booleans()),
        more_fragments=more_fragments,
        fragment_offset=draw(st.integers(0, 0x1FFF)) if fragments else 0,
        options=draw(ipv4_options),
    )


@st.composite
def ipv6_headers(draw: st.DrawFn, next_header: int | None = None):
    return IPv6Header(
        src=draw(ipv6_addresses),
        dst=draw(ipv6_addresses),
        next_header=draw(u8) if next_header is None else next_header,
        hop_limit=draw(u8),
        traffic_class=draw(u8),
        flow_label=draw(st.integers(0, 0xFFFFF)),
    )


@st.composite
def packets(draw: st.DrawFn, max_payload: int = 64) -> Packet:
    """IPv4 or IPv6 packets carrying TCP (no fragments), as `parse_packet` returns them."""
    ip = draw(st.one_of(ipv4_headers(protocol=6, fragments=False), ipv6_headers(next_header=6)))
    payload = draw(st.binary(max_size=max_payload))
    return Packet(ip=ip, tcp=draw(tcp_headers()), payload=memoryview(payload))
