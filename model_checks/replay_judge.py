"""The verdict on one replay run: our endpoint's capture judged by the spec monitor.

A run is conformant when the capture shows at least one connection of our endpoint and
the monitor (`model_checks.conformance.judge`) accepts every one of them from our side;
its fired rules are those every accepted way through the trace fired.

Some events leave no packet in a capture: a path the replay took down or brought back
(LinkDown / LinkUp), a handshake our endpoint gave up on (ConnectTimedOut: the SYNs just
stop). The replay knows when it caused or saw them; `judge_run` takes them as `known`
events, (wall-clock time, event), and puts each into the abstract trace of every
connection alive then, right after the last packet captured before it, so the monitor
judges them in order with the packets (and refuses, say, a SYN after the timeout).

Our application's calls leave no packet either: accept(), its reads, shutdown() or close()
(the same DATA_FIN on the wire) and abort(). A kernel run logs each one it made; given
with `app_calls_known`, they are judged like the link events (on our endpoint's one
connection) and the judge no longer guesses a close, shutdown or abort in front of a
DATA_FIN, FIN, MP_FASTCLOSE or RST (`judge.TIMER_CHOICES`), so rules such as
conn_close vs conn_shutdown, conn_app_recv or conn_accept fire for certain.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path
from typing import Any

from model_checks.conformance.abstraction import AbstractTrace, TraceItem, abstract_connection
from model_checks.conformance.capture import (
    CaptureError,
    endpoint_side,
    group_connections,
    read_capture,
)
from model_checks.conformance.judge import RuleFiring, judge_trace, monitor_capture
from spec import events as ev

__all__ = ["judge_run"]

Known = list[tuple[float, ev.Event]]
# our application's calls a replay logs (`replay._Player`); AppConnect, AppListen and
# AppSend stay inferred from the packets (`abstraction.py`)
APP_EVENTS = (ev.AppAccept, ev.AppRecv, ev.AppShutdown, ev.AppClose, ev.AppAbort)


def judge_run(result: Any, pcap: Path, endpoint: str, known: Known | None = None,
              app_calls_known: bool = False) -> None:
    """Fill `result` (a `replay.RunResult`): conformant, verdicts, divergence, fired.
    `app_calls_known`: `known` holds every call our application made (accept, reads,
    shutdown, close, abort), so the judge takes those instead of guessing them."""
    if known or app_calls_known:
        _judge_with_known_events(result, pcap, endpoint, known or [], app_calls_known)
        return
    try:
        report = monitor_capture(pcap, endpoint, taken_at_endpoint=True)
    except (CaptureError, ValueError) as error:
        result.conformant = False
        result.divergence = f"capture not judged: {error}"
        return
    judged = [connection for connection in report.connections
              if connection.verdict != "not judged"]
    result.verdicts = [f"{c.description}: {c.verdict}" for c in report.connections]
    for connection in judged:
        result.fired |= set(connection.fired)
        if connection.divergence is not None and not result.divergence:
            divergence = connection.divergence
            result.divergence = (f"packet {divergence.packet}: {divergence.event}: "
                                 f"{divergence.message}")
    if report.unparseable:
        result.divergence = result.divergence or f"unparseable packets: {report.unparseable}"
    result.conformant = bool(judged) and all(c.verdict == "accepted" for c in judged) \
        and not report.unparseable
    if not judged:
        result.divergence = result.divergence or "no connection of our endpoint in the capture"


def with_known_events(trace: AbstractTrace, frame_times: dict[int, float],
                      known: Known) -> AbstractTrace:
    """`trace` with each known event after the last packet captured before it. The
    item gets that packet's frame number, so the monitor takes it at once (an item
    without a frame would wait for the next packet, and after the last one is never
    fed)."""
    items = list(trace.items)
    for when, event in sorted(known, key=lambda pair: pair[0]):
        position, frame = 0, 0
        for index, item in enumerate(items):
            if item.frame is not None and frame_times.get(item.frame, when) <= when:
                position, frame = index + 1, item.frame
        items.insert(position, TraceItem(event, frame, "caused or seen by the replay"))
    return replace(trace, items=items)


def _is_app_call(event: ev.Event) -> bool:
    return isinstance(event, APP_EVENTS)


def _judge_with_known_events(result: Any, pcap: Path, endpoint: str, known: Known,
                             app_calls_known: bool) -> None:
    try:
        capture = read_capture(pcap)
        address = ipaddress.ip_address(endpoint)
    except (CaptureError, ValueError) as error:
        result.conformant = False
        result.divergence = f"capture not judged: {error}"
        return
    frame_times = {frame.number: frame.time for frame in capture.frames}
    verdicts = []
    application_seen = False
    for connection in group_connections(capture.frames).connections:
        side = endpoint_side(connection, address)
        if side is None:
            continue
        started = connection.packets[0][0].time if connection.packets else 0.0
        # Link events concern every connection alive; our application's calls its one
        # connection, the first of ours in the capture.
        mine = [(when, event) for when, event in known if when >= started
                and (not _is_app_call(event) or not application_seen)]
        application_seen = True
        trace = with_known_events(abstract_connection(connection, side), frame_times, mine)
        firing = RuleFiring()
        verdict, divergence, _, _ = judge_trace(trace, firing, app_calls_known)
        verdicts.append(verdict)
        result.verdicts.append(f"{connection.describe()}: {verdict} "
                               f"(with {len(mine)} event(s) the replay caused or saw)")
        result.fired |= firing.fired
        if divergence is not None and not result.divergence:
            result.divergence = (f"packet {divergence.packet}: {divergence.event}: "
                                 f"{divergence.message}")
    if capture.unparseable:
        result.divergence = result.divergence or f"unparseable packets: {capture.unparseable}"
    result.conformant = bool(verdicts) and all(v == "accepted" for v in verdicts) \
        and not capture.unparseable
    if not verdicts:
        result.divergence = result.divergence or "no connection of our endpoint in the capture"
