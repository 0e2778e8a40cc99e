"""`mptcp-ref monitor FILE.pcap`: captures judged against the spec from one endpoint.

Synthetic captures are built with our own codec (`impl.wire`), packet by packet, with real
keys, tokens, IDSNs and HMACs, so every number the monitor reads is what a real endpoint
would put on the wire: an accepted conversation, planted wrong packets rejected at their
frame number, and bad input. The netns tests capture Linux MPTCP talking to Linux MPTCP
(`model_checks.conformance.linux_pair`) and check both endpoints' points of view.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.utils import PcapWriter

from impl.crypto import (
    add_addr_hmac,
    idsn_from_key,
    join_ack_hmac,
    join_syn_ack_hmac,
    token_from_key,
)
from impl.io.pcap import PcapFile
from impl.wire import (
    AddAddr,
    DataSequenceMapping,
    Dss,
    MpCapable,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpTcpRst,
    TcpFlags,
    TcpHeader,
    build_packet,
)
from model_checks.conformance.judge import monitor_capture

CLIENT, SERVER = "198.18.0.2", "198.18.0.1"
CLIENT2 = "198.18.5.2"
KEY_C, KEY_S = 0x0123456789ABCDEF, 0x0FEDCBA987654321
S, A, F, R = TcpFlags.SYN, TcpFlags.ACK, TcpFlags.FIN, TcpFlags.RST


class Conversation:
    """One MPTCP connection written packet by packet; sequence numbers, DSNs and DATA_ACKs
    are kept the way a correct endpoint keeps them, so a test plants only its one bug."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []
        # per subflow: {side: [address, port, next seq]}
        self.subflows: list[dict[str, list]] = []
        self.isn: list[dict[str, int]] = []
        self.dsn = {"c": idsn_from_key(KEY_C) + 1, "s": idsn_from_key(KEY_S) + 1}
        self.acked = {"c": self.dsn["s"], "s": self.dsn["c"]}  # DATA_ACK each side sends

    def subflow(self, client: str, client_port: int, server_port: int = 80) -> int:
        self.subflows.append({"c": [client, client_port, 1000], "s": [SERVER, server_port,
                                                                        5000]})
        self.isn.append({"c": 1000, "s": 5000})
        return len(self.subflows) - 1

    def send(self, slot: int, side: str, flags: TcpFlags, options: tuple = (),
             payload: bytes = b"") -> int:
        """Write one packet; returns its frame number (1-based)."""
        me, peer = self.subflows[slot][side], self.subflows[slot]["s" if side == "c" else "c"]
        tcp = TcpHeader(me[1], peer[1], me[2] % (1 << 32),
                        peer[2] % (1 << 32) if flags & A else 0, flags, 65535,
                        options=options)
        self.packets.append(build_packet(me[0], peer[0], tcp, payload))
        me[2] += len(payload) + (1 if flags & (S | F) else 0)
        return len(self.packets)

    def data(self, slot: int, side: str, size: int, data_fin: bool = False) -> int:
        """`size` bytes with their mapping (a bare DATA_FIN when 0 and `data_fin`)."""
        ssn = self.subflows[slot][side][2] - self.isn[slot][side] if size else 0
        mapping = DataSequenceMapping(self.dsn[side], ssn, size + (1 if data_fin else 0))
        self.dsn[side] += size + (1 if data_fin else 0)
        dss = Dss(data_ack=self.acked[side], mapping=mapping, data_fin=data_fin)
        return self.send(slot, side, A, (dss,), b"x" * size)

    def ack(self, slot: int, side: str, upto: int | None = None, flags: TcpFlags = A) -> int:
        other = "s" if side == "c" else "c"
        self.acked[side] = self.dsn[other] if upto is None else upto
        return self.send(slot, side, flags, (Dss(data_ack=self.acked[side]),))

    def handshake(self) -> None:
        self.subflow(CLIENT, 40000)
        self.send(0, "c", S, (MpCapable(),))
        self.send(0, "s", S | A, (MpCapable(sender_key=KEY_S),))
        self.send(0, "c", A, (MpCapable(sender_key=KEY_C, receiver_key=KEY_S),))
        self.ack(0, "s")  # the listener's DSS confirms the keys

    def join(self, client: str, port: int, address_id: int, bad_hmac: bool = False) -> int:
        slot = self.subflow(client, port)
        nonce_c, nonce_s = 0x11111111, 0x22222222
        self.send(slot, "c", S, (MpJoinSyn(False, address_id, token_from_key(KEY_S),
                                           nonce_c),))
        self.send(slot, "s", S | A, (MpJoinSynAck(False, 0, join_syn_ack_hmac(
            KEY_S, KEY_C, nonce_s, nonce_c), nonce_s),))
        hmac = join_ack_hmac(KEY_C, KEY_S, nonce_c, nonce_s)
        if bad_hmac:
            hmac = bytes(20)
        self.send(slot, "c", A, (MpJoinAck(hmac),))
        return slot

    def write(self, path: Path) -> Path:
        with PcapFile(path) as pcap:
            for number, packet in enumerate(self.packets):
                pcap.write(packet, 1_700_000_000 + number * 1e-3)
        return path


def graceful(conversation: Conversation) -> Conversation:
    """Data both ways, an announced address, a join, DATA_FINs, FINs."""
    c = conversation
    c.handshake()
    c.data(0, "c", 1000)
    c.ack(0, "s")
    announced = "198.18.5.1"
    c.send(0, "s", A, (AddAddr(1, announced, truncated_hmac=add_addr_hmac(
        KEY_S, KEY_C, 1, announced)),))
    c.send(0, "c", A, (AddAddr(1, announced, echo=True),))
    slot = c.join(CLIENT2, 40001, 1)
    c.ack(slot, "s")  # fourth ACK
    c.data(slot, "s", 500)
    c.ack(slot, "c")
    c.data(0, "c", 0, data_fin=True)
    c.ack(0, "s")
    c.data(0, "s", 0, data_fin=True)
    c.ack(0, "c")
    for sub in (0, slot):
        c.ack(sub, "c", flags=A | F)
        c.ack(sub, "s", flags=A | F)
        c.ack(sub, "c")
    return c


def test_a_correct_conversation_is_accepted_from_both_sides(tmp_path: Path) -> None:
    pcap = graceful(Conversation()).write(tmp_path / "ok.pcap")
    for endpoint, side in ((CLIENT, "client"), (SERVER, "server")):
        report = monitor_capture(pcap, endpoint)
        [connection] = report.connections
        assert connection.side == side
        assert connection.verdict == "accepted", report.text()
        assert report.exit_code == 0
        assert "2 subflow(s)" in connection.description
    # by default the client of the first connection; any of its addresses names it
    assert monitor_capture(pcap).connections[0].side == "client"
    assert monitor_capture(pcap, CLIENT2).connections[0].side == "client"


def test_data_after_mp_fastclose_is_rejected_at_its_packet(tmp_path: Path) -> None:
    c = Conversation()
    c.handshake()
    c.data(0, "c", 300)
    c.send(0, "c", A, (MpFastclose(KEY_S),))  # RFC 8684 3.5: on an ACK, a RST follows
    planted = c.data(0, "c", 200)  # MP_FASTCLOSE ended the connection: no more data
    report = monitor_capture(c.write(tmp_path / "fastclose.pcap"), CLIENT)
    [connection] = report.connections
    assert connection.verdict == "divergence"
    assert connection.divergence.packet == planted
    assert "send_data" in connection.divergence.event
    assert any("ABORTING" in state for state in connection.divergence.states)
    assert report.exit_code == 1
    assert f"first divergence at packet {planted}" in report.text()


def test_data_ack_beyond_what_arrived_is_rejected(tmp_path: Path) -> None:
    c = Conversation()
    c.handshake()
    c.data(0, "c", 1000)
    planted = c.ack(0, "s", upto=c.dsn["c"] + 500)  # acknowledges 500 bytes never sent
    c.data(0, "c", 500)
    pcap = c.write(tmp_path / "ack.pcap")
    report = monitor_capture(pcap, SERVER)
    found = report.connections[0].divergence
    assert found is not None and found.packet == planted
    assert "send_data_ack[0](ack=1500)" in found.event
    assert any("conn_send_data_ack" in line for line in found.enabled)
    # the client may ignore a DATA_ACK out of its window (RFC 8684 3.3.2): accepted there
    assert monitor_capture(pcap, CLIENT).connections[0].verdict == "accepted"


def test_peer_segments_after_a_reset_are_left_out_but_ours_are_judged(tmp_path: Path) -> None:
    c = Conversation()
    c.handshake()
    c.data(0, "c", 300)
    c.send(0, "c", A | R, (MpFastclose(KEY_S), MpTcpRst(0)))  # we abort ...
    in_flight = c.data(0, "s", 400)  # ... while the server's data is on its way
    c.send(0, "c", R)  # answered with a plain RST (RFC 9293 3.10.7.1)
    pcap = c.write(tmp_path / "late.pcap")
    report = monitor_capture(pcap, CLIENT)
    assert report.connections[0].verdict == "accepted", report.text()
    assert any(f": {in_flight}" in note for note in report.connections[0].notes)
    planted = c.data(0, "c", 100)  # but our own data after our RST is a bug
    report = monitor_capture(c.write(tmp_path / "late2.pcap"), CLIENT)
    assert report.connections[0].divergence.packet == planted


def test_a_join_with_a_wrong_hmac_must_not_be_used(tmp_path: Path) -> None:
    c = Conversation()
    c.handshake()
    slot = c.join(CLIENT2, 40001, 1, bad_hmac=True)  # the server must reset it ...
    planted = c.ack(slot, "s")  # ... but goes on using it
    report = monitor_capture(c.write(tmp_path / "hmac.pcap"), SERVER)
    found = report.connections[0].divergence
    assert found is not None and found.packet == planted
    assert "sf1=CLOSED" in found.states[0]


def test_frame_numbers_count_frames_that_are_not_ip(tmp_path: Path) -> None:
    c = Conversation()
    c.handshake()
    c.data(0, "c", 300)
    c.send(0, "c", A | R, (MpFastclose(KEY_S), MpTcpRst(0)))
    c.data(0, "c", 200)
    ether = bytes(6) + bytes.fromhex("020000000001")
    arp = ether + b"\x08\x06" + bytes(28)
    path = tmp_path / "ether.pcap"
    writer = PcapWriter(str(path), linktype=1)
    writer.write_header(None)
    writer.write_packet(arp, sec=1, usec=0)  # frame 1: ARP
    for packet in c.packets:
        writer.write_packet(ether + b"\x08\x00" + packet, sec=1, usec=1)
    writer.close()
    report = monitor_capture(path, CLIENT)
    assert report.not_ip == 1
    assert report.connections[0].divergence.packet == len(c.packets) + 1


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "impl.cli", "monitor", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    ok = graceful(Conversation()).write(tmp_path / "ok.pcap")
    result = run_cli(str(ok), "--endpoint", SERVER, "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ACCEPTED" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_code"] == 0 and report["connections"][0]["side"] == "server"

    not_pcap = tmp_path / "junk.pcap"
    not_pcap.write_bytes(b"this is not a capture at all" * 10)
    result = run_cli(str(not_pcap))
    assert result.returncode == 2 and "not a readable pcap" in result.stderr

    truncated = tmp_path / "cut.pcap"
    truncated.write_bytes(ok.read_bytes()[:-7])
    result = run_cli(str(truncated))
    assert result.returncode == 2 and "truncated" in result.stderr

    from scapy.layers.inet import IP
    from scapy.utils import PcapNgWriter

    pcapng = tmp_path / "ok.pcapng"
    writer = PcapNgWriter(str(pcapng))
    for packet in graceful(Conversation()).packets:
        writer.write(IP(packet))
    writer.close()
    result = run_cli(str(pcapng), "--endpoint", SERVER)
    assert result.returncode == 0 and "ACCEPTED" in result.stdout, result.stderr
    cut_ng = tmp_path / "cut.pcapng"
    cut_ng.write_bytes(pcapng.read_bytes()[:-9])
    result = run_cli(str(cut_ng))
    assert result.returncode == 2 and "truncated" in result.stderr, result.stderr

    result = run_cli(str(ok), "--endpoint", "not-an-address")
    assert result.returncode == 2 and "does not appear to be an IPv4 or IPv6" in result.stderr


def test_a_packet_the_codec_rejects_is_reported_by_number(tmp_path: Path) -> None:
    c = graceful(Conversation())
    broken = bytearray(c.packets[4])
    broken[20 + 12] = 0x30  # TCP data offset 3 words: shorter than a TCP header
    c.packets[4] = bytes(broken)
    report = monitor_capture(c.write(tmp_path / "bad.pcap"), CLIENT)
    assert [u["number"] for u in report.unparseable] == [5]
    assert "unparseable packet 5" in report.text()
    # the rest is judged (and the hole noted), but a verdict with a packet missing is
    # incomplete: bad input
    assert report.connections[0].verdict == "accepted"
    assert any("missing from the capture" in note for note in report.connections[0].notes)
    assert report.exit_code == 2


# -- Linux MPTCP to Linux MPTCP ----------------------------------------------------------

# (scenario, IPv6, host the capture runs on): every scenario the brief names, plus DSS
# checksums and fallback; one over IPv6 and one captured on the server's host
LINUX_RUNS = [
    ("mpc_client_first", False, "client"), ("mpc_server_first", False, "server"),
    ("join_signal", True, "client"), ("remove_addr", False, "client"),
    ("mp_prio", False, "client"), ("fastclose_linger", False, "client"),
    ("fastclose_unread", False, "client"), ("checksums", False, "client"),
    ("fallback_plain_server", False, "client"), ("join_refused", False, "client"),
    ("server_closes_first", False, "client"), ("sequential_connections", False, "client"),
]
EXPECTED_LABELS = {  # what each capture must show (as the client saw it)
    "mpc_client_first": ["send_ack_mpc[0](bytes=5000)", "send_data_fin", "recv_data_fin"],
    "mpc_server_first": ["send_ack_mpc[0](bytes=0)", "recv_data[0](dsn=0, bytes=2000)",
                         "send_data_fin"],
    "join_signal": ["recv_add_addr[0](address_id=1, echo=False, hmac_ok=True)",
                    "send_add_addr[0](address_id=1, echo=True)", "send_syn_join[1]",
                    "recv_synack_join[1](address_id=1, backup=False, hmac_ok=True)",
                    "send_syn_join[2]"],
    "remove_addr": ["recv_remove_addr[0](address_id=1)"],
    "mp_prio": ["send_mp_prio[1](backup=True)"],
    "fastclose_linger": ["send_fastclose[0]()"],
    "fastclose_unread": ["recv_fastclose[0](key_ok=True)"],
    # (with checksums Linux's path manager mostly opens no join in so short a run)
    "checksums": ["send_data_fin[0](dsn=60000)", "recv_data_fin[0](dsn=60000)"],
    "fallback_plain_server": ["recv_synack[0]()", "send_data_plain[0](dsn=0, bytes=5000)",
                              "send_fin[0]()"],
    "join_refused": ["send_syn_join[2]", "recv_rst[2](reason=3)"],
    "server_closes_first": ["recv_data_fin[0](dsn=20000)", "send_data_fin[0](dsn=20000)"],
    "sequential_connections": ["send_data_fin[0](dsn=3000)", "recv_data_fin[0](dsn=2000)"],
}
CONNECTIONS = {"sequential_connections": 3}


@pytest.mark.netns
@pytest.mark.parametrize(("name", "ipv6", "capture_on"), LINUX_RUNS,
                         ids=[run[0] + ("-v6" if run[1] else "") for run in LINUX_RUNS])
def test_linux_to_linux_captures_are_accepted_from_both_ends(
        name: str, ipv6: bool, capture_on: str, tmp_path: Path) -> None:
    from model_checks.conformance.abstraction import abstract_connection
    from model_checks.conformance.capture import group_connections, read_capture
    from model_checks.conformance.judge import _event_text
    from model_checks.conformance.linux_pair import SCENARIOS, LinuxPair, address, run_scenario

    count = CONNECTIONS.get(name, 1)
    for attempt in range(3):
        pcap = tmp_path / f"{name}-{attempt}.pcap"
        with LinuxPair(paths=SCENARIOS[name].paths, ipv6=ipv6) as pair:
            outputs = run_scenario(pair, name, pcap, capture_on=capture_on)
        assert outputs["client"]["code"] == 0, outputs
        assert outputs["server"]["code"] == 0, outputs
        assert outputs["capture_dropped"] == 0, "tcpdump lost packets: no fair judge"
        for host in (2, 1):
            report = monitor_capture(pcap, address(1, host, ipv6))
            assert [c.verdict for c in report.connections] == ["accepted"] * count, \
                report.text()
            assert report.exit_code == 0
        connection = group_connections(read_capture(pcap).frames).connections[0]
        shown = "\n".join(_event_text(item.event)
                          for item in abstract_connection(connection, "client").items)
        missing = [expected for expected in EXPECTED_LABELS[name] if expected not in shown]
        if not missing:
            break
        # Linux's path manager now and then opens no join in a short run (no
        # MPJoinSynTx at all); that capture is judged too, then the run is repeated
    for expected in EXPECTED_LABELS[name]:
        assert expected in shown, f"{expected} not in the {name} capture:\n{shown}"
    if name == "checksums":  # the mappings really carried DSS checksums
        mappings = [option.mapping for frame, _, _ in connection.packets
                    for option in frame.packet.tcp.mptcp_options()
                    if isinstance(option, Dss) and option.mapping is not None]
        assert mappings and all(m.checksum is not None for m in mappings)


@pytest.mark.netns
@pytest.mark.parametrize("name", ["fastclose_while_receiving", "remove_addr"])
def test_a_delayed_link_capture_is_judged_from_both_ends(name: str, tmp_path: Path) -> None:
    """10 ms each way through our userspace link, captured on the client's host.
    fastclose_while_receiving: the client aborts while the server's data is in flight;
    that data arrives after the client's RST (left out, noted) and the client conforms.
    Seen from the server, capture order is not its order: packets are put back in the
    server's order by the one-way delay (said in a note). With a steady delay
    (remove_addr) the server conforms too; under the queueing of a one-way stream the
    estimate may not undo every crossing (docs/monitor.md), so there only the note is
    asserted."""
    from impl.lab.topology import PathSpec
    from model_checks.conformance.linux_pair import SCENARIOS, LinuxPair, run_scenario

    pcap = tmp_path / "delayed.pcap"
    with LinuxPair(paths=SCENARIOS[name].paths, link=PathSpec(delay=0.01)) as pair:
        outputs = run_scenario(pair, name, pcap)
    assert outputs["capture_dropped"] == 0
    client_report = monitor_capture(pcap, "198.18.1.2")
    client = client_report.connections[0]
    assert client.verdict == "accepted", client_report.text()
    server = monitor_capture(pcap, "198.18.1.1").connections[0]
    assert any("judged in the order the server saw them" in note for note in server.notes)
    if name == "fastclose_while_receiving":
        assert any("received after their subflow was reset" in n for n in client.notes)
    else:
        assert server.verdict == "accepted", server


@pytest.mark.netns
@pytest.mark.parametrize("command", [
    ["lab", "handshake"],  # our MP_CAPABLE third ACK carries the first data byte
    ["lab", "run", "--peer", "kernel", "--proto", "mptcp", "--paths", "2", "--size", "300000",
     "--direction", "up"],
], ids=["handshake-with-data", "mptcp-2-paths"])
def test_captures_our_endpoint_wrote_are_accepted_from_both_ends(
        command: list[str], tmp_path: Path) -> None:
    pcap = tmp_path / "ours.pcap"
    run = subprocess.run([sys.executable, "-m", "impl.cli", *command, "--pcap", str(pcap)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    report = monitor_capture(pcap)  # the client: our endpoint
    [ours] = report.connections
    assert ours.verdict == "accepted", report.text()
    kernel = ours.description.split(" -> ")[1].split(":")[0]
    assert monitor_capture(pcap, kernel).connections[0].verdict == "accepted"


@pytest.mark.netns
def test_a_wrong_data_ack_planted_in_a_linux_capture_is_found(tmp_path: Path) -> None:
    """The monitor is not vacuous on real captures: Linux's own packets, one DATA_ACK of
    the client raised by 1000 bytes it never received, rejected at that frame."""
    from dataclasses import replace

    from model_checks.conformance.capture import read_capture
    from model_checks.conformance.linux_pair import LinuxPair, run_scenario

    pcap = tmp_path / "linux.pcap"
    with LinuxPair(paths=1) as pair:
        run_scenario(pair, "mpc_client_first", pcap)
    frames = read_capture(pcap).frames
    client = frames[0].packet.src
    planted = max(frame.number for frame in frames if frame.packet.src == client and any(
        isinstance(o, Dss) and o.data_ack is not None for o in frame.packet.tcp.options))
    with PcapFile(tmp_path / "planted.pcap") as out:
        for frame in frames:
            packet = frame.packet
            tcp = packet.tcp
            if frame.number == planted:
                tcp = replace(tcp, options=tuple(
                    replace(o, data_ack=o.data_ack + 1000) if isinstance(o, Dss) else o
                    for o in tcp.options))
            out.write(build_packet(packet.src, packet.dst, tcp, bytes(packet.payload)),
                      frame.time)
    report = monitor_capture(tmp_path / "planted.pcap", str(client))
    assert report.connections[0].divergence.packet == planted, report.text()
    assert monitor_capture(pcap, str(client)).exit_code == 0  # the original is fine
