"""The spec tables as `transitions` state machines, and a runner that drives them together.

`build_machine(spec, models)` makes one `transitions.Machine` from a `MachineSpec`
(`auto_transitions=False`, so only the table's rules exist): every rule is a trigger named
after the rule, from its source states to its target (an internal transition when it
stays), with a condition that calls the rule's guard on concrete values and an `after`
callback that applies the rule's effect. A plain `Machine` is used on purpose: state and
rule names contain `_`, which HierarchicalMachine would split into nested states.

`SystemRunner` holds one connection model and `Config.max_subflows` subflow models. It
does not choose rules itself: for each step it asks `SystemSpec.step_candidates` (the one
step semantics) which rules fire, takes one candidate (the first, or the caller's choice
among the RFC's deliberate choices), fires those rules' triggers on the machines, and
checks that the machines land where the step semantics said. Guards and effects of all
machines read the same pre-state, as the step semantics requires.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from transitions import EventData, Machine

from spec.core import Candidate, MachineSpec, Rule, Step, SystemSpec, SystemView
from spec.events import Event, to_steps
from spec.system import SYSTEM


class MachineModel:
    """One machine instance (the connection, or one subflow slot) of a SystemRunner."""

    state: str  # set by transitions

    def __init__(self, runner: SystemRunner, prefix: str) -> None:
        self.runner = runner
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"<{self.prefix} {getattr(self, 'state', '?')}>"


def _guard(rule: Rule) -> Callable[[EventData], bool]:
    def condition(event: EventData) -> bool:
        return bool(rule.guard(event.model.runner.pre_view))
    condition.__name__ = f"guard_{rule.name}"
    return condition


def _effect(rule: Rule) -> Callable[[EventData], None]:
    def after(event: EventData) -> None:
        model: MachineModel = event.model
        model.runner.apply(model.prefix, model.state, rule.effect(model.runner.pre_view))
    after.__name__ = f"effect_{rule.name}"
    return after


def build_machine(spec: MachineSpec, models: Sequence[MachineModel]) -> Machine:
    """A transitions machine for `spec`, driving `models` (one per machine instance)."""
    machine = Machine(
        model=list(models), states=list(spec.states), initial=spec.initial,
        auto_transitions=False, send_event=True, ignore_invalid_triggers=False,
        name=spec.name,
    )
    for rule in spec.rules:
        machine.add_transition(
            rule.name, list(rule.source), rule.target,  # target None: internal transition
            conditions=[_guard(rule)], after=[_effect(rule)],
        )
    return machine


Chooser = Callable[[Sequence[Candidate]], Candidate]


class SystemRunner:
    """The connection and subflow machines, stepped together by the spec's step semantics."""

    def __init__(self, system: SystemSpec = SYSTEM) -> None:
        self.system = system
        self.values: dict[str, Any] = system.initial_values()
        self.connection = MachineModel(self, "conn")
        self.subflows = [MachineModel(self, f"sf{i}")
                         for i in range(system.config.max_subflows)]
        self.connection_machine = build_machine(system.connection, [self.connection])
        self.subflow_machine = build_machine(system.subflow, self.subflows)
        self.pre_view: SystemView | None = None
        self.fired: list[str] = []  # rule names, in firing order

    def model(self, prefix: str) -> MachineModel:
        return self.connection if prefix == "conn" else self.subflows[int(prefix[2:])]

    def apply(self, prefix: str, state: str, updates: Mapping[str, Any]) -> None:
        self.values[f"{prefix}.state"] = state
        for name, value in updates.items():
            self.values[f"{prefix}.{name}"] = value

    def step(self, step: Step, choose: Chooser | None = None) -> bool:
        """Take one step; False (and no change) when the spec refuses it."""
        candidates = self.system.step_candidates(self.values, step)
        if not candidates:
            return False
        candidate = (choose or (lambda options: options[0]))(candidates)
        self.pre_view = SystemView(self.system, dict(self.values), step)
        try:
            for prefix, rule in candidate.rules:
                if not self.model(prefix).trigger(rule.name):
                    raise AssertionError(f"{prefix}: {rule.name} did not fire")
                self.fired.append(rule.name)
        finally:
            self.pre_view = None
        drift = {key: (self.values[key], value) for key, value in candidate.updates.items()
                 if self.values[key] != value}
        if drift:
            raise AssertionError(f"machines and step semantics disagree: {drift}")
        return True

    def feed(self, event: Event, choose: Chooser | None = None) -> bool:
        """Take all steps of one event; False at the first refused one."""
        return all(self.step(step, choose) for step in to_steps(event))

    def states(self) -> dict[str, str]:
        """The control state of every machine, read from the transitions models."""
        return {"conn": self.connection.state,
                **{model.prefix: model.state for model in self.subflows}}
