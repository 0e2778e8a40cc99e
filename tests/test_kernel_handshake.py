"""The Linux kernel as a peer: its counters and sysctls per namespace (impl.lab.kernel),
and a real MP_CAPABLE handshake with it over a TUN device (impl.lab.handshake)."""

from __future__ import annotations

import io
import secrets
import shutil
import socket
import subprocess
import time

import pytest
from rich.console import Console

from impl.crypto import (
    add_addr_hmac,
    generate_nonce,
    join_ack_hmac,
    join_syn_ack_hmac,
    token_from_key,
)
from impl.io.pcap import read_pcap
from impl.lab.handshake import (
    EstablishedConnection,
    HandshakeError,
    describe_packet,
    kernel_mp_capable_handshake,
    run_handshake_demo,
)
from impl.lab.kernel import (
    counter_delta,
    parse_proc_net_counters,
    read_counters,
    read_mptcp_counters,
    read_sysctl,
    write_sysctl,
)
from impl.lab.netns import NetworkNamespace, list_namespaces
from impl.wire import (
    MaximumSegmentSize,
    MpCapable,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    NoOperation,
    SackPermitted,
    TcpFlags,
    TcpHeader,
    Timestamps,
    WindowScale,
)

pytestmark = pytest.mark.netns

IPPROTO_MPTCP = 262


def test_parse_proc_net_counters() -> None:
    text = "TcpExt: SyncookiesSent Foo\nTcpExt: 3 4\nMPTcpExt: MPCapableSYNRX\nMPTcpExt: 7\n"
    assert parse_proc_net_counters(text) == {
        "TcpExtSyncookiesSent": 3, "TcpExtFoo": 4, "MPTcpExtMPCapableSYNRX": 7}
    with pytest.raises(ValueError):
        parse_proc_net_counters("TcpExt: A B\nTcpExt: 1\n")


def test_counter_delta() -> None:
    before = {"a": 1, "b": 5, "gone": 2}
    after = {"a": 1, "b": 7, "new": 3}
    assert counter_delta(before, after) == {"b": 2, "gone": -2, "new": 3}
    assert counter_delta(before, after, nonzero_only=False)["a"] == 0


def test_counters_are_per_namespace(netns: NetworkNamespace) -> None:
    counters = read_mptcp_counters(netns.name)
    assert {"MPTcpExtMPCapableSYNRX", "MPTcpExtMPCapableACKRX"} <= counters.keys()
    assert all(value == 0 for value in counters.values())  # a fresh namespace counts nothing
    before = read_counters(netns.name)
    netns.add_address("lo", "198.18.7.1/32")
    with netns.entered():
        server = socket.create_server(("198.18.7.1", 0))
        client = socket.create_connection(server.getsockname(), timeout=2)
    client.close()
    server.close()
    delta = counter_delta(before, read_counters(netns.name))
    assert delta["TcpActiveOpens"] == 1 and delta["TcpPassiveOpens"] == 1


def test_kernel_mptcp_counts_its_own_loopback_connection(netns: NetworkNamespace) -> None:
    # Kernel <-> kernel over lo: one MP_CAPABLE SYN, SYN/ACK and ACK each way.
    netns.add_address("lo", "198.18.7.1/32")
    before = read_mptcp_counters(netns.name)
    with netns.entered():
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
        server.bind(("198.18.7.1", 0))
        server.listen()
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    with server, client:
        client.settimeout(2)
        server.settimeout(2)
        client.connect(server.getsockname())
        client.sendall(b"x")  # the ACK with the keys may ride on the first data
        accepted, _ = server.accept()
        with accepted:
            accepted.settimeout(2)
            assert accepted.recv(1) == b"x"
    delta = counter_delta(before, read_mptcp_counters(netns.name))
    assert delta["MPTcpExtMPCapableSYNRX"] == 1
    assert delta["MPTcpExtMPCapableSYNACKRX"] == 1
    assert delta["MPTcpExtMPCapableACKRX"] == 1


def test_sysctl_read_write_stays_in_the_namespace(netns: NetworkNamespace) -> None:
    root_value = open("/proc/sys/net/mptcp/checksum_enabled").read().strip()
    assert read_sysctl(netns.name, "net.mptcp.enabled") == "1"
    new_value = "0" if root_value == "1" else "1"
    write_sysctl(netns.name, "net.mptcp.checksum_enabled", new_value)
    assert read_sysctl(netns.name, "net.mptcp.checksum_enabled") == new_value
    assert netns.run("sysctl", "-n", "net.mptcp.checksum_enabled").stdout.strip() == new_value
    assert open("/proc/sys/net/mptcp/checksum_enabled").read().strip() == root_value


@pytest.mark.parametrize("name", ["kernel.hostname", "net/../kernel/hostname", "vm.swappiness"])
def test_only_net_sysctls_are_touched(netns: NetworkNamespace, name: str) -> None:
    with pytest.raises(ValueError):
        write_sysctl(netns.name, name, "x")


def test_netns_fixture_cleans_up() -> None:
    with NetworkNamespace() as ns:
        pass
    assert ns.name not in list_namespaces()


# -- the MP_CAPABLE handshake with Linux over TUN (impl.lab.handshake) ------------------

def _mp_capable_length(exchanged) -> int:  # noqa: ANN001
    option = exchanged.packet.tcp.option(MpCapable)
    assert option is not None, exchanged.summary
    return len(option.emit())


@pytest.mark.parametrize(("kernel_checksums", "payload", "third_ack_length"),
                         [(False, b"!", 22), (True, b"hello", 24)])
def test_mp_capable_handshake_with_linux(kernel_checksums: bool, payload: bytes,
                                         third_ack_length: int) -> None:
    result = kernel_mp_capable_handshake(8080, kernel_checksums=kernel_checksums,
                                         payload=payload, timeout=2.0)
    # The kernel's accept()ed MPTCP socket read exactly the byte(s) that rode on the ACK.
    assert result.received_by_kernel == payload
    assert result.kernel_eof  # our DATA_FIN reached the application as end-of-stream
    assert result.checksums is kernel_checksums
    # The kernel counted one MP_CAPABLE SYN and one MP_CAPABLE third ACK, and no error.
    deltas = result.counter_deltas
    assert deltas.get("MPTcpExtMPCapableSYNRX") == 1
    assert deltas.get("MPTcpExtMPCapableACKRX") == 1
    for bad in ("MPTcpExtDataCsumErr", "MPTcpExtMPCapableFallbackACK",
                "MPTcpExtMPCapableFallbackSYNACK", "MPTcpExtMPRstRx", "MPTcpExtMPRstTx",
                "TcpExtTCPAbortOnData", "TcpOutRsts"):
        assert deltas.get(bad, 0) == 0, (bad, deltas)
    syn, syn_ack, third_ack = result.packets[:3]
    assert (syn.direction, syn_ack.direction, third_ack.direction) == (
        "sent", "received", "sent")
    assert _mp_capable_length(syn) == 4
    assert _mp_capable_length(syn_ack) == 12
    assert syn_ack.packet.tcp.option(MpCapable).checksum_required is kernel_checksums
    assert _mp_capable_length(third_ack) == third_ack_length
    assert bytes(third_ack.packet.payload) == payload
    assert result.namespace not in list_namespaces()


def test_namespace_is_gone_when_the_handshake_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend the SYN/ACK had no MP_CAPABLE: the code takes its fallback error path with a
    # live TUN, listener and namespace, all of which must be cleaned up.
    import impl.lab.handshake as handshake

    monkeypatch.setattr(handshake, "_mp_capable_of", lambda packet: None)
    seen: list[str] = []
    real_read_counters = handshake.read_counters
    monkeypatch.setattr(handshake, "read_counters",
                        lambda name: seen.append(name) or real_read_counters(name))
    with pytest.raises(HandshakeError, match="fell back"):
        kernel_mp_capable_handshake(8080, timeout=2.0)
    assert seen and seen[0] not in list_namespaces()


def test_namespace_is_gone_after_ctrl_c_mid_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    import impl.lab.handshake as handshake

    seen: list[str] = []

    def interrupt(name: str) -> dict[str, int]:
        seen.append(name)
        raise KeyboardInterrupt

    monkeypatch.setattr(handshake, "read_counters", interrupt)
    with pytest.raises(KeyboardInterrupt):
        kernel_mp_capable_handshake(8080, timeout=2.0)
    assert seen and seen[0] not in list_namespaces()


def test_handshake_demo_prints_packets_and_counters() -> None:
    output = io.StringIO()
    status = run_handshake_demo(port=8080, pcap_path=None,
                                console=Console(file=output, width=300, color_system=None))
    text = output.getvalue()
    assert status == 0, text
    assert "MP_CAPABLE v1 H key" in text
    assert "MPTcpExtMPCapableSYNRX +1" in text and "MPTcpExtMPCapableACKRX +1" in text


# -- our HMACs against the kernel's (RFC 8684 3.2, 3.4.1) -------------------------------

def test_kernel_add_addr_hmac_matches_ours() -> None:
    # The kernel announces a `signal` endpoint; kernel_mp_capable_handshake recomputes the
    # ADD_ADDR HMAC with impl.crypto (raising on a mismatch) and echoes it.
    result = kernel_mp_capable_handshake(8080, kernel_signal_address="198.18.0.3",
                                         timeout=2.0)
    [announced] = result.kernel_add_addrs
    assert str(announced.address) == "198.18.0.3" and announced.port is None
    assert announced.truncated_hmac == add_addr_hmac(
        result.kernel_key, result.our_key, announced.address_id, announced.address)
    deltas = result.counter_deltas
    assert deltas.get("MPTcpExtAddAddrTx") == 1
    assert deltas.get("MPTcpExtEchoAdd") == 1  # the kernel accepted our echo


def _join_subflow(connection: EstablishedConnection, hmac_a: bytes | None = None) -> dict:
    """An MP_JOIN subflow from 198.18.0.2 (RFC 8684 3.2); returns what was exchanged.
    With `hmac_a`, that HMAC is sent on the third ACK instead of the right one."""
    peer = connection.new_subflow_peer()
    nonce_a, isn = generate_nonce(), secrets.randbits(32)
    token = token_from_key(connection.kernel_key)
    peer.send(TcpHeader(peer.port, connection.port, isn, 0, TcpFlags.SYN, 64240, options=(
        MaximumSegmentSize(1460), SackPermitted(), Timestamps(1, 0), NoOperation(),
        WindowScale(7), MpJoinSyn(backup=False, address_id=1, receiver_token=token,
                                  sender_nonce=nonce_a))))
    syn_ack = peer.receive("the MP_JOIN SYN/ACK")
    offer = syn_ack.tcp.option(MpJoinSynAck)
    assert isinstance(offer, MpJoinSynAck), describe_packet(syn_ack)
    assert syn_ack.tcp.ack == isn + 1
    right_hmac_a = join_ack_hmac(connection.our_key, connection.kernel_key, nonce_a,
                                 offer.sender_nonce)
    peer.send(TcpHeader(peer.port, connection.port, isn + 1, syn_ack.tcp.seq + 1,
                        TcpFlags.ACK, 501, options=(
                            NoOperation(), NoOperation(),
                            Timestamps(2, syn_ack.tcp.option(Timestamps).value),
                            MpJoinAck(hmac_a or right_hmac_a))))
    # RFC 8684 3.2: the listener ACKs the third ACK (and only then may A use the
    # subflow); a kernel that rejects HMAC-A resets the subflow instead.
    try:
        reply = peer.receive("the kernel's answer to the MP_JOIN third ACK")
        reset = False
    except HandshakeError as error:
        assert "reset" in str(error), error
        reply, reset = None, True
    if not reset:
        peer.send(TcpHeader(peer.port, connection.port, isn + 1, syn_ack.tcp.seq + 1,
                            TcpFlags.RST, 0))  # done with it: the test is the handshake
    return {"nonce_a": nonce_a, "offer": offer, "reply": reply, "reset": reset}


def test_kernel_join_hmacs_match_ours() -> None:
    joined: list[dict] = []
    result = kernel_mp_capable_handshake(
        8080, timeout=2.0,
        after_handshake=lambda connection: joined.append(_join_subflow(connection)))
    [join] = joined
    # HMAC-B on the SYN/ACK = HMAC(Key-B || Key-A, R-B || R-A), leftmost 64 bits.
    assert join["offer"].sender_truncated_hmac == join_syn_ack_hmac(
        result.kernel_key, result.our_key, join["offer"].sender_nonce, join["nonce_a"])
    assert not join["reset"] and join["reply"].tcp.flags == TcpFlags.ACK
    deltas = result.counter_deltas
    assert deltas.get("MPTcpExtMPJoinSynRx") == 1
    assert deltas.get("MPTcpExtMPJoinAckRx") == 1  # our HMAC-A was accepted
    assert deltas.get("MPTcpExtMPJoinAckHMacFailure", 0) == 0


def test_kernel_rejects_a_wrong_join_hmac() -> None:
    joined: list[dict] = []
    result = kernel_mp_capable_handshake(
        8080, timeout=2.0,
        after_handshake=lambda connection: joined.append(
            _join_subflow(connection, hmac_a=bytes(20))))
    assert joined[0]["reset"]
    assert result.counter_deltas.get("MPTcpExtMPJoinAckHMacFailure") == 1


# -- the capture (impl.io.pcap) and an independent dissector (tshark) --------------------

def test_handshake_pcap_holds_every_packet_exchanged(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "handshake.pcap"
    started = time.time()
    result = kernel_mp_capable_handshake(8080, pcap_path=path, timeout=2.0)
    records = read_pcap(path)
    assert [data for _, data in records] == [exchanged.data for exchanged in result.packets]
    stamps = [stamp for stamp, _ in records]
    assert stamps == sorted(stamps) and started - 1 < stamps[0] < time.time() + 1


@pytest.mark.tshark
def test_tshark_reads_our_mp_capable_with_data_and_the_kernel_key(tmp_path) -> None:  # noqa: ANN001
    if shutil.which("tshark") is None:
        pytest.fail("tshark is missing: scripts/setup.sh installs it", pytrace=False)
    path = tmp_path / "handshake.pcap"
    result = kernel_mp_capable_handshake(8080, pcap_path=path, timeout=2.0)
    fields = ["tcp.flags.str", "tcp.options.mptcp.sendkey", "tcp.options.mptcp.recvkey",
              "tcp.options.mptcp.datalvllen"]
    output = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|",
         *[argument for name in fields for argument in ("-e", name)]],
        capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    syn_ack, third_ack = output[1].split("|"), output[2].split("|")
    assert int(syn_ack[1]) == result.kernel_key
    assert (int(third_ack[1]), int(third_ack[2]), int(third_ack[3])) == (
        result.our_key, result.kernel_key, 1)


def test_handshake_demo_without_root_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    import impl.lab.handshake as handshake

    monkeypatch.setattr(handshake.os, "geteuid", lambda: 1000)
    output = io.StringIO()
    status = run_handshake_demo(port=8080, pcap_path=None,
                                console=Console(file=output, width=300, color_system=None))
    assert status == 1 and "needs root" in output.getvalue()
