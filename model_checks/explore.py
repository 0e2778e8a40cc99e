"""Hypothesis exploration of the spec: a `RuleBasedStateMachine` over the concrete
semantics.

Each Hypothesis step draws one of the events enabled in the current state (a label, a
subflow slot and parameter values that `SystemSpec.successors` accepts), draws one of its
candidates when the spec allows several, takes it, and checks every invariant: state
invariants on the new state, step invariants on the transition. A failure is shrunk by
Hypothesis (drawing the first enabled event is the simplest choice) and the shrunk run
is written as a spec trace file, the same format as the Z3 counterexamples.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from model_checks.bmc import Trace, rule_names
from model_checks.results import BOUNDED, VIOLATED, PropertyResult, relative
from model_checks.sampling import label_sources, plausible_events
from spec.core import Step, SystemSpec, SystemView


def enabled_steps(system: SystemSpec, values: Mapping[str, Any], sources) -> list[Step]:
    """Every event (label, slot, parameter values) the spec accepts in this state."""
    out = []
    for label_name, slot in plausible_events(system, values, sources):
        label = system.labels[label_name]
        domains = [(False, True) if param.sort == "bool" else range(param.lo, param.hi + 1)
                   for param in label.params]
        for combination in itertools.product(*domains):
            params = dict(zip((param.name for param in label.params), combination,
                              strict=True))
            step = Step(label_name, slot, params)
            try:
                if system.step_candidates(values, step):
                    out.append(step)
            except (KeyError, ValueError, AttributeError):
                continue  # a (mutant's) guard reading what the event lacks: refused
    return out


def _moving_first(system: SystemSpec, values: Mapping[str, Any], steps: list[Step],
                  terminal: tuple[str, ...]) -> tuple[list[Step], list[Step]]:
    """(events that change the state without ending the connection, events that change
    the state). Only when nothing changes the state are the idle events (a CLOSED slot
    answering a stray segment, a repeated close()) offered, as they explore nothing."""
    moving, going_on = [], []
    for step in steps:
        following = [after for _, after in system.successors(values, step) if after != values]
        if following:
            moving.append(step)
            if any(after["conn.state"] not in terminal for after in following):
                going_on.append(step)
    return going_on, moving or steps


class InvariantBroken(AssertionError):
    def __init__(self, name: str, trace: Trace) -> None:
        super().__init__(f"invariant {name} broken after {len(trace)} steps:\n"
                         + "\n".join(trace.lines()))
        self.name = name
        self.trace = trace


def machine_for(system: SystemSpec, failure_path: Path | None,
                terminal: tuple[str, ...] = ("CLOSED",)) -> type[RuleBasedStateMachine]:
    """A RuleBasedStateMachine class exploring `system`."""
    sources = label_sources(system)
    state_invariants = [inv for inv in system.invariants if inv.kind == "state"]
    step_invariants = [inv for inv in system.invariants if inv.kind == "step"]
    cache: dict[tuple, list[Step]] = {}
    initial = dict(system.initial_values())

    class SpecExploration(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.values = dict(system.initial_values())
            self.trace = Trace([], [], [dict(self.values)])

        @rule(data=st.data())
        def take_an_enabled_event(self, data: st.DataObject) -> None:
            if self.values["conn.state"] in terminal and self.values != initial:
                return  # the connection is over; what is left is idling
            key = tuple(sorted(self.values.items()))
            if key not in cache:
                cache[key] = _moving_first(system, self.values,
                                           enabled_steps(system, self.values, sources),
                                           terminal)
            going_on, enabled = cache[key]
            if not enabled:
                return  # a terminal state: nothing more to explore from here
            # Nine times in ten keep the connection alive, so runs get somewhere; closing
            # (draw 0) is what shrinking tries first.
            if going_on and data.draw(st.integers(0, 9), label="close now?") != 0:
                enabled = going_on
            # A wide integer folded onto the list spreads the draws (Hypothesis favours
            # small values) yet still shrinks towards the first event.
            step = enabled[data.draw(st.integers(0, 1 << 20), label="event") % len(enabled)]
            successors = list(system.successors(self.values, step))
            which = data.draw(st.integers(0, len(successors) - 1), label="candidate") \
                if len(successors) > 1 else 0
            candidate, following = successors[which]
            before = self.values
            self.values = following
            self.trace = self.trace.extended(step, rule_names(candidate.rules), following)
            pre = SystemView(system, before, step)
            post = SystemView(system, following, step)
            for invariant in step_invariants:
                if not invariant.predicate(pre, step, post):
                    self._broken(invariant.name)
            view = SystemView(system, following)
            for invariant in state_invariants:
                if not invariant.predicate(view):
                    self._broken(invariant.name)

        def _broken(self, name: str) -> None:
            if failure_path is not None:
                from model_checks.traces import write_trace

                # Hypothesis replays the shrunk example last, so this file ends up
                # holding the shortest failing run it found.
                write_trace(self.trace, failure_path, violated=name, origin="hypothesis")
            raise InvariantBroken(name, self.trace)

    return SpecExploration


def explore(
    system: SystemSpec,
    *,
    examples: int = 40,
    steps: int = 30,
    failure_path: Path | None = None,
    seed: int = 0,
) -> PropertyResult:
    """Run the exploration; `violated` with the shrunk trace, or `bounded(steps)`."""
    start = time.monotonic()
    machine = machine_for(system, failure_path)
    machine.TestCase.settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=True,
        # No "explain" phase: it re-runs many variants of a failure, slow on a model.
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    del seed  # derandomized: the same runs every time, for reproducible reports
    try:
        run_state_machine_as_test(machine, settings=machine.TestCase.settings)
    except InvariantBroken as broken:
        return PropertyResult(
            f"hypothesis: {broken.name}", "exploration",
            f"Hypothesis ({examples} runs x {steps} steps)", VIOLATED, len(broken.trace),
            time.monotonic() - start, counterexample=broken.trace,
            trace_file=relative(failure_path) if failure_path else None)
    return PropertyResult(
        "hypothesis_exploration", "exploration",
        f"Hypothesis ({examples} runs x {steps} steps)", BOUNDED, steps,
        time.monotonic() - start, notes=["every invariant held on every explored step"])
