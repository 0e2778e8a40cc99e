"""The TUN driver (impl.io.tun_loop) and `mptcp-ref lab run`: the link model really
shapes the real packets, the pcap holds every packet that crossed our TUNs, the event log
records every link drop, and the command line keeps its contract (JSON, exit status)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from impl.io.tun_loop import DelayLine
from impl.lab.netns import list_namespaces
from impl.lab.run import LabRunSpec, kernel_session, our_config, per_path, run_lab
from impl.lab.topology import PathSpec
from impl.tcp.config import TcpConfig
from impl.wire.packet import parse_packet

MiB = 1 << 20


# -- without a lab ---------------------------------------------------------------------------


def test_delay_line_releases_in_time_order_and_keeps_ties_in_order() -> None:
    line = DelayLine()
    for when, item in ((3.0, "c"), (1.0, "a"), (2.0, "b1"), (2.0, "b2")):
        line.put(when, item)
    assert line.next_time() == 1.0 and len(line) == 4
    assert line.pop_due(0.5) == []
    assert line.pop_due(2.0) == ["a", "b1", "b2"]
    assert line.pop_due(10.0) == ["c"] and line.next_time() is None


def test_our_mss_fits_the_lab_mtu() -> None:
    assert our_config(ipv6=False).mss == 1460 and our_config(ipv6=True).mss == 1440
    assert our_config(True, TcpConfig(mss=1000, sack=False)).mss == 1000
    assert our_config(True, TcpConfig(sack=False)).sack is False


def test_per_path_values() -> None:
    assert per_path(None, 3, "delay") == [None, None, None]
    assert per_path("10", 2, "delay", scale=1e-3) == [0.01, 0.01]
    assert per_path("1,2.5", 2, "loss", scale=1e-2) == [0.01, 0.025]
    with pytest.raises(ValueError, match="3 values for 2 paths"):
        per_path("1,2,3", 2, "delay")
    with pytest.raises(ValueError, match="numbers"):
        per_path("fast", 1, "rate")
    with pytest.raises(ValueError, match="negative"):
        per_path("-1", 1, "rate")


# -- in a lab ----------------------------------------------------------------------------------


@pytest.mark.netns
def test_link_delay_shapes_real_round_trips() -> None:
    # A SYN to a closed port comes back as a RST after one round trip through the link:
    # 30 ms each way, applied by the driver to real packets.
    with kernel_session([PathSpec(delay=0.03)]) as session:
        started = time.monotonic()
        connection = session.host.connect(session.lab.paths[0].server, 9, started)
        assert session.driver.run(lambda: connection.is_closed, timeout=5)
        elapsed = time.monotonic() - started
    assert connection.close_reason == "refused"
    assert 0.06 <= elapsed < 0.5, elapsed


@pytest.mark.netns
def test_link_rate_limits_goodput() -> None:
    report = run_lab(LabRunSpec(peer="kernel", direction="up", size=2 * MiB,
                                paths=[PathSpec(rate=10e6)], timeout=30))
    assert report["ok"], report["reason"]
    # 10 Mbit/s on the wire, minus header overhead and slow start.
    assert 5 < report["goodput_mbit"] < 10


@pytest.mark.netns
@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_pcap_holds_every_packet_both_ways(tmp_path: Path, ipv6: bool) -> None:
    from impl.io.pcap import read_pcap

    capture = tmp_path / "run.pcap"
    report = run_lab(LabRunSpec(peer="kernel", direction="up", size=300_000, ipv6=ipv6,
                                pcap=capture, paths=[PathSpec(loss=0.02)], timeout=30))
    assert report["ok"], report["reason"]
    packets = read_pcap(capture)
    tun = report["links"][0]["tun"]
    assert len(packets) == tun["packets_in"] + tun["packets_out"]
    tcp = [parse_packet(data) for _, data in packets
           if data[9 if not ipv6 else 6] == 6]
    ours, theirs = report["subflows"][0]["local"], report["subflows"][0]["remote"]
    from_us = [p for p in tcp if f"{p.src}:{p.tcp.src_port}" == ours]
    to_us = [p for p in tcp if f"{p.src}:{p.tcp.src_port}" == theirs]
    assert len(from_us) == tun["packets_out"] and to_us
    assert sum(len(p.payload) for p in from_us) >= 300_000  # retransmissions included
    assert max(len(data) for _, data in packets) <= 1500  # the TUN's MTU
    timestamps = [stamp for stamp, _ in packets]
    assert timestamps == sorted(timestamps) and abs(timestamps[0] - time.time()) < 60


@pytest.mark.netns
def test_event_log_records_link_drops_and_state_changes(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    report = run_lab(LabRunSpec(peer="kernel", direction="up", size=MiB, eventlog=log,
                                paths=[PathSpec(loss=0.03)], timeout=30))
    assert report["ok"], report["reason"]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    drops = [event for event in events if event["type"] == "link:drop"]
    link = report["links"][0]
    assert len(drops) == link["ours_to_peer"]["lost"] + link["peer_to_ours"]["lost"] > 0
    states = [event["new"] for event in events if event["type"] == "tcp:state"]
    assert states[:2] == ["SYN-SENT", "ESTABLISHED"] and states[-1] == "TIME-WAIT"
    assert any(event["type"] == "tcp:retransmit" for event in events)


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `mptcp-ref lab run ARGS`; afterwards no namespace of that process remains
    (namespace names carry the creating pid; other processes may run labs meanwhile)."""
    process = subprocess.Popen([sys.executable, "-m", "impl.cli", "lab", "run", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    assert not [name for name in list_namespaces()
                if name.startswith(f"mptcpref-{process.pid}-")]
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.netns
def test_cli_lab_run_prints_and_writes_the_report(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    result = _cli("--peer", "kernel", "--paths", "2", "--size", str(MiB), "--direction",
                  "down", "--delay", "1,5", "--loss", "0,1", "--rate", "100", "--ipv6",
                  "--json", str(target))
    assert result.returncode == 0, result.stderr
    report = json.loads(target.read_text())
    assert json.loads(result.stdout) == report
    for key in ("ok", "bytes", "sha256_match", "seconds", "goodput_mbit", "subflows",
                "kernel_mib_delta"):
        assert key in report
    assert report["ok"] and report["sha256_match"] and report["bytes"] == MiB
    assert report["paths"] == [{"delay_ms": 1.0, "loss_pct": 0.0, "rate_mbit": 100.0},
                               {"delay_ms": 5.0, "loss_pct": 1.0, "rate_mbit": 100.0}]
    subflow, = report["subflows"]  # plain TCP: one subflow, on path 1
    assert subflow["local"].startswith("fd00:0:0:1::2:")
    assert subflow["bytes_received"] == MiB and "bytes_sent" in subflow
    assert report["kernel_mib_delta"]["TcpPassiveOpens"] == 1


@pytest.mark.netns
def test_cli_lab_run_fails_with_status_1_and_a_reason() -> None:
    result = _cli("--size", str(64 * MiB), "--direction", "up", "--rate", "1",
                  "--timeout", "1")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False and "timeout" in report["reason"]
    assert not report["sha256_match"]


@pytest.mark.netns
def test_cli_runs_mptcp_between_our_endpoints() -> None:
    # Two of our MPTCP hosts (impl/lab/mptcp_ref_run.py); an abortive close is not built.
    result = _cli("--proto", "mptcp", "--peer", "ref", "--paths", "2", "--size", "200000",
                  "--direction", "up", timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["sha256_match"] and len(report["subflows"]) == 2
    result = _cli("--proto", "mptcp", "--peer", "ref", "--size", "1", "--direction", "up",
                  "--close", "abort-ref", timeout=60)
    assert result.returncode == 2 and "not built yet" in result.stderr


@pytest.mark.netns
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])
def test_interrupted_cli_leaves_no_namespace(signal_number: int) -> None:
    # Ctrl-C or kill mid-transfer: the lab is torn down on the way out.
    process = subprocess.Popen(
        [sys.executable, "-m", "impl.cli", "lab", "run", "--size", str(64 * MiB),
         "--direction", "up", "--rate", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    name = f"mptcpref-{process.pid}-"
    while time.monotonic() < deadline and not any(n.startswith(name)
                                                  for n in list_namespaces()):
        time.sleep(0.05)
    assert any(n.startswith(name) for n in list_namespaces())
    time.sleep(0.5)
    os.kill(process.pid, signal_number)
    process.wait(timeout=20)
    assert not any(n.startswith(name) for n in list_namespaces())
