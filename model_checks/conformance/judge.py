"""Judge a capture against the spec: `monitor_capture(path, endpoint)` -> `CaptureReport`.

Each connection the endpoint takes part in is abstracted (`abstraction.py`) and fed to
`spec.monitor.Monitor`, the spec's own monitor, which tracks every spec state the trace
allows. Packets are fed one at a time, together with the events `abstraction.py` inferred
in front of them.

Hidden events that depend on the spec state. A capture never shows close(), shutdown(),
an abort or the connection's close timer, yet some packets are only allowed after one of
them. For those packets (and only those, by label, in `HIDDEN_CHOICES`) the judge also
tries the packet preceded by each listed alternative and keeps every spec state any of
them reaches (together with the states reached without one). So a DATA_FIN may follow a
close() or a shutdown() the capture did not show, and an MP_FASTCLOSE an abort, a close
with unread data or the close timer; nothing else is ever inserted, and a packet no
alternative explains is a divergence.

A capture taken next to the other side (told by the handshake's timing) is put back in
the judged side's order first, by each subflow's estimated one-way delay (`_as_seen_by`).

Exit status of the command (`CaptureReport.exit_code`): 0 when every judged connection
is accepted, 1 when one diverges, 2 on bad input (no connection to judge, or packets our
codec rejects).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from impl.wire import TcpFlags
from model_checks.conformance.abstraction import AbstractTrace, TraceItem, abstract_connection
from model_checks.conformance.capture import (
    CLIENT,
    SERVER,
    CaptureFile,
    Connection,
    endpoint_side,
    group_connections,
    read_capture,
)
from spec import events as ev
from spec.core import SystemSpec
from spec.monitor import Monitor, State
from spec.system import build_system

# label of a packet's step -> hidden events that may have happened just before it
HIDDEN_CHOICES: dict[str, tuple[tuple[ev.Event, ...], ...]] = {
    # App. D: a DATA_FIN follows the application's close() or shutdown(SHUT_WR)
    "send_data_fin": ((ev.AppClose(),), (ev.AppShutdown(),)),
    # 3.7: after fallback the TCP FIN is the DATA_FIN
    "send_fin": ((ev.AppClose(),), (ev.AppShutdown(),)),
    # 3.5: MP_FASTCLOSE after an abortive close, a close() with unread data, or the
    # close timer (Linux: net.mptcp.close_timeout)
    "send_fastclose": ((ev.AppAbort(),), (ev.AppClose(),), (ev.CloseTimerExpired(),)),
    # an abortive close of a plain TCP / fallen-back connection is a bare RST
    "send_rst": ((ev.AppAbort(),), (ev.AppClose(),)),
}
APP_CALLS = (ev.AppClose, ev.AppShutdown, ev.AppAbort)
# The hidden choices left when the application's calls are known (a replay's log gives
# them as events, `replay_judge`): only the close timer is still guessed.
TIMER_CHOICES: dict[str, tuple[tuple[ev.Event, ...], ...]] = {
    label: tuple(choice for choice in choices
                 if not any(isinstance(event, APP_CALLS) for event in choice))
    for label, choices in HIDDEN_CHOICES.items()
}
SHOWN_STATES = 6  # possible states listed in a divergence report


@dataclass
class Divergence:
    packet: int | None  # frame number (1-based, as Wireshark)
    event: str  # the abstract event and, when it is a packet, its steps
    message: str  # the monitor's message: which step no state allows
    states: list[str]  # the spec states possible just before
    enabled: list[str]  # what those states allow ("label[slot]: rules")
    inferred_before: list[str]  # inferred events fed with the packet
    tried: list[str]  # hidden alternatives tried as well
    rules: list[str] = field(default_factory=list)  # the refused label's rules and guards


@dataclass
class ConnectionReport:
    number: int
    description: str
    side: str | None
    packets: int
    events: int = 0
    verdict: str = "not judged"  # "accepted", "divergence", "not judged"
    divergence: Divergence | None = None
    final_states: list[str] = field(default_factory=list)
    inferred: int = 0
    notes: list[str] = field(default_factory=list)
    # Spec rules the judged side fired, as "connection:<rule>" / "subflow:<rule>":
    # `fired` in every way the trace can be taken, `maybe_fired` in some way.
    fired: list[str] = field(default_factory=list)
    maybe_fired: list[str] = field(default_factory=list)


@dataclass
class RuleFiring:
    """The rules a judged trace fired (see `spec.monitor.Monitor.fired`)."""

    fired: set[str] = field(default_factory=set)
    maybe_fired: set[str] = field(default_factory=set)

    def add(self, accepted: list[Monitor]) -> None:
        """One packet taken by these accepted runs (the plain one and hidden choices):
        what all of them fired is certain, what any fired is possible."""
        if not accepted:
            return
        self.fired |= set.intersection(*(run.fired for run in accepted))
        self.maybe_fired |= set.union(*(run.maybe_fired for run in accepted))


@dataclass
class CaptureReport:
    file: str
    endpoint: str
    frames: int
    tcp_packets: int
    not_ip: int
    not_tcp: int
    unparseable: list[dict[str, Any]]
    unmatched: dict[str, list[int]]
    connections: list[ConnectionReport]

    @property
    def exit_code(self) -> int:
        if any(c.verdict == "divergence" for c in self.connections):
            return 1
        if self.unparseable or not any(c.verdict == "accepted" for c in self.connections):
            return 2
        return 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}

    def text(self) -> str:
        lines = [f"{self.file}: {self.frames} frames, {self.tcp_packets} TCP packets; "
                 f"endpoint {self.endpoint}"]
        if self.not_ip or self.not_tcp:
            lines.append(f"  skipped: {self.not_ip} frames without IP, {self.not_tcp} IP "
                         f"packets without TCP")
        for bad in self.unparseable:
            lines.append(f"  unparseable packet {bad['number']}: {bad['reason']}")
        for pair, numbers in self.unmatched.items():
            lines.append(f"  {len(numbers)} packets of {pair} (first {numbers[0]}) belong to "
                         f"no connection whose start is in the capture: not judged")
        for report in self.connections:
            lines.extend(_connection_text(report))
        return "\n".join(lines)


def _connection_text(report: ConnectionReport) -> list[str]:
    head = (f"connection {report.number}: {report.description}; as {report.side or '-'}: "
            f"{report.packets} packets, {report.events} events "
            f"({report.inferred} inferred): {report.verdict.upper()}")
    lines = [head]
    lines += [f"  note: {note}" for note in report.notes]
    found = report.divergence
    if found is None:
        return lines
    where = f"packet {found.packet}" if found.packet is not None else "an inferred event"
    lines.append(f"  first divergence at {where}: {found.event}")
    lines.append(f"  {found.message}")
    if found.inferred_before:
        lines.append(f"  inferred just before it: {', '.join(found.inferred_before)}")
    if found.tried:
        lines.append(f"  also tried after: {'; '.join(found.tried)}")
    lines.append(f"  possible spec states ({len(found.states)}):")
    lines += [f"    {state}" for state in found.states[:SHOWN_STATES]]
    if len(found.states) > SHOWN_STATES:
        lines.append(f"    ... {len(found.states) - SHOWN_STATES} more")
    if found.rules:
        lines.append("  the refused label's rules (machine: rule [source states] guard):")
        lines += [f"    {line}" for line in found.rules]
    lines.append("  enabled there:")
    lines += [f"    {line}" for line in found.enabled]
    return lines


def _event_text(event: ev.Event) -> str:
    try:
        steps = ev.to_steps(event)
    except ev.EventError as error:
        return f"{event!r} ({error})"
    shown = []
    for step in steps:
        params = ", ".join(f"{k}={v}" for k, v in step.params.items())
        slot = "" if step.index is None else f"[{step.index}]"
        shown.append(f"{step.label}{slot}({params})")
    return f"{type(event).__name__}: {' + '.join(shown)}"


def _run(system: SystemSpec, states: set[State], events: list[ev.Event]) -> Monitor:
    monitor = Monitor(system)
    monitor.states = set(states)
    for event in events:
        if not monitor.feed(event):
            break
    return monitor


def _hidden_choices(event: ev.Event, hidden: dict[str, tuple[tuple[ev.Event, ...], ...]]
                    ) -> tuple[tuple[ev.Event, ...], ...]:
    if not isinstance(event, ev.SegmentSent):
        return ()
    try:
        labels = [step.label for step in ev.to_steps(event)]
    except ev.EventError:
        return ()
    choices: list[tuple[ev.Event, ...]] = []
    for label in labels:
        for choice in hidden.get(label, ()):
            if choice not in choices:
                choices.append(choice)
    return tuple(choices)


def _rules_of(system: SystemSpec, message: str) -> list[str]:
    """The rules of the label the monitor refused, with their sources and guard texts,
    so a reader sees which condition failed."""
    label = message.split("inferred ")[-1].split("[")[0].split("(")[0].strip()
    lines = []
    for name, machine in (("connection", system.connection), ("subflow", system.subflow)):
        for rule in machine.rules_for(label):
            guard = rule.guard_text or "always"
            lines.append(f"{name}: {rule.name} [{', '.join(rule.source)}] {guard}")
    return lines


def judge_trace(trace: AbstractTrace, firing: RuleFiring | None = None,
                app_calls_known: bool = False,
                ) -> tuple[str, Divergence | None, list[str], int]:
    """(verdict, divergence, final states, events fed) of one abstract trace; `firing`
    collects the rules it fired. `app_calls_known`: the trace already holds every
    close(), shutdown() and abort() the application made (a replay's log), so they are
    not guessed in front of a DATA_FIN, FIN, MP_FASTCLOSE or RST (`TIMER_CHOICES`)."""
    hidden = TIMER_CHOICES if app_calls_known else HIDDEN_CHOICES
    system = build_system(trace.config)
    states: set[State] = Monitor(system).states
    pending: list[TraceItem] = []
    fed = 0
    for item in trace.items:
        if item.frame is None:
            pending.append(item)
            continue
        inferred = [p.event for p in pending]
        plain = _run(system, states, inferred + [item.event])
        reached = set(plain.states) if plain.accepted else set()
        taken = [plain] if plain.accepted else []
        choices = _hidden_choices(item.event, hidden)
        for choice in choices:
            attempt = _run(system, states, inferred + list(choice) + [item.event])
            if attempt.accepted:
                reached |= attempt.states
                taken.append(attempt)
        if firing is not None:
            firing.add(taken)
        if not reached:
            verdict = plain.verdict
            failed_at = verdict.index if verdict.index is not None else len(inferred)
            message = verdict.message.split(": ", 1)[-1] if verdict.message else ""
            if failed_at < len(inferred):
                why = pending[failed_at].inferred
                refused = message.split(" is not allowed")[0]
                message = (f"the packet needs the inferred {refused} first ({why}), which "
                           f"no possible state allows")
            return "divergence", Divergence(
                packet=item.frame, event=_event_text(item.event), message=message,
                states=verdict.states, enabled=verdict.enabled,
                rules=_rules_of(system, message),
                inferred_before=[_event_text(e) for e in inferred],
                tried=[", ".join(type(e).__name__ for e in choice) for choice in choices],
            ), [], fed + failed_at
        states = reached
        fed += len(inferred) + 1
        pending = []
    final = Monitor(system)
    final.states = states
    return "accepted", None, final.verdict.states, fed + len(pending)


FAR_RTT = 0.002  # seconds of handshake round trip from which capture order misleads
DELAY_SHARE = 0.9  # of half a handshake round trip, taken as the one-way delay (see below)


def _handshake_rtts(connection: Connection) -> dict[int, tuple[float, float]]:
    """Per subflow slot: (SYN -> SYN/ACK, SYN/ACK -> third ACK) in seconds. Where the
    capture runs next to the subflow's initiator the first gap is a round trip and the
    second about nothing; next to the listener, the other way round."""
    times: dict[int, dict[str, float]] = {}
    for frame, slot, _ in connection.packets:
        flags, seen = frame.packet.tcp.flags, times.setdefault(slot, {})
        if flags & TcpFlags.SYN and not flags & TcpFlags.ACK:
            seen.setdefault("syn", frame.time)
        elif flags & TcpFlags.SYN:
            seen.setdefault("synack", frame.time)
        elif "synack" in seen:
            seen.setdefault("ack", frame.time)
    return {slot: (seen["synack"] - seen["syn"], seen["ack"] - seen["synack"])
            for slot, seen in times.items() if len(seen) == 3}


def _least_rtts(connection: Connection, near: str) -> dict[int, float]:
    """Per subflow: the least time, at the capture point, from a segment the near side
    sent to the far side's first ACK of it (a round trip; delayed ACKs only add)."""
    sent: dict[tuple[int, int], float] = {}
    least: dict[int, float] = {}
    for frame, slot, sender in connection.packets:
        tcp = frame.packet.tcp
        if sender == near:
            length = len(frame.packet.payload) + int(bool(tcp.flags & (TcpFlags.SYN |
                                                                      TcpFlags.FIN)))
            if length:
                sent.setdefault((slot, (tcp.seq + length) % (1 << 32)), frame.time)
        elif tcp.flags & TcpFlags.ACK:
            start = sent.pop((slot, tcp.ack), None)
            if start is not None:
                least[slot] = min(least.get(slot, frame.time - start), frame.time - start)
    return least


def _as_seen_by(connection: Connection, side: str) -> tuple[Connection, str]:
    """The connection's packets in the order `side` saw them, and a note, when the
    handshake timing shows the capture ran next to the other side.

    There, a packet `side` sent was captured one one-way delay after it was sent, and a
    packet it received one delay before it arrived, so packets that crossed on the way
    appear in the wrong order (an MP_CAPABLE ACK repeated "after" a DSS that had not yet
    arrived). Each packet is placed at its capture time minus (sent by `side`) or plus
    (received) the subflow's one-way delay, taken as DELAY_SHARE of half its least round
    trip seen (handshake, or a segment and its first ACK): a little less than the delay,
    so an answer is never placed before what it answers. Queueing that varies the delay,
    and packets lost after the capture point, are not undone."""
    rtts = _handshake_rtts(connection)
    if 0 not in rtts:
        return connection, ""
    at_initiator, at_listener = rtts[0]
    near = CLIENT if at_initiator > at_listener else SERVER
    if max(at_initiator, at_listener) < FAR_RTT or near == side:
        return connection, ""
    least = _least_rtts(connection, near)
    for slot, gaps in rtts.items():
        least[slot] = min(least.get(slot, max(gaps)), max(gaps))
    delay = {slot: DELAY_SHARE * rtt / 2 for slot, rtt in least.items()}
    default = delay[0]

    def seen_at(entry: tuple[int, tuple]) -> tuple[float, int]:
        index, (frame, slot, sender) = entry
        shift = delay.get(slot, default)
        return (frame.time - shift if sender == side else frame.time + shift, index)

    ordered = [packet for _, packet in sorted(enumerate(connection.packets), key=seen_at)]
    moved = sum(1 for a, b in zip(ordered, connection.packets, strict=True) if a is not b)
    note = (f"the capture was taken near the {near} (handshake round trip "
            f"{max(rtts[0]) * 1000:.1f} ms): packets are judged in the order the {side} saw "
            f"them, each moved by its subflow's one-way delay (subflow 0: "
            f"{default * 1000:.1f} ms; {moved} out of capture order); a divergence may "
            f"still be the capture's (varying queueing delay, losses after the capture "
            f"point)")
    return replace(connection, packets=ordered), note


def judge_connection(connection: Connection, side: str | None,
                     taken_at_endpoint: bool = False) -> ConnectionReport:
    """`taken_at_endpoint`: the capture is known to come from the judged endpoint's own
    interface (as our endpoint's TUN captures do), so capture order is its order and the
    far-side guess is not made (a slow endpoint, e.g. ours under load, answers a SYN late
    and would look like the far side)."""
    report = ConnectionReport(connection.number, connection.describe(), side,
                              len(connection.packets))
    if side is None:
        report.notes.append("the endpoint takes no part in it")
        return report
    if not taken_at_endpoint:
        connection, far = _as_seen_by(connection, side)
        if far:
            report.notes.append(far)
    trace = abstract_connection(connection, side)
    report.notes.extend(trace.notes)
    report.inferred = sum(1 for item in trace.items if item.frame is None)
    firing = RuleFiring()
    verdict, divergence, final, fed = judge_trace(trace, firing)
    report.fired, report.maybe_fired = sorted(firing.fired), sorted(firing.maybe_fired)
    report.verdict, report.divergence, report.events = verdict, divergence, fed
    report.final_states = final[:SHOWN_STATES]
    return report


def monitor_capture(path: str | Path, endpoint: str | None = None,
                    taken_at_endpoint: bool = False) -> CaptureReport:
    """Judge every connection of the capture at `path` from `endpoint`'s point of view
    (an address of that host; default: the client of the first connection). Raises
    `CaptureError` for a file that is not a readable capture and `ValueError` for an
    endpoint that is not an IP address."""
    capture: CaptureFile = read_capture(path)
    grouping = group_connections(capture.frames)
    if endpoint is not None:
        address = ipaddress.ip_address(endpoint)
    elif grouping.connections:
        address = grouping.connections[0].client[0]
    else:
        address = None
    reports = [judge_connection(c, None if address is None else endpoint_side(c, address),
                                taken_at_endpoint)
               for c in grouping.connections]
    return CaptureReport(
        file=str(path), endpoint=str(address) if address is not None else "-",
        frames=capture.total_frames, tcp_packets=len(capture.frames),
        not_ip=capture.not_ip, not_tcp=capture.not_tcp,
        unparseable=[{"number": u.number, "reason": u.reason} for u in capture.unparseable],
        unmatched=grouping.unmatched, connections=reports)


def write_json(report: CaptureReport, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
