"""The conformance replay over real sockets (model_checks/replay.py): spec traces played
by our endpoint against the Linux kernel in fresh namespaces, each capture judged by the
spec monitor; a bug planted in our implementation makes the run non-conformant; the
command's JSON report and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from impl.mptcp import output as output_module
from model_checks.replay import replay
from spec.scenarios import (
    ACTIVE_CLOSE,
    BAD_HMAC,
    FALLBACK,
    FASTCLOSE_RECEIVED,
    JOIN,
    PASSIVE_CLOSE,
)
from spec.trace import dump_trace

pytestmark = pytest.mark.netns

SCENARIOS = (ACTIVE_CLOSE, PASSIVE_CLOSE, FALLBACK, FASTCLOSE_RECEIVED, JOIN)


def test_textbook_scenarios_replayed_over_real_sockets_are_conformant(tmp_path: Path):
    traces = {scenario.name: list(scenario.events) for scenario in SCENARIOS}
    report = replay(traces, {}, tmp_path)
    assert len(report.runs) == len(SCENARIOS)
    for run in report.runs:
        assert run.conformant, (run.plan, run.divergence, run.error, run.stalls)
        assert not run.error and not run.stalls, (run.plan, run.error, run.stalls)
        assert Path(run.pcap).stat().st_size > 0
    fired = {name: run.fired for run in report.runs for name in run.traces}
    # each run fired the rules its scenario is about, judged from its real capture
    assert "connection:conn_synack_plain" in fired[FALLBACK.name]
    assert "connection:conn_fastclose_received" in fired[FASTCLOSE_RECEIVED.name]
    assert {"subflow:sf_join_connect", "subflow:sf_join_synack",
            "connection:conn_remove_address_sent"} <= fired[JOIN.name]
    assert "connection:conn_data_fin_received" in fired[PASSIVE_CLOSE.name]
    assert "connection:conn_data_fin_acked" in fired[ACTIVE_CLOSE.name]
    data = report.as_json()
    assert data["conformant"] == data["runs"] == len(SCENARIOS)
    assert data["rules"]["exercised_real"] == len(report.exercised) >= 40


def test_a_planted_bug_in_our_endpoint_makes_the_run_non_conformant(tmp_path, monkeypatch):
    """Our receiver acknowledges one byte more than arrived (RFC 8684 3.3.2 forbids it):
    the capture of the real run shows the DATA_ACK and the monitor refuses it."""
    original = output_module.OutputMixin._data_ack

    def one_too_many(self):
        value = original(self)
        return None if value is None else value + 1

    monkeypatch.setattr(output_module.OutputMixin, "_data_ack", one_too_many)
    report = replay({PASSIVE_CLOSE.name: list(PASSIVE_CLOSE.events)}, {}, tmp_path)
    [run] = report.runs
    assert not run.conformant
    assert "send_data_ack" in run.divergence, run.divergence
    assert report.as_json()["failures"][0]["divergence"] == run.divergence


def test_a_bad_join_hmac_is_replayed_against_the_scripted_packet_peer(tmp_path: Path):
    """Linux never sends a wrong MP_JOIN HMAC; the packet peer does, over real TUNs and
    the router namespace, and our endpoint's capture shows the reset the spec asks for."""
    report = replay({BAD_HMAC.name: list(BAD_HMAC.events)},
                    {BAD_HMAC.name: "subflow:sf_join_ack_hmac_failure"}, tmp_path)
    [run] = report.runs
    assert "scripted packet peer" in run.plan
    assert run.conformant, (run.plan, run.divergence, run.error, run.stalls)
    assert not run.error and not run.stalls, (run.error, run.stalls)
    assert "subflow:sf_join_ack_hmac_failure" in run.fired
    assert report.as_json()["witnesses"]["replayed"] == 1


def test_a_connect_timeout_is_driven_and_judged_with_the_event_the_replay_saw(tmp_path):
    """Our SYN goes where nobody answers; the timeout leaves no packet, so the judge is
    told when it happened. Told too early (before the SYNs), the monitor refuses."""
    from model_checks.conformance.capture import read_capture
    from model_checks.replay import RunResult
    from model_checks.replay_judge import judge_run
    from spec import events as ev

    events = [ev.AppConnect(), ev.SegmentSent(0, "S", options=(ev.MpCapable(0),)),
              ev.ConnectTimedOut(0)]
    report = replay({"timeout": events}, {"timeout": "subflow:sf_connect_timeout"}, tmp_path)
    [run] = report.runs
    assert run.conformant, (run.plan, run.divergence, run.error, run.stalls)
    assert {"subflow:sf_connect_timeout",
            "connection:conn_connect_timeout_closes_connection"} <= run.fired
    first_syn = read_capture(run.pcap).frames[0].time  # the retransmitted SYN comes later
    early = RunResult("early", run.pcap, [])
    judge_run(early, Path(run.pcap), "198.18.1.2", [(first_syn, ev.ConnectTimedOut(0))])
    assert not early.conformant and "send_syn_mpc" in early.divergence  # a SYN after it


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "impl.cli", "replay", *args],
                          capture_output=True, text=True, timeout=300)


def test_replay_command_writes_the_report(tmp_path: Path):
    traces = tmp_path / "traces"
    traces.mkdir()
    dump_trace(list(ACTIVE_CLOSE.events), traces / "active_close.jsonl")
    report_path = tmp_path / "replay.json"
    result = _cli("--traces", str(traces), "--json", str(report_path), "--out",
                  str(tmp_path / "captures"), "--hypothesis", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report_path.read_text())
    assert data["runs"] == data["conformant"] >= 1
    assert set(data) >= {"runs", "conformant", "rules", "failures", "witnesses"}
    assert set(data["rules"]) >= {"total", "exercised_real", "unexercisable"}
    assert data["rules"]["total"] >= 190
    assert "spec rules exercised by real runs" in result.stdout


def test_replay_command_refuses_bad_input(tmp_path: Path):
    missing = _cli("--traces", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no trace folder" in missing.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.jsonl").write_text('{"format": "mptcp-ref-trace", "version": 1}\n{"type":')
    result = _cli("--traces", str(broken))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "bad.jsonl" in result.stderr
