"""The trace monitor: does what an endpoint did conform to the spec?

`check_trace(trace)` takes a list of events (or a JSON-lines trace file, see `spec.trace`)
and returns a `Verdict`. `Monitor` does the same one event at a time (the implementation
runs it live). Both follow the one step semantics, `SystemSpec.step_candidates`, and track
the *set* of states the spec allows after each event, so a deliberate choice of the RFC
(rules sharing a `choice` tag) never forces a guess.

On rejection the verdict names the first event no allowed state can take, the states
the machines could be in there (readable: control states and the variables that differ
from their initial values) and what was enabled there (labels, slots and rule names).

`SYSTEM` counts data in a few abstract units, as the model checks need. To judge a real
endpoint, log lengths and offsets in units the trace can afford and pass a system built
for them, e.g. `check_trace(path, build_system(Config(max_bytes=1 << 20)))`. A capture
shows only segments: a converter from pcap must also put in the application calls and
timer events that the capture implies (connect before the first SYN, close before the
DATA_FIN, ...); the monitor does not guess unseen events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import IO, Any

from spec.core import Step, SystemSpec
from spec.events import Event, EventError, to_steps
from spec.system import SYSTEM
from spec.trace import TraceError, load_trace

State = tuple[tuple[str, Any], ...]  # sorted (key, value) pairs of a SystemSpec state
MAX_STATES = 10_000  # more possible states than this means the spec is far too loose


def freeze(values: Mapping[str, Any]) -> State:
    return tuple(sorted(values.items()))


def describe(system: SystemSpec, state: State) -> str:
    """One line: each live machine's control state and its non-initial variables."""
    values = dict(state)
    initial = system.initial_values()
    parts = []
    for prefix, machine in system.prefixes():
        control = values[f"{prefix}.state"]
        changed = [f"{v.name}={values[f'{prefix}.{v.name}']}" for v in machine.variables
                   if values[f"{prefix}.{v.name}"] != initial[f"{prefix}.{v.name}"]]
        if prefix != "conn" and control == machine.initial and not changed:
            continue
        parts.append(f"{prefix}={control}" + (f"({', '.join(changed)})" if changed else ""))
    return " ".join(parts)


@dataclass
class Verdict:
    accepted: bool
    index: int | None = None  # the first rejected event
    states: list[str] = field(default_factory=list)  # possible states there (readable)
    enabled: list[str] = field(default_factory=list)  # "label[slot]: rule, rule" there
    message: str = ""
    events: int = 0  # events checked

    def __bool__(self) -> bool:
        return self.accepted


def _param_samples(system: SystemSpec, label: str, values: Mapping[str, Any]) -> list[dict]:
    """A few parameter values per label to probe what is enabled: the bounds, small
    values, and the values of the state's counters (enough for every guard here)."""
    params = system.labels[label].params
    counters = {v for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)}
    choices = []
    for param in params:
        if param.sort == "bool":
            choices.append([False, True])
        else:
            near = {param.lo, param.lo + 1, param.hi} | counters | {c + 1 for c in counters}
            choices.append(sorted(x for x in near if param.lo <= x <= param.hi))
    return [dict(zip([p.name for p in params], combo, strict=True))
            for combo in product(*choices)]


def rule_key(prefix: str, rule_name: str) -> str:
    """A fired rule as the model checks name it: "connection:<rule>" for the connection
    machine (prefix "conn"), "subflow:<rule>" for any subflow slot ("sf0", "sf1", ...)."""
    return f"{'connection' if prefix == 'conn' else 'subflow'}:{rule_name}"


def enabled_steps(system: SystemSpec, values: Mapping[str, Any]) -> list[str]:
    """What could happen in a state: 'label[slot]: rules' for each enabled label/slot."""
    found: dict[str, set[str]] = {}
    slots = range(system.config.max_subflows)
    for name, label in system.labels.items():
        for index in (slots if label.addressed else [None]):
            key = name if index is None else f"{name}[{index}]"
            for params in _param_samples(system, name, values):
                for candidate in system.step_candidates(values, Step(name, index, params)):
                    found.setdefault(key, set()).update(rule.name for _, rule in candidate.rules)
    return [f"{key}: {', '.join(sorted(rules))}" for key, rules in sorted(found.items())]


class Monitor:
    """Feed events one by one; `verdict` says where (if anywhere) the trace went wrong."""

    def __init__(self, system: SystemSpec = SYSTEM) -> None:
        self.system = system
        self.states: set[State] = {freeze(system.initial_values())}
        self.count = 0
        self.rejection: Verdict | None = None
        # Rules fired, as "connection:<rule>" / "subflow:<rule>" (the coverage keys of the
        # model checks): `fired` holds the rules every way of taking some step fired (so
        # every run the trace allows fired them); `maybe_fired` those some way fired.
        self.fired: set[str] = set()
        self.maybe_fired: set[str] = set()

    @property
    def accepted(self) -> bool:
        return self.rejection is None

    def feed(self, event: Event) -> bool:
        """Take one event; False once the trace is rejected (later events are ignored)."""
        if self.rejection is not None:
            return False
        index = self.count
        self.count += 1
        try:
            steps = to_steps(event)
        except EventError as error:
            return self._reject(index, self.states, f"event {index} ({event!r}): {error}")
        states = self.states
        for position, step in enumerate(steps):
            following: set[State] = set()
            ways: list[frozenset[str]] = []
            for state in states:
                try:
                    for candidate, values in self.system.successors(dict(state), step):
                        following.add(freeze(values))
                        ways.append(frozenset(rule_key(prefix, rule.name)
                                              for prefix, rule in candidate.rules))
                except (ValueError, KeyError, IndexError) as error:
                    return self._reject(index, states, f"event {index}: {error}")
            if not following:
                where = f" (step {position + 1} of {len(steps)})" if len(steps) > 1 else ""
                params = ", ".join(f"{k}={v}" for k, v in step.params.items())
                slot = "" if step.index is None else f"[{step.index}]"
                return self._reject(
                    index, states,
                    f"event {index} {type(event).__name__}: {step.label}{slot}({params})"
                    f"{where} is not allowed in any possible state")
            if len(following) > MAX_STATES:
                return self._reject(index, states, f"event {index}: over {MAX_STATES} states")
            self.fired |= frozenset.intersection(*ways)
            self.maybe_fired |= frozenset.union(*ways)
            states = following
        self.states = states
        return True

    def _reject(self, index: int, states: set[State], message: str) -> bool:
        ordered = sorted(states, key=repr)
        enabled = sorted({line for state in ordered[:8]
                          for line in enabled_steps(self.system, dict(state))})
        self.rejection = Verdict(
            accepted=False, index=index, message=message, events=index,
            states=[describe(self.system, state) for state in ordered],
            enabled=enabled)
        return False

    @property
    def verdict(self) -> Verdict:
        if self.rejection is not None:
            return self.rejection
        return Verdict(accepted=True, events=self.count,
                       states=[describe(self.system, s) for s in sorted(self.states, key=repr)],
                       message=f"{self.count} events accepted")


def check_trace(trace: Iterable[Event] | str | Path | IO[str],
                system: SystemSpec = SYSTEM) -> Verdict:
    """Judge a trace (events, or a trace file); a malformed file raises TraceError."""
    events = load_trace(trace) if isinstance(trace, str | Path) or hasattr(trace, "read") \
        else list(trace)
    monitor = Monitor(system)
    for event in events:
        if not monitor.feed(event):
            break
    return monitor.verdict


__all__ = ["Monitor", "TraceError", "Verdict", "check_trace", "describe", "enabled_steps",
           "rule_key"]
