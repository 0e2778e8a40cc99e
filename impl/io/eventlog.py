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

This is a minimal, TCP-only format: the spec's trace vocabulary (`spec/trace.py`) did
not exist when it was written; when it lands, writers here should emit its events.

`MemoryLog` keeps events in a list (tests assert on it); `JsonLinesLog` writes one JSON
object per line; `tee` sends every event to several loggers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO

__all__ = ["JsonLinesLog", "MemoryLog", "tee"]

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
