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
    assert "not exercised:" in result.stdout
    entry = data["rules"]["not_exercised"][0]
    assert set(entry) == {"rule", "group", "reason"} and entry["reason"]


def test_replay_command_refuses_bad_input(tmp_path: Path):
    missing = _cli("--traces", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no trace folder" in missing.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.jsonl").write_text('{"format": "mptcp-ref-trace", "version": 1}\n{"type":')
    result = _cli("--traces", str(broken))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "bad.jsonl" in result.stderr


def test_our_close_and_shutdown_are_judged_as_the_calls_the_runner_made(tmp_path: Path):
    """A capture shows the same DATA_FIN after close() and shutdown(SHUT_WR); the kernel
    runs log which one our application made, so the judge fires conn_close in one run
    and conn_shutdown in the other, and no longer guesses: told no call was made, it
    refuses the DATA_FIN."""
    from model_checks.replay import RunResult
    from model_checks.replay_judge import judge_run
    from spec import events as ev

    traces = {"close": [ev.AppConnect(), ev.AppSend(3), ev.AppClose()],
              "shutdown": [ev.AppConnect(), ev.AppSend(3), ev.AppShutdown()]}
    report = replay(traces, {}, tmp_path)
    fired = {name: run.fired for run in report.runs for name in run.traces}
    for run in report.runs:
        assert run.conformant, (run.plan, run.divergence, run.error)
        assert not run.stalls, (run.plan, run.stalls)  # the kernel saw our DATA_FIN
    assert "connection:conn_close" in fired["close"]
    assert "connection:conn_shutdown" not in fired["close"]
    assert "connection:conn_shutdown" in fired["shutdown"]
    assert "connection:conn_close" not in fired["shutdown"]
    close_run = next(run for run in report.runs if "close" in run.traces)
    unexplained = RunResult("no call", close_run.pcap, [])
    judge_run(unexplained, Path(close_run.pcap), "198.18.1.2", [], app_calls_known=True)
    assert not unexplained.conformant and "data_fin" in unexplained.divergence


def test_a_repeated_data_fin_or_synack_from_the_scripted_peer_fires_the_repeated_rule(
        tmp_path):
    """Linux never sends a DATA_FIN (or SYN/ACK) twice unprompted; a trace that receives
    one twice is played against the packet peer, which sends that segment twice."""
    from spec import events as ev

    data_fin = ev.SegmentReceived(0, "A", options=(ev.Dss(dsn=0, length=1, data_fin=True),))
    events = [ev.AppConnect(), ev.SegmentSent(0, "S", options=(ev.MpCapable(0),)),
              ev.SegmentReceived(0, "SA", options=(ev.MpCapable(1),)), data_fin, data_fin]
    from model_checks.replay_plan import supplementary_traces

    synack_twice = supplementary_traces()["supplement_synack_repeated"]
    report = replay({"twice": events, "synack": synack_twice},
                    {"twice": "connection:conn_data_fin_repeated"}, tmp_path)
    assert len(report.runs) == 2
    for run in report.runs:
        assert "scripted packet peer" in run.plan and "peer_repeat" in run.plan
        assert run.conformant, (run.plan, run.divergence, run.error, run.stalls)
    fired = {name: run.fired for run in report.runs for name in run.traces}
    assert "connection:conn_data_fin_repeated" in fired["twice"]
    # our client given its SYN/ACK twice answers the duplicate (RFC 9293 3.10.7.4)
    assert {"connection:conn_synack_repeated", "subflow:sf_synack_repeated"} <= \
        fired["synack"]
    assert report.as_json()["witnesses"]["replayed"] == 1
