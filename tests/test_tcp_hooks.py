"""The upper-layer hook (how MPTCP will ride on a subflow): its options reach the wire on
the right segments within the 40-byte budget and the peer's MSS, with SACK blocks
squeezed into what is left; it sees every accepted segment with relative sequence
numbers, the establishment and the close; and it can abort the subflow."""

from __future__ import annotations

import pytest

from impl.io.link import LinkConfig
from impl.io.sim import tcp_pair
from impl.tcp.config import TcpConfig
from impl.tcp.hooks import NullHook, SegmentKind
from impl.wire.mptcp_options import DataSequenceMapping, Dss, MpCapable
from impl.wire.tcp_options import Sack, emit_tcp_options

from .test_tcp_transfer import PORT, assert_delivered, payload, run_transfer

DSS_SPACE = 4 + 14  # DSS header + 64-bit DSN mapping, no checksum (RFC 8684 3.3)


class RecordingHook(NullHook):
    """Puts MP_CAPABLE on handshake segments and a DSS mapping on every data segment
    (DSN = relative subflow sequence number), and records what it is shown."""

    def __init__(self) -> None:
        self.established = 0
        self.closed: list[str] = []
        self.received: list[tuple[int, int]] = []  # (relative seq, payload length)
        self.asked: list[tuple[SegmentKind, int, int, int]] = []

    def option_space(self, kind):
        return DSS_SPACE if kind is SegmentKind.DATA else 0

    def options_for_segment(self, kind, relative_seq, length, space):
        self.asked.append((kind, relative_seq, length, space))
        if kind in (SegmentKind.SYN, SegmentKind.SYNACK):
            return (MpCapable(),)
        if kind is SegmentKind.DATA:
            mapping = DataSequenceMapping(relative_seq, relative_seq, length)
            return (Dss(mapping=mapping),)
        return ()

    def on_segment_received(self, header, payload, relative_seq):
        self.received.append((relative_seq, len(payload)))

    def on_established(self):
        self.established += 1

    def on_closed(self, reason):
        self.closed.append(reason)


def test_hook_options_on_the_wire_within_budget_and_mss():
    client_hook = RecordingHook()
    server_hooks: list[RecordingHook] = []

    def server_hook():
        server_hooks.append(RecordingHook())
        return server_hooks[-1]

    upload = payload(300_000, 21)
    link = LinkConfig(delay=0.005, rate=50e6, loss=0.03)
    result = run_transfer(
        upload, b"reply" * 100, forward=link, backward=link, seed=21, wire=True,
        capture=True, client_kwargs={"hook": client_hook},
        server_kwargs={"hook_factory": server_hook},
    )
    assert_delivered(result, upload, b"reply" * 100)
    (server,) = server_hooks
    segments = [d.segment for _, d in result.network.captured]
    syn, synack = segments[0], segments[1]
    assert syn.header.mptcp_options() == (MpCapable(),)
    assert synack.header.mptcp_options() == (MpCapable(),)
    client_iss = result.client_connection.iss
    mss = result.client_connection.negotiated.send_mss
    data_segments = [s for s in segments if s.payload and s.header.dst_port == PORT]
    assert data_segments
    for segment in data_segments:
        (dss,) = segment.header.mptcp_options()
        relative = (segment.header.seq - client_iss) & 0xFFFFFFFF
        assert dss.mapping.subflow_sequence == relative
        assert dss.mapping.data_level_length == len(segment.payload)
        option_bytes = len(emit_tcp_options(segment.header.options))
        assert option_bytes <= 40
        assert option_bytes + len(segment.payload) <= mss  # RFC 9293 3.7.1
    # With DSS on the server's data segments too, SACK blocks still fit in what is left.
    server_data = [s for s in segments if s.payload and s.header.src_port == PORT]
    assert all(s.header.mptcp_options() for s in server_data)
    sacks = [s.header.option(Sack) for s in segments if s.header.option(Sack)]
    assert sacks and max(len(s.blocks) for s in sacks) >= 2
    assert all(len(emit_tcp_options(s.header.options)) <= 40 for s in segments)
    # The hook saw the handshake, every accepted segment, and the close.
    for hook in (client_hook, server):
        assert hook.established == 1 and hook.closed == ["closed"]
    delivered = sorted({(seq, length) for seq, length in server.received if length})
    position = 1
    for seq, length in delivered:  # relative numbering starts at 1 and covers all
        assert seq <= position
        position = max(position, seq + length)
    assert position == len(upload) + 1
    assert server.received[0] == (0, 0)  # the SYN, relative sequence 0
    kinds = {kind for kind, *_ in client_hook.asked}
    assert kinds == {SegmentKind.SYN, SegmentKind.DATA, SegmentKind.ACK}


class AbortingHook(NullHook):
    """Rejects the subflow on the first data segment (as MPTCP does when a join's HMAC
    fails or a mapping is bad)."""

    def __init__(self) -> None:
        self.connection = None

    def on_segment_received(self, header, payload, relative_seq):
        if payload and self.connection is not None:
            self.connection.abort()


def test_hook_can_abort_the_subflow():
    hook = AbortingHook()

    def factory():
        return hook

    network, client_host, server_host = tcp_pair(LinkConfig(delay=0.005), seed=2)
    server_host.listen(PORT, TcpConfig(), hook_factory=factory)
    client = client_host.connect(server_host.address, PORT, 0.0, TcpConfig())
    network.run(lambda: bool(server_host.accepted), 5)
    hook.connection = server_host.accepted[0]
    client.send(b"hello")
    assert network.run(lambda: client.is_closed, 5)
    assert hook.connection.close_reason == "aborted"
    assert client.close_reason == "reset"


class GreedyHook(NullHook):
    """Declares no option space for data but returns a 20-byte option anyway."""

    def options_for_segment(self, kind, relative_seq, length, space):
        if kind is SegmentKind.DATA:
            return (MpCapable(sender_key=1, receiver_key=2),)  # 20 bytes
        return ()


def test_hook_exceeding_its_declared_space_is_an_error():
    network, client_host, server_host = tcp_pair(LinkConfig(delay=0.001), seed=3)
    server_host.listen(PORT, TcpConfig())
    client = client_host.connect(server_host.address, PORT, 0.0, TcpConfig(),
                                 hook=GreedyHook())
    network.run(lambda: client.negotiated is not None and client.sender.cc is not None, 1)
    client.send(b"x" * 5000)
    with pytest.raises(ValueError, match="hook options take 20 bytes; 0 allowed"):
        client.segments_to_send(network.now)
