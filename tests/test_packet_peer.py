"""The scripted packet peer (impl/lab/packet_peer.py) against our endpoint over real TUN
devices and a Linux router namespace: each odd segment Linux never sends goes out, our
endpoint handles it as RFC 8684 says, and the capture taken at our endpoint is accepted
by the spec monitor with the rule about that case fired."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from impl.io.pcap import read_pcap
from impl.lab.packet_peer import PacketPeerRun, packet_peer_lab
from impl.wire import parse_packet
from impl.wire.mptcp_options import MpTcpRst
from model_checks.conformance.judge import monitor_capture

pytestmark = pytest.mark.netns

PORT = 5201


def _we_listen(run: PacketPeerRun):
    """Our server, the packet peer's client connects and sends a few bytes."""
    run.host.listen(PORT, run.config)
    theirs = run.peer.host.connect(run.our_addresses[0], PORT, time.monotonic(),
                                   run.peer.config)
    theirs.send(b"hello")
    assert run.run(lambda: len(run.received) >= 5, 5), "the peer's data never arrived"
    assert run.run(lambda: theirs.remote_key is not None, 2)
    return run.connection, theirs


def _we_connect(run: PacketPeerRun):
    """Our client connects to the packet peer's server, which sends a few bytes."""
    run.peer.host.listen(PORT, run.peer.config)
    ours = run.connection = run.host.connect(run.peer_addresses[0], PORT, time.monotonic(),
                                             run.config)
    assert run.run(lambda: run.peer.connection is not None, 5), "no connection at the peer"
    run.peer.connection.send(b"hello")
    assert run.run(lambda: len(run.received) >= 5 and ours.fully_established, 5)
    return ours, run.peer.connection


def _judged(pcap: Path, run_addresses: list[str]) -> set[str]:
    """The rules the monitor fired on our endpoint's capture; every connection accepted."""
    report = monitor_capture(pcap, run_addresses[0], taken_at_endpoint=True)
    assert report.connections and not report.unparseable
    fired: set[str] = set()
    for connection in report.connections:
        assert connection.verdict == "accepted", (connection.description,
                                                  connection.divergence)
        fired |= set(connection.fired)
    return fired


def _mptcp_resets_sent(pcap: Path, ours: str) -> list[MpTcpRst]:
    resets = []
    for _, data in read_pcap(pcap):
        packet = parse_packet(data)
        option = packet.tcp.option(MpTcpRst)
        if str(packet.ip.src) == ours and option is not None:
            resets.append(option)
    return resets


def test_a_join_third_ack_with_a_wrong_hmac_is_reset_and_counted(tmp_path: Path):
    pcap = tmp_path / "join-ack.pcap"
    with packet_peer_lab(pcap, paths=2, seed=1) as run:
        ours, theirs = _we_listen(run)
        run.peer.arm_join_ack_bad_hmac()
        join = theirs.add_subflow(run.peer_addresses[1], now=time.monotonic())
        assert run.run(lambda: join.dead, 5), "the bad join was not reset"
        assert run.peer.odd == ["MP_JOIN third ACK with a wrong HMAC"]
        assert run.host.counters.snapshot()["MPJoinAckHMacFailure"] == 1
        assert not ours.is_closed and [sf.usable for sf in ours.subflows] == [True, False]
        addresses = run.our_addresses
    assert _mptcp_resets_sent(pcap, addresses[0]), "no MP_TCPRST on the reset (3.6)"
    assert "subflow:sf_join_ack_hmac_failure" in _judged(pcap, addresses)


def test_a_join_syn_ack_with_a_wrong_hmac_is_reset_and_counted(tmp_path: Path):
    pcap = tmp_path / "join-synack.pcap"
    with packet_peer_lab(pcap, paths=2, seed=2) as run:
        ours, _ = _we_connect(run)
        run.peer.arm_join_syn_ack_bad_hmac()
        join = ours.add_subflow(run.our_addresses[1], now=time.monotonic())
        assert run.run(lambda: join.dead, 5), "our endpoint kept the bad join"
        assert run.host.counters.snapshot()["MPJoinSynAckHMacFailure"] == 1
        addresses = run.our_addresses
    assert _mptcp_resets_sent(pcap, addresses[1])
    assert "subflow:sf_join_synack_hmac_failure" in _judged(pcap, addresses)


def test_an_mp_fastclose_with_the_wrong_key_is_ignored(tmp_path: Path):
    pcap = tmp_path / "fastclose.pcap"
    with packet_peer_lab(pcap, paths=1, seed=3) as run:
        ours, theirs = _we_listen(run)
        run.peer.send_fastclose(right_key=False)
        run.run_for(0.3)
        assert not ours.is_closed and ours.subflows[0].usable
        theirs.send(b"still here")  # the connection goes on (3.5: the key must match)
        assert run.run(lambda: run.received.endswith(b"still here"), 5)
        addresses = run.our_addresses
    assert "connection:conn_fastclose_bad_key" in _judged(pcap, addresses)


def test_an_add_addr_with_a_wrong_hmac_is_dropped(tmp_path: Path):
    pcap = tmp_path / "add-addr.pcap"
    with packet_peer_lab(pcap, paths=2, seed=4) as run:
        ours, theirs = _we_connect(run)
        run.peer.arm_add_addr_bad_hmac()
        theirs.announce_address(run.peer_addresses[1])
        run.run_for(0.5)
        assert run.peer.odd == ["ADD_ADDR with a wrong HMAC"]
        assert run.host.counters.snapshot()["AddAddrDrop"] >= 1
        assert not ours.signals.remote_addresses, "a bad-HMAC address was kept (3.4.1)"
        addresses = run.our_addresses
    assert "connection:conn_address_announcement_dropped" in _judged(pcap, addresses)


def test_an_mp_fail_makes_our_endpoint_fall_back_with_an_infinite_mapping(tmp_path: Path):
    pcap = tmp_path / "mp-fail.pcap"
    with packet_peer_lab(pcap, paths=1, seed=5) as run:
        ours, _ = _we_listen(run)
        run.peer.send_mp_fail()
        run.run_for(0.3)
        ours.send(b"after the failure")
        assert run.run(lambda: run.peer_received.endswith(b"after the failure"), 5)
        counters = run.host.counters.snapshot()
        assert ours.fallback and counters["MPFailRx"] == 1 and counters["InfiniteMapTx"] == 1
        addresses = run.our_addresses
    fired = _judged(pcap, addresses)
    assert {"connection:conn_recv_mp_fail", "subflow:sf_send_infinite_mapping"} <= fired


def test_a_payload_corrupted_under_its_dss_checksum_makes_us_send_mp_fail(tmp_path: Path):
    pcap = tmp_path / "corrupt.pcap"
    with packet_peer_lab(pcap, paths=1, seed=6, checksums=True) as run:
        ours, theirs = _we_connect(run)
        run.peer.arm_corrupt_data()
        theirs.send(b"x" * 40)
        assert run.run(lambda: run.host.counters.snapshot().get("MPFailTx", 0) == 1, 5)
        assert run.host.counters.snapshot()["DataCsumErr"] == 1
        addresses = run.our_addresses
    assert "subflow:sf_send_mp_fail" in _judged(pcap, addresses)
