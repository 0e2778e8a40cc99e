"""tshark as an independent judge of the bytes our codec emits.

We write one pcap (through impl.io.pcap) holding a packet for every MPTCP option variant
the codec can emit -- each MP_CAPABLE length, each MP_JOIN, every DSS flag combination
with and without checksum, ADD_ADDR v4/v6 with/without port and echo, REMOVE_ADDR with
one and several IDs, MP_PRIO, MP_FAIL, MP_FASTCLOSE, MP_TCPRST with every reason -- over
IPv4 and IPv6, plus a Linux-like SYN with the plain TCP options. Wireshark's dissector
must read the same field values we put in, verify our IP and TCP checksums, and report
no malformed packet and no expert error.

The expected tshark values are derived from our *values* (key, token, flags...), spelled
as tshark prints them, never from our emitted bytes, so an encoding mistake shows up as
a disagreement.

Known Wireshark 4.0 limitation (checked against its source, packet-tcp.c,
dissect_tcpopt_mptcp): the DSS checksum is only displayed when the option length is at
least checksum offset + 4, i.e. never for a correct option (RFC 8684 3.3, figure 9: the
2-byte checksum ends the option, Linux's mptcp_parse_option agrees). For those options we
check that tshark agrees on the option length and take the checksum from the option
bytes at the position the RFC gives.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from impl.crypto import idsn_from_key
from impl.io.pcap import PcapFile
from impl.wire import (
    AddAddr,
    DataSequenceMapping,
    Dss,
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
    RemoveAddr,
    Sack,
    SackPermitted,
    TcpFlags,
    TcpHeader,
    Timestamps,
    UnknownMptcpOption,
    WindowScale,
    build_packet,
)

from . import tshark_judge

pytestmark = pytest.mark.tshark

KEY_A = 0x8A2F_4C11_09D3_77E5
KEY_B = 0x1357_9BDF_2468_ACE0
TSHARK_PREFS = [
    "-o", "mptcp.analyze_mptcp:FALSE",
    "-o", "mptcp.relative_sequence_numbers:FALSE",
    "-o", "tcp.relative_sequence_numbers:FALSE",
    "-o", "tcp.analyze_sequence_numbers:FALSE",
    "-o", "tcp.check_checksum:TRUE",
    "-o", "ip.check_checksum:TRUE",
]


def _bit(value: bool) -> str:
    return "1" if value else "0"


def mptcp_variants() -> list:
    """Every MPTCP option shape the codec can emit."""
    variants: list = [
        MpCapable(checksum_required=True),  # 4, SYN
        MpCapable(no_initial_join=True, sender_key=KEY_B),  # 12, SYN/ACK
        MpCapable(sender_key=KEY_A, receiver_key=KEY_B),  # 20, ACK
        MpCapable(sender_key=KEY_A, receiver_key=KEY_B, data_length=1200),  # 22
        MpCapable(checksum_required=True, sender_key=KEY_A, receiver_key=KEY_B,
                  data_length=1200, checksum=0xC0DE),  # 24
        MpJoinSyn(backup=True, address_id=3, receiver_token=0xA1B2C3D4, sender_nonce=0x0BADF00D),
        MpJoinSynAck(backup=False, address_id=4, sender_truncated_hmac=0xFEDC_BA98_7654_3210,
                     sender_nonce=0x12345678),
        MpJoinAck(sender_hmac=bytes(range(0xA0, 0xB4))),
    ]
    for ack in (None, 32, 64):
        for dsn in (None, 32, 64):
            for checksum in ((None, 0x5A5A) if dsn else (None,)):
                for data_fin in (False, True):
                    mapping = None
                    if dsn:
                        mapping = DataSequenceMapping(
                            dsn=(0x1_0000_0001 if dsn == 64 else 0x8000_0001),
                            subflow_sequence=1 + 1000 * data_fin,
                            data_level_length=1 if data_fin else 1400,
                            checksum=checksum,
                            dsn_is_64bit=dsn == 64,
                        )
                    variants.append(
                        Dss(
                            data_ack=None if ack is None else (2**40 + 7 if ack == 64 else 77),
                            data_ack_is_64bit=ack == 64,
                            mapping=mapping,
                            data_fin=data_fin,
                        )
                    )
    for address in ("198.18.1.1", "fd00::1:1"):
        for port in (None, 8443):
            for echo in (False, True):
                variants.append(
                    AddAddr(address_id=9, address=ipaddress.ip_address(address), port=port,
                            truncated_hmac=None if echo else 0x0102_0304_0506_0708, echo=echo)
                )
    variants += [
        RemoveAddr((5,)),
        RemoveAddr((1, 2, 3, 250)),
        MpPrio(backup=True),
        MpPrio(backup=False),
        MpFail(dsn=2**63 + 12345),
        MpFastclose(receiver_key=KEY_B),
    ]
    variants += [MpTcpRst(reason, transient=reason % 2 == 1) for reason in range(7)]
    variants += [MpTcpRst(0x42), UnknownMptcpOption(0xF, b"\x01\x02\x03", flags=2)]
    return variants


def expected_fields(option) -> dict[str, list[str]]:
    """What tshark should print for `option`, from the option's values."""
    if isinstance(option, MpCapable):
        fields = {
            "tcp.options.mptcp.subtype": ["0"],
            "tcp.options.mptcp.version": [str(option.version)],
            "tcp.options.mptcp.checksumreq.flags": [_bit(option.checksum_required)],
            "tcp.options.mptcp.extensibility.flag": [_bit(option.extensibility)],
            "tcp.options.mptcp.nomoresubflows.flag": [_bit(option.no_initial_join)],
            "tcp.options.mptcp.sha256.flag": [_bit(option.hmac_sha256)],
        }
        if option.sender_key is not None:
            fields["tcp.options.mptcp.sendkey"] = [str(option.sender_key)]
        if option.receiver_key is not None:
            fields["tcp.options.mptcp.recvkey"] = [str(option.receiver_key)]
        if option.data_length is not None:
            fields["tcp.options.mptcp.datalvllen"] = [str(option.data_length)]
        if option.checksum is not None:
            fields["tcp.options.mptcp.checksum"] = [f"0x{option.checksum:04x}"]
        return fields
    if isinstance(option, MpJoinSyn):
        return {
            "tcp.options.mptcp.subtype": ["1"],
            "tcp.options.mptcp.backup.flag": [_bit(option.backup)],
            "tcp.options.mptcp.addrid": [str(option.address_id)],
            "tcp.options.mptcp.recvtok": [str(option.receiver_token)],
            "tcp.options.mptcp.sendrand": [str(option.sender_nonce)],
        }
    if isinstance(option, MpJoinSynAck):
        return {
            "tcp.options.mptcp.subtype": ["1"],
            "tcp.options.mptcp.backup.flag": [_bit(option.backup)],
            "tcp.options.mptcp.addrid": [str(option.address_id)],
            "tcp.options.mptcp.sendtrunchmac": [str(option.sender_truncated_hmac)],
            "tcp.options.mptcp.sendrand": [str(option.sender_nonce)],
        }
    if isinstance(option, MpJoinAck):
        return {
            "tcp.options.mptcp.subtype": ["1"],
            "tcp.options.mptcp.sendhmac": [option.sender_hmac.hex(":")],
        }
    if isinstance(option, Dss):
        fields = {
            "tcp.options.mptcp.subtype": ["2"],
            "tcp.options.mptcp.datafin.flag": [_bit(option.data_fin)],
            "tcp.options.mptcp.dataackpresent.flag": [_bit(option.data_ack is not None)],
            "tcp.options.mptcp.dseqnpresent.flag": [_bit(option.mapping is not None)],
        }
        if option.data_ack is not None:
            fields["tcp.options.mptcp.dataack8.flag"] = [_bit(option.data_ack_is_64bit)]
            fields["tcp.options.mptcp.rawdataack"] = [str(option.data_ack)]
        if option.mapping is not None:
            mapping = option.mapping
            fields["tcp.options.mptcp.dseqn8.flag"] = [_bit(mapping.dsn_is_64bit)]
            fields["tcp.options.mptcp.rawdataseqno"] = [str(mapping.dsn)]
            fields["tcp.options.mptcp.subflowseqno"] = [str(mapping.subflow_sequence)]
            fields["tcp.options.mptcp.datalvllen"] = [str(mapping.data_level_length)]
        return fields
    if isinstance(option, AddAddr):
        family = "ipv4" if option.address.version == 4 else "ipv6"
        fields = {
            "tcp.options.mptcp.subtype": ["3"],
            "tcp.options.mptcp.echo": [_bit(option.echo)],
            "tcp.options.mptcp.addrid": [str(option.address_id)],
            f"tcp.options.mptcp.{family}": [str(option.address)],
        }
        if option.port is not None:
            fields["tcp.options.mptcp.port"] = [str(option.port)]
        if option.truncated_hmac is not None:
            fields["tcp.options.mptcp.addaddrtrunchmac"] = [str(option.truncated_hmac)]
        return fields
    if isinstance(option, RemoveAddr):
        return {
            "tcp.options.mptcp.subtype": ["4"],
            "mptcp.rm_addr.count": [str(len(option.address_ids))],
            "tcp.options.mptcp.addrid": [str(i) for i in option.address_ids],
        }
    if isinstance(option, MpPrio):
        return {
            "tcp.options.mptcp.subtype": ["5"],
            "tcp.options.mptcp.backup.flag": [_bit(option.backup)],
        }
    if isinstance(option, MpFail):
        return {
            "tcp.options.mptcp.subtype": ["6"],
            "tcp.options.mptcp.rawdataseqno": [str(option.dsn)],
        }
    if isinstance(option, MpFastclose):
        return {
            "tcp.options.mptcp.subtype": ["7"],
            "tcp.options.mptcp.recvkey": [str(option.receiver_key)],
        }
    if isinstance(option, MpTcpRst):
        return {
            "tcp.options.mptcp.subtype": ["8"],
            "tcp.options.mptcp.flag_T.flag": [_bit(option.transient)],
            "tcp.options.mptcp.rst_reason": [f"0x{int(option.reason):02x}"],
        }
    if isinstance(option, UnknownMptcpOption):
        return {"tcp.options.mptcp.subtype": [str(option.subtype)]}
    raise AssertionError(f"no expectation for {option!r}")


def tcp_flags_for(option) -> TcpFlags:
    if isinstance(option, MpJoinSyn) or (isinstance(option, MpCapable)
                                         and option.sender_key is None):
        return TcpFlags.SYN
    if isinstance(option, MpJoinSynAck) or (isinstance(option, MpCapable)
                                            and option.receiver_key is None):
        return TcpFlags.SYN | TcpFlags.ACK
    if isinstance(option, MpTcpRst):
        return TcpFlags.RST | TcpFlags.ACK
    return TcpFlags.ACK


LINUX_SYN_OPTIONS = (
    MaximumSegmentSize(1460), SackPermitted(), Timestamps(3_000_000_001, 0), NoOperation(),
    WindowScale(7), MpCapable(),
)
SACK_OPTIONS = (NoOperation(), NoOperation(), Sack(((1_000, 2_000), (3_000, 4_000))),
                Dss(data_ack=5))


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> tuple[list, list[dict[str, list[str]]], list[bytes]]:
    path: Path = tmp_path_factory.mktemp("judge") / "every_option.pcap"
    cases: list = []
    wires: list[bytes] = []
    with PcapFile(path) as pcap:
        for index, option in enumerate(mptcp_variants() + ["linux-syn", "sack"]):
            if option == "linux-syn":
                options, flags = LINUX_SYN_OPTIONS, TcpFlags.SYN
            elif option == "sack":
                options, flags = SACK_OPTIONS, TcpFlags.ACK
            else:
                options, flags = (option,), tcp_flags_for(option)
            v6 = index % 2 == 1
            src, dst = ("fd00::1", "fd00::2") if v6 else ("198.18.0.1", "198.18.0.2")
            tcp = TcpHeader(
                src_port=20000 + index, dst_port=443, seq=1_000_000 + index,
                ack=0 if flags == TcpFlags.SYN else 5_000_000 + index,
                flags=flags, window=64000, options=options,
            )
            payload = b"x" * (index % 3)
            wire = build_packet(src, dst, tcp, payload)
            pcap.write(wire, 1_700_000_000.0 + index / 1000)
            cases.append((option, src, dst, tcp, payload))
            wires.append(wire)
    dissected = tshark_judge.frames(path, TSHARK_PREFS)
    assert len(dissected) == len(cases), "tshark read a different number of packets"
    return cases, dissected, wires


def test_tshark_reads_every_packet_without_malformed_or_expert_errors(judged):
    cases, frames, _ = judged
    for (option, *_), fields in zip(cases, frames, strict=True):
        assert tshark_judge.problems([fields]) == [], option


def test_tshark_verifies_our_ip_and_tcp_checksums(judged):
    cases, frames, _ = judged
    for (option, src, *_), fields in zip(cases, frames, strict=True):
        # checksum.status 1 = "Good" when checking is on.
        assert fields["tcp.checksum.status"] == ["1"], option
        if ":" not in src:
            assert fields["ip.checksum.status"] == ["1"], option


def test_tshark_reads_our_ip_and_tcp_headers(judged):
    cases, frames, _ = judged
    for (option, src, dst, tcp, payload), fields in zip(cases, frames, strict=True):
        family = "ipv6" if ":" in src else "ip"
        assert fields[f"{family}.src"] == [src] and fields[f"{family}.dst"] == [dst]
        assert fields["tcp.srcport"] == [str(tcp.src_port)]
        assert fields["tcp.dstport"] == [str(tcp.dst_port)]
        assert fields["tcp.seq_raw"] == [str(tcp.seq)]
        assert fields["tcp.ack_raw"] == [str(tcp.ack)]
        assert fields["tcp.flags"] == [f"0x{int(tcp.flags):04x}"]
        assert fields["tcp.window_size_value"] == [str(tcp.window)]
        assert fields["tcp.len"] == [str(len(payload))], option


def test_tshark_reads_the_same_mptcp_fields(judged):
    cases, frames, wires = judged
    checked = 0
    for (option, src, _dst, _tcp, _payload), fields, wire in zip(
        cases, frames, wires, strict=True
    ):
        if isinstance(option, str):
            continue
        own = option.emit()
        assert "30" in fields["tcp.option_kind"]
        assert fields["tcp.option_len"] == [str(len(own))], option
        for name, values in expected_fields(option).items():
            assert fields.get(name) == values, (option, name, fields.get(name))
        if isinstance(option, Dss) and option.mapping and option.mapping.checksum is not None:
            shown = fields.get("tcp.options.mptcp.checksum")
            if shown is not None:
                assert shown == [f"0x{option.mapping.checksum:04x}"]
            else:  # Wireshark 4.0 never shows it (see module docstring): read the bytes.
                ip_length = 40 if ":" in src else 20
                option_bytes = wire[ip_length + 20 : ip_length + 20 + len(own)]
                assert option_bytes[-2:] == option.mapping.checksum.to_bytes(2, "big")
        checked += 1
    assert checked == len(mptcp_variants())


def test_tshark_reads_the_plain_tcp_options(judged):
    cases, frames, _ = judged
    by_name = {case[0]: fields for case, fields in zip(cases, frames, strict=True)
               if isinstance(case[0], str)}
    syn = by_name["linux-syn"]
    assert syn["tcp.options.mss_val"] == ["1460"]
    assert syn["tcp.options.wscale.shift"] == ["7"]
    assert "tcp.options.sack_perm" in syn
    assert syn["tcp.options.timestamp.tsval"] == ["3000000001"]
    assert syn["tcp.options.timestamp.tsecr"] == ["0"]
    assert syn["tcp.options.mptcp.subtype"] == ["0"]
    sack = by_name["sack"]
    assert sack["tcp.options.sack_le"] == ["1000", "3000"]
    assert sack["tcp.options.sack_re"] == ["2000", "4000"]
    assert sack["tcp.options.mptcp.rawdataack"] == ["5"]


def test_every_variant_family_is_covered():
    variants = mptcp_variants()
    lengths = {len(v.emit()) for v in variants if isinstance(v, MpCapable)}
    assert lengths == {4, 12, 20, 22, 24}
    assert {type(v) for v in variants} >= {
        MpJoinSyn, MpJoinSynAck, MpJoinAck, Dss, AddAddr, RemoveAddr, MpPrio, MpFail,
        MpFastclose, MpTcpRst, UnknownMptcpOption,
    }
    dss_flags = {v.flags for v in variants if isinstance(v, Dss)}
    assert len(dss_flags) == 3 * 3 * 2  # ack none/4/8 x mapping none/4/8 x DATA_FIN
    assert {len(v.emit()) for v in variants if isinstance(v, AddAddr)} == {
        8, 10, 16, 18, 20, 22, 28, 30,
    }
    assert {int(v.reason) for v in variants if isinstance(v, MpTcpRst)} >= set(range(7))


def _connection_pcap(path: Path, data_option, echoed_key: int = KEY_B) -> Path:
    """An MP_CAPABLE handshake and one 100-byte data segment carrying `data_option`."""
    client, server = "198.18.0.1", "198.18.0.2"
    segments = [
        (client, server, TcpHeader(40000, 443, 1000, 0, TcpFlags.SYN, 64000,
                                   options=(MpCapable(),)), b""),
        (server, client, TcpHeader(443, 40000, 5000, 1001, TcpFlags.SYN | TcpFlags.ACK, 64000,
                                   options=(MpCapable(sender_key=KEY_B),)), b""),
        (client, server, TcpHeader(40000, 443, 1001, 5001, TcpFlags.ACK, 64000, options=(
            MpCapable(sender_key=KEY_A, receiver_key=echoed_key),)), b""),
        (client, server, TcpHeader(40000, 443, 1001, 5001, TcpFlags.ACK | TcpFlags.PSH,
                                   64000, options=(data_option,)), b"d" * 100),
    ]
    with PcapFile(path) as pcap:
        for index, (src, dst, header, payload) in enumerate(segments):
            pcap.write(build_packet(src, dst, header, payload), 1_700_000_000.0 + index / 100)
    return path


def test_the_mapping_judge_accepts_a_mapped_segment_and_flags_an_unmapped_one(tmp_path):
    # The judge of the kernel scenarios must be able to fail: data without a DSS
    # mapping draws Wireshark's "No mapping available" on a data packet.
    first_dsn = idsn_from_key(KEY_A) + 1
    mapped = Dss(data_ack=idsn_from_key(KEY_B) + 1, data_ack_is_64bit=True,
                 mapping=DataSequenceMapping(first_dsn, 1, 100, dsn_is_64bit=True))
    good = tshark_judge.judge_mptcp_capture(_connection_pcap(tmp_path / "good.pcap", mapped))
    assert good.problems == [] and good.mptcp_problems == []
    assert good.count("mptcp.related_mapping") == 1  # the analysis did run
    unmapped = Dss(data_ack=idsn_from_key(KEY_B) + 1, data_ack_is_64bit=True)
    bad = tshark_judge.judge_mptcp_capture(_connection_pcap(tmp_path / "bad.pcap", unmapped))
    assert len(bad.mptcp_problems) == 1 and "frame 4" in bad.mptcp_problems[0]
    wrong_key = _connection_pcap(tmp_path / "key.pcap", mapped, echoed_key=KEY_B ^ 1)
    assert tshark_judge.judge_mptcp_capture(wrong_key).mptcp_problems == [
        "frame 3: mptcp.connection.echoed_key_mismatch"]
