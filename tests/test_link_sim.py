"""The link model (delay, jitter, loss, rate and queue, reordering, duplication, down)
and the simulator's clock: deterministic from seeds, events in time order."""

from __future__ import annotations

import io
import json

import pytest

from impl.io.eventlog import JsonLinesLog, MemoryLog, SpecTraceLog, spec_events, tee
from impl.io.link import Link, LinkConfig
from impl.tcp.config import TcpConfig
from spec.events import ConnectTimedOut, RtoExpired, TimeWaitExpired
from spec.trace import parse_trace

from .test_tcp_transfer import payload, run_transfer


def test_delay_only_is_fifo_and_exact():
    link = Link(LinkConfig(delay=0.01))
    assert link.transmit(1500, 1.0) == [pytest.approx(1.01)]
    assert link.transmit(100, 1.0) == [pytest.approx(1.01)]


def test_rate_serializes_back_to_back_packets():
    link = Link(LinkConfig(delay=0.001, rate=8e6))  # 1 byte per microsecond
    arrivals = [link.transmit(1000, 0.0)[0] for _ in range(3)]
    assert arrivals == [pytest.approx(0.002), pytest.approx(0.003), pytest.approx(0.004)]
    # After the queue drains, a packet waits for nobody.
    assert link.transmit(1000, 1.0) == [pytest.approx(1.002)]


def test_queue_limit_tail_drops():
    link = Link(LinkConfig(rate=8e6, queue_limit=3000))
    results = [link.transmit(1000, 0.0) for _ in range(6)]
    delivered = [r for r in results if r]
    # Bytes not yet serialized (the packet on the wire included) stay under 3000.
    assert len(delivered) == 3
    assert link.stats.dropped_queue == 3


def test_loss_rate_is_close_to_configured_and_seeded():
    first = Link(LinkConfig(loss=0.1), seed=42)
    second = Link(LinkConfig(loss=0.1), seed=42)
    outcomes = [bool(first.transmit(100, i * 0.001)) for i in range(20_000)]
    assert outcomes == [bool(second.transmit(100, i * 0.001)) for i in range(20_000)]
    lost = outcomes.count(False) / len(outcomes)
    assert lost == pytest.approx(0.1, abs=0.01)
    assert first.stats.lost == outcomes.count(False)


def test_reorder_lets_later_packets_overtake():
    link = Link(LinkConfig(delay=0.01, reorder=0.2, reorder_delay=0.005), seed=1)
    sent = [(i, link.transmit(100, i * 0.001)[0]) for i in range(2000)]
    order = [i for i, _ in sorted(sent, key=lambda item: item[1])]
    assert order != list(range(2000))
    assert link.stats.reordered == pytest.approx(400, rel=0.2)
    inversions = sum(1 for a, b in zip(order, order[1:], strict=False) if a > b)
    assert inversions > 100


def test_jitter_does_not_reorder():
    link = Link(LinkConfig(delay=0.01, jitter=0.005), seed=3)
    arrivals = [link.transmit(100, i * 0.0001)[0] for i in range(1000)]
    assert arrivals == sorted(arrivals)
    assert max(arrivals[i] - i * 0.0001 for i in range(1000)) > 0.012


def test_duplicate_and_down():
    link = Link(LinkConfig(duplicate=1.0, delay=0.002))
    assert len(link.transmit(100, 0.0)) == 2
    link.set_up(False)
    assert link.transmit(100, 0.1) == [] and link.stats.dropped_down == 1
    link.set_up(True)
    assert len(link.transmit(100, 0.2)) == 2


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError):
        LinkConfig(loss=1.5)
    with pytest.raises(ValueError):
        LinkConfig(delay=-1)
    with pytest.raises(ValueError):
        LinkConfig(rate=0)


def test_simulation_is_deterministic_and_time_ordered():
    upload = payload(150_000, 30)
    link = LinkConfig(delay=0.003, loss=0.03, reorder=0.05, duplicate=0.02, jitter=0.001,
                      rate=20e6, queue_limit=64_000)
    first = run_transfer(upload, forward=link, backward=link, seed=99, capture=True)
    second = run_transfer(upload, forward=link, backward=link, seed=99, capture=True)
    assert first.finished and second.finished
    assert first.log.events == second.log.events
    assert [(t, repr(d.segment)) for t, d in first.network.captured] == [
        (t, repr(d.segment)) for t, d in second.network.captured]
    times = [t for t, _ in first.network.captured]
    assert times == sorted(times)
    third = run_transfer(upload, forward=link, backward=link, seed=100)
    assert third.log.events != first.log.events  # the seed matters


def test_event_log_writers(tmp_path):
    memory = MemoryLog()
    path = tmp_path / "events.jsonl"
    with JsonLinesLog(str(path)) as writer:
        result = run_transfer(payload(20_000), forward=LinkConfig(delay=0.002))
        for event in result.log.events:
            tee(memory, writer)(event)
    lines = path.read_text().splitlines()
    assert len(lines) == len(memory.events) > 5
    decoded = [json.loads(line) for line in lines]
    assert all({"type", "t", "conn"} <= set(event) for event in decoded)
    assert memory.of_type("tcp:state")[0]["new"] == "SYN-SENT"


def test_tcp_timers_map_onto_spec_trace_events():

    stream = io.StringIO()
    trace = SpecTraceLog(stream, subflow=2)

    def lossy_start(datagram, now):
        return now < 0.5 and datagram.segment.header.flags == 0x02  # drop the first SYN

    result = run_transfer(payload(10_000), forward=LinkConfig(delay=0.002),
                          filters=[lossy_start], client_config=TcpConfig(time_wait=1))
    client_name = result.client_connection.name
    for event in result.log.events:
        if event["conn"] == client_name:
            trace(event)
    assert parse_trace(stream.getvalue()) == [RtoExpired(2), TimeWaitExpired(2)]
    timeout = {"type": "tcp:state", "t": 1.0, "old": "SYN-SENT", "new": "CLOSED",
               "reason": "timeout", "cause": "timer"}
    assert spec_events(timeout, 1) == [ConnectTimedOut(1)]
