"""Events and traces: every label round-trips through a concrete event, traces round-trip
through JSON lines, and malformed trace files give the one documented error."""

from __future__ import annotations

import io
import json
from itertools import product

import pytest

from spec.core import Step
from spec.events import (
    AppSend,
    Dss,
    EventError,
    MpCapable,
    MpFastclose,
    MpTcpRst,
    SegmentReceived,
    SegmentSent,
    from_step,
    to_step,
    to_steps,
)
from spec.monitor import check_trace
from spec.scenarios import SCENARIOS
from spec.system import SYSTEM
from spec.trace import TraceError, dump_trace, load_trace, parse_trace


def _samples(label):
    domains = []
    for param in label.params:
        if param.sort == "bool":
            domains.append((False, True))
        else:
            domains.append(sorted({param.lo, param.hi, min(param.lo + 1, param.hi)}))
    for combo in product(*domains):
        yield dict(zip([p.name for p in label.params], combo, strict=True))


@pytest.mark.parametrize("name", sorted(SYSTEM.labels))
def test_every_label_round_trips_through_an_event(name):
    label = SYSTEM.labels[name]
    for index in (range(SYSTEM.config.max_subflows) if label.addressed else [None]):
        for params in _samples(label):
            step = Step(name, index, params)
            event = from_step(step)
            assert to_steps(event) == (step,), (step, event)
            assert to_step(event) == step


def test_a_segment_is_split_into_steps_in_order():
    segment = SegmentReceived(
        0, "FA", payload=2, dsn=3,
        options=(Dss(data_ack=4, dsn=3, length=3, data_fin=True),), acks_fin=True)
    assert [s.label for s in to_steps(segment)] == [
        "recv_data_ack", "recv_data", "recv_data_fin", "recv_fin", "recv_ack_of_fin"]
    assert to_steps(segment)[2].params == {"dsn": 5}
    rst = SegmentSent(1, "R", options=(MpFastclose(), MpTcpRst(reason=6)))
    assert [(s.label, dict(s.params)) for s in to_steps(rst)] == [
        ("send_fastclose", {}), ("send_rst", {"reason": 6})]
    with pytest.raises(EventError):
        to_step(segment)


@pytest.mark.parametrize("event", [
    SegmentSent(0, "SF"),
    SegmentSent(0, "SR"),
    SegmentSent(0, "A", payload=1),  # payload without a DSN
    SegmentSent(0, "A", options=(Dss(data_fin=True),)),  # DATA_FIN without mapping
    SegmentSent(0, "AX"),
    SegmentSent(0, "S", options=(MpCapable(0), MpCapable(0))),
])
def test_events_no_label_describes_are_errors(event):
    with pytest.raises(EventError):
        to_steps(event)


def test_monitor_rejects_events_on_slots_that_do_not_exist():
    from spec.events import AppConnect
    verdict = check_trace([AppConnect(), SegmentSent(7, "S", options=(MpCapable(0),))])
    assert not verdict.accepted and verdict.index == 1


def test_monitor_rejects_an_undescribable_event_at_its_index():
    verdict = check_trace([AppSend(1), SegmentSent(0, "SF")])
    assert not verdict.accepted and verdict.index == 0  # AppSend before connecting
    verdict = check_trace([SegmentSent(0, "SF")])
    assert not verdict.accepted and verdict.index == 0 and "SYN with FIN" in verdict.message


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_traces_round_trip_through_json_lines(scenario, tmp_path):
    path = tmp_path / "trace.jsonl"
    dump_trace(scenario.events, path, endpoint="test")
    assert load_trace(path) == list(scenario.events)
    buffer = io.StringIO()
    dump_trace(scenario.broken, buffer)
    buffer.seek(0)
    assert load_trace(buffer) == list(scenario.broken)
    header = json.loads(path.read_text().splitlines()[0])
    assert header == {"format": "mptcp-ref-trace", "version": 1, "endpoint": "test"}
    assert check_trace(path).accepted


HEADER = '{"format": "mptcp-ref-trace", "version": 1}'


@pytest.mark.parametrize("text,complaint", [
    ("", "no header"),
    ('{"type": "AppConnect"}\n', "header"),
    ('{"format": "mptcp-ref-trace", "version": 2}\n', "version"),
    ("not json\n", "not JSON"),
    (HEADER + "\n[1, 2]\n", "JSON object"),
    (HEADER + '\n{"type": "AppTeleport"}\n', "unknown type"),
    (HEADER + '\n{"type": "AppSend"}\n', "needs field"),
    (HEADER + '\n{"type": "AppSend", "bytes": "3"}\n', "integer"),
    (HEADER + '\n{"type": "AppSend", "bytes": true}\n', "integer"),
    (HEADER + '\n{"type": "AppSend", "bytes": 3, "colour": 1}\n', "unknown field"),
    (HEADER + '\n{"type": "AppSend", "bytes": 3, "t": "noon"}\n', "number"),
    (HEADER + '\n{"type": "SegmentSent", "subflow": 0, "options": {}}\n', "list"),
    (HEADER + '\n{"type": "SegmentSent", "subflow": 0, "options": [{"kind": "MP_X"}]}\n',
     "unknown kind"),
    (HEADER + '\n{"type": "SegmentSent", "subflow": 0, "options": [{"kind": "DSS", '
     '"data_fin": 1}]}\n', "true or false"),
])
def test_malformed_traces_raise_trace_error(text, complaint, tmp_path):
    with pytest.raises(TraceError, match=complaint):
        parse_trace(text)
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(TraceError):
        check_trace(path)


def test_unreadable_trace_files_raise_trace_error(tmp_path):
    with pytest.raises(TraceError):
        load_trace(tmp_path / "missing.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TraceError):
        load_trace(binary)


def test_timestamps_and_blank_lines_are_allowed():
    text = HEADER + '\n\n{"type": "AppConnect", "t": 0.5}\n'
    assert [type(e).__name__ for e in parse_trace(text)] == ["AppConnect"]
