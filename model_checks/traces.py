"""Traces in and out: model-check traces as spec trace files, and judging them.

A trace found by Z3 is a list of `Step`s; `spec.events.from_step` turns each into a
concrete event and `spec.trace.dump_trace` writes the JSON-lines file the conformance
replay reads. `accepts` judges a step sequence with the concrete semantics (a set of
possible states, as the monitor keeps), and `monitor_verdict` hands the events to the
spec's own monitor, `spec.monitor.check_trace`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from model_checks.bmc import Trace
from spec.core import Step, SystemSpec


def events_of(steps: Iterable[Step]) -> list[Any]:
    from spec.events import from_step

    return [from_step(step) for step in steps]


def write_trace(trace: Trace, path: Path, **header: Any) -> Path:
    """Write a model-check trace as a spec trace file (header keys describe its origin)."""
    from spec.trace import dump_trace

    path.parent.mkdir(parents=True, exist_ok=True)
    dump_trace(events_of(trace.steps), path, source="mptcp-ref check", **header)
    return path


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
            except (KeyError, ValueError):
                continue
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
