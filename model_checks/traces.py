"""Traces in and out: model-check traces as spec trace files, and judging them.

A trace found by Z3 is a list of `Step`s; `spec.events.from_step` turns each into a
concrete event and `spec.trace.dump_trace` writes the JSON-lines file the conformance
replay reads. `accepts` judges a step sequence with the concrete semantics (a set of
possible states, as the monitor keeps), and `monitor_verdict` hands the events to the
spec's own monitor, `spec.monitor.check_trace`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from model_checks.bmc import Trace
from spec.core import Step, SystemSpec

STEPS_FORMAT = "mptcp-ref-steps"


def events_of(steps: Iterable[Step]) -> list[Any]:
    from spec.events import from_step

    return [from_step(step) for step in steps]


def write_trace(trace: Trace, path: Path, **header: Any) -> Path:
    """Write a model-check trace as a spec trace file (header keys describe its origin).

    A system whose labels `spec.events` does not know (the toy specs of the tests) gets
    a file of bare steps instead, with format "mptcp-ref-steps"."""
    from spec.events import EventError
    from spec.trace import dump_trace

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        events = events_of(trace.steps)
    except (EventError, KeyError):
        lines = [json.dumps({"format": STEPS_FORMAT, "version": 1,
                             "source": "mptcp-ref check", **header}, sort_keys=True)]
        lines += [json.dumps(step, sort_keys=True) for step in trace.as_json()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
    dump_trace(events, path, source="mptcp-ref check", **header)
    return path


def load_steps(path: Path) -> list[Step]:
    """The steps of a trace file written by `write_trace` (either format)."""
    text = path.read_text(encoding="utf-8")
    header = json.loads(text.splitlines()[0])
    if header.get("format") == STEPS_FORMAT:
        return [Step(line["label"], line["index"], line["params"])
                for line in map(json.loads, text.splitlines()[1:]) if line]
    from spec.events import to_steps
    from spec.trace import load_trace

    return [step for event in load_trace(path) for step in to_steps(event)]


def accepts(system: SystemSpec, steps: Sequence[Step]) -> tuple[bool, int | None]:
    """(accepted, index of the first refused step) under the concrete semantics, tracking
    every state the spec allows (nondeterminism never forces a guess)."""
    states = {_freeze(system.initial_values())}
    for number, step in enumerate(steps):
        following = set()
        for state in states:
            try:
                for _, values in system.successors(dict(state), step):
                    following.add(_freeze(values))
            except (KeyError, ValueError, AttributeError):
                continue  # a (mutant's) guard reading what the event lacks: refused
        if not following:
            return False, number
        states = following
    return True, None


def _freeze(values) -> tuple:
    return tuple(sorted(values.items()))


def monitor_verdict(system: SystemSpec, steps: Sequence[Step]):
    """The spec monitor's verdict on the events these steps stand for."""
    from spec.monitor import check_trace

    return check_trace(events_of(steps), system=system)
