"""Event logs: where the diagnostic events of the sans-I/O core end up.

The core calls a logger, a plain callable taking one dict. Every event has at least
`{"type": str, "t": float}` (virtual or real seconds) and, from a TCP connection, `conn`
(its name). Sequence numbers in TCP events are relative to the sender's ISN, as
Wireshark shows them (the SYN is 0, the first payload byte 1). TCP event types (emitted
by `impl.tcp`):

    tcp:state             old, new                        RFC 9293 state change
    tcp:rto               seq, backoff, rto, flight, ...  retransmission timer expired
    tcp:fast_retransmit   seq, dupacks, cwnd, ssthresh     fast recovery entered
    tcp:recovery_exit     kind ("fast"|"loss"), snd_una
    tcp:retransmit        seq, length, fin, recovery       one retransmitted segment
    tcp:zero_window_probe seq, backoff                     persist timer fired
    tcp:challenge_ack     reason                           RFC 5961 challenge ACK
    tcp:paws_reject       seq                              RFC 7323 PAWS drop

    (a "tcp:state" event into CLOSED also has `reason` and `cause`: "timer", "rst",
    "ack" or "user")

These diagnostics are richer than the spec's trace vocabulary (`spec.events`, written as
`spec.trace` version 1). `spec_events` maps the ones that are spec events, the subflow
timers (RtoExpired, ConnectTimedOut, TimeWaitExpired), onto a subflow slot, and
`SpecTraceLog` writes them as a spec trace; segments and application calls are the MPTCP
layer's to log, since only it knows DSNs and option summaries.

`MemoryLog` keeps events in a list (tests assert on it); `JsonLinesLog` writes one JSON
object per line; `tee` sends every event to several loggers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO

from spec.events import ConnectTimedOut, Event, RtoExpired, TimeWaitExpired
from spec.trace import FORMAT, VERSION, event_to_json

__all__ = ["JsonLinesLog", "MemoryLog", "SpecTraceLog", "spec_events", "tee"]

Logger = Callable[[dict], None]


class MemoryLog:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)

    def of_type(self, kind: str, conn: str | None = None) -> list[dict]:
        return [
            event for event in self.events
            if event["type"] == kind and (conn is None or event.get("conn") == conn)
        ]

    def types(self) -> set[str]:
        return {event["type"] for event in self.events}


class JsonLinesLog:
    """Writes events as JSON lines to a path or an open text stream."""

    def __init__(self, target: str | IO[str]) -> None:
        if isinstance(target, str):
            self._stream: IO[str] = open(target, "w", encoding="utf-8")  # noqa: SIM115
            self._owned = True
        else:
            self._stream = target
            self._owned = False

    def __call__(self, event: dict) -> None:
        self._stream.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")

    def close(self) -> None:
        if self._owned:
            self._stream.close()

    def __enter__(self) -> JsonLinesLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tee(*loggers: Logger) -> Logger:
    def log(event: dict) -> None:
        for logger in loggers:
            logger(event)

    return log


def spec_events(event: dict, subflow: int = 0) -> list[Event]:
    """The `spec.events` a TCP log event stands for on subflow slot `subflow` (often
    none: most TCP diagnostics are below the spec's level of detail)."""
    kind = event.get("type")
    if kind == "tcp:rto":
        return [RtoExpired(subflow)]
    if kind == "tcp:state" and event.get("new") == "CLOSED" and event.get("cause") == "timer":
        if event.get("old") == "TIME-WAIT":
            return [TimeWaitExpired(subflow)]
        if event.get("old") in ("SYN-SENT", "SYN-RECEIVED"):
            return [ConnectTimedOut(subflow)]
    return []


class SpecTraceLog:
    """A logger writing a `spec.trace` version-1 file from one subflow's TCP log."""

    def __init__(self, stream: IO[str], subflow: int = 0, **header: object) -> None:
        self._stream = stream
        self.subflow = subflow
        header = {"format": FORMAT, "version": VERSION, "source": "impl.tcp", **header}
        stream.write(json.dumps(header, sort_keys=True) + "\n")

    def __call__(self, event: dict) -> None:
        for spec_event in spec_events(event, self.subflow):
            line = {**event_to_json(spec_event), "t": event["t"]}
            self._stream.write(json.dumps(line, sort_keys=True) + "\n")
