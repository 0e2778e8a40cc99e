"""Bulk transfers through the simulated network: whatever the link does (loss,
reordering, duplication, a drop-tail bottleneck), the receiver gets exactly the bytes
sent, and both ends close in order. Also the helpers other TCP test files share."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impl.io.eventlog import MemoryLog
from impl.io.link import LinkConfig
from impl.io.sim import Network, TcpHost, tcp_pair
from impl.tcp.config import TcpConfig
from impl.tcp.connection import TcpConnection
from impl.tcp.events import ConnectionClosed, DataReceived, PeerClosed
from impl.wire.tcp_options import Sack

PORT = 5001
FAST_CLOSE = TcpConfig(time_wait=10)


@dataclass
class Side:
    """What one application end saw."""

    connection: TcpConnection | None = None
    received: bytearray = field(default_factory=bytearray)
    relative_seqs_ok: bool = True
    peer_closed: bool = False
    closed_reason: str | None = None
    events: list = field(default_factory=list)

    def absorb(self, to_send_on_fin: bytes | None = None) -> None:
        if self.connection is None:
            return
        for event in self.connection.events():
            self.events.append(event)
            if isinstance(event, DataReceived):
                # relative sequence numbers count from 1 and are contiguous
                if event.relative_seq != len(self.received) + 1:
                    self.relative_seqs_ok = False
                self.received += event.data
            elif isinstance(event, PeerClosed):
                self.peer_closed = True
                if to_send_on_fin is not None:
                    if to_send_on_fin:
                        self.connection.send(to_send_on_fin)
                    self.connection.close()
            elif isinstance(event, ConnectionClosed):
                self.closed_reason = event.reason


@dataclass
class Transfer:
    network: Network
    client_host: TcpHost
    server_host: TcpHost
    client: Side
    server: Side
    log: MemoryLog
    finished: bool
    upload_done_at: float | None  # when the server had every byte and the FIN

    @property
    def client_connection(self) -> TcpConnection:
        return self.client.connection

    @property
    def server_connection(self) -> TcpConnection:
        return self.server.connection


def run_transfer(
    upload: bytes,
    download: bytes = b"",
    *,
    forward: LinkConfig | None = None,
    backward: LinkConfig | None = None,
    seed: int = 0,
    client_config: TcpConfig = FAST_CLOSE,
    server_config: TcpConfig = FAST_CLOSE,
    wire: bool = False,
    capture: bool = False,
    time_limit: float = 120.0,
    filters=(),
    client_kwargs: dict | None = None,
    server_kwargs: dict | None = None,
) -> Transfer:
    """The client sends `upload` and closes; when the server sees the client's FIN it
    sends `download` and closes. Runs until both connections are CLOSED."""
    log = MemoryLog()
    network, client_host, server_host = tcp_pair(
        forward, backward, seed=seed, logger=log, wire=wire, capture=capture
    )
    network.filters.extend(filters)
    server_host.listen(PORT, server_config, **(server_kwargs or {}))
    client = Side(client_host.connect(
        server_host.address, PORT, network.now, client_config, **(client_kwargs or {})))
    client.connection.send(upload)
    client.connection.close()
    server = Side()
    upload_done_at = []

    def done() -> bool:
        if server.connection is None and server_host.accepted:
            server.connection = server_host.accepted[0]
        client.absorb()
        server.absorb(to_send_on_fin=download)
        if server.peer_closed and not upload_done_at:
            upload_done_at.append(network.now)
        return (
            client.connection.is_closed
            and server.connection is not None
            and server.connection.is_closed
        )

    finished = network.run(done, time_limit=time_limit)
    return Transfer(network, client_host, server_host, client, server, log, finished,
                    upload_done_at[0] if upload_done_at else None)


def assert_delivered(result: Transfer, upload: bytes, download: bytes = b"") -> None:
    assert result.finished, (
        f"not closed by t={result.network.now:.1f}: client "
        f"{result.client_connection.state}, server "
        f"{result.server_connection and result.server_connection.state}"
    )
    assert hashlib.sha256(result.server.received).digest() == hashlib.sha256(upload).digest()
    assert hashlib.sha256(result.client.received).digest() == hashlib.sha256(
        download).digest()
    assert result.client.relative_seqs_ok and result.server.relative_seqs_ok
    assert result.client.peer_closed and result.server.peer_closed
    assert result.client.closed_reason == "closed"
    assert result.server.closed_reason == "closed"


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


LAN = dict(delay=0.005, rate=50e6, queue_limit=256 * 1024)


@pytest.mark.parametrize(
    ("size", "link"),
    [
        (64 * 1024, LinkConfig(**LAN)),
        (2 * 1024 * 1024, LinkConfig(**LAN)),
        (1024 * 1024, LinkConfig(loss=0.01, **LAN)),
        (512 * 1024, LinkConfig(loss=0.05, **LAN)),
        (512 * 1024, LinkConfig(reorder=0.05, duplicate=0.05, **LAN)),
        (512 * 1024, LinkConfig(loss=0.02, reorder=0.05, duplicate=0.02, jitter=0.002,
                                **LAN)),
    ],
    ids=["64k-clean", "2M-clean", "1M-loss1", "512k-loss5", "512k-reorder-dup",
         "512k-everything"],
)
def test_upload_arrives_intact_and_both_sides_close(size, link):
    upload = payload(size, seed=size)
    result = run_transfer(upload, forward=link, backward=link, seed=size)
    assert_delivered(result, upload)


def test_both_directions_with_loss_in_both():
    upload, download = payload(300_000, 1), payload(500_000, 2)
    link = LinkConfig(loss=0.03, **LAN)
    result = run_transfer(upload, download, forward=link, backward=link, seed=7)
    assert_delivered(result, upload, download)


def test_transfer_through_the_wire_codec():
    # Every segment is emitted with build_packet and parsed back (checksums verified).
    upload, download = payload(200_000, 3), payload(100_000, 4)
    link = LinkConfig(loss=0.02, reorder=0.02, **LAN)
    result = run_transfer(upload, download, forward=link, backward=link, seed=3, wire=True)
    assert_delivered(result, upload, download)


def test_sequence_numbers_wrap_mid_transfer():
    # Both ISNs a little below 2**32: every sequence and ACK number wraps in flight.
    upload, download = payload(400_000, 5), payload(400_000, 6)
    link = LinkConfig(loss=0.02, **LAN)
    result = run_transfer(
        upload, download, forward=link, backward=link, seed=9, capture=True,
        client_kwargs={"iss": 2**32 - 100_000}, server_kwargs={"iss": 2**32 - 1},
    )
    assert_delivered(result, upload, download)
    seqs = [d.segment.header.seq for _, d in result.network.captured]
    assert max(seqs) > 2**32 - 50_000 and min(seqs) < 50_000  # both sides of the wrap


def test_goodput_fills_a_clean_bottleneck():
    # 2 MiB over 20 Mbit/s with a 20 ms RTT and a BDP-sized queue: after slow start the
    # sender keeps the link busy (no idle waiting on delayed ACKs or window limits).
    upload = payload(2 * 1024 * 1024, 8)
    link = LinkConfig(delay=0.01, rate=20e6, queue_limit=100_000)
    result = run_transfer(upload, forward=link, backward=LinkConfig(delay=0.01), seed=8)
    assert_delivered(result, upload)
    serialization = len(upload) * 8 / 20e6 * (1500 / 1448)
    assert result.upload_done_at < serialization * 1.15 + 0.1


def test_sack_blocks_are_generated_on_the_wire():
    upload = payload(500_000, 10)
    link = LinkConfig(loss=0.03, **LAN)
    result = run_transfer(upload, forward=link, seed=10, capture=True)
    assert_delivered(result, upload)
    server_port = PORT
    sacks = [
        d.segment.header.option(Sack)
        for _, d in result.network.captured
        if d.segment.header.src_port == server_port
    ]
    sacks = [s for s in sacks if s is not None]
    assert sacks, "losses must produce SACK blocks from the receiver"
    assert max(len(s.blocks) for s in sacks) >= 2
    # ... and the sender used them: far fewer retransmissions than go-back-N would do.
    sender = result.client_connection.sender
    lost = result.network.links[
        (result.client_host.address, result.server_host.address)].stats.lost
    assert sender.retrans_segs <= 2 * lost + 5


@settings(
    max_examples=int(__import__("os").environ.get("TCP_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**16),
    loss=st.sampled_from([0.0, 0.01, 0.05, 0.1]),
    reorder=st.sampled_from([0.0, 0.03, 0.1]),
    duplicate=st.sampled_from([0.0, 0.02, 0.1]),
    jitter=st.sampled_from([0.0, 0.001]),
    size=st.integers(1, 150_000),
    download=st.integers(0, 60_000),
    sack=st.booleans(),
    timestamps=st.booleans(),
)
def test_integrity_under_random_links(
    seed, loss, reorder, duplicate, jitter, size, download, sack, timestamps
):
    link = LinkConfig(delay=0.004, rate=30e6, queue_limit=128 * 1024, loss=loss,
                      reorder=reorder, duplicate=duplicate, jitter=jitter)
    # TIME-WAIT must outlast the peer's FIN retransmissions (2*MSL); virtual time is free.
    config = TcpConfig(time_wait=60, sack=sack, timestamps=timestamps)
    upload, back = payload(size, seed), payload(download, seed + 1)
    result = run_transfer(upload, back, forward=link, backward=link, seed=seed,
                          client_config=config, server_config=TcpConfig(time_wait=60),
                          time_limit=600)
    assert_delivered(result, upload, back)
