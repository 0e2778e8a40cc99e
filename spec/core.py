"""The vocabulary of the spec tables and the one step semantics everything shares.

Rules of this module (read these before writing a table):

1. A machine (`MachineSpec`) is a set of control states, a few bounded state variables
   (`Variable`) and a table of named rules (`Rule`): (name, source states, label, guard,
   effect, target, RFC section). A label missing from a state's rows means the event is a
   protocol error there (h2's "missing row = error" rule); nothing is implied.
2. The system (`SystemSpec`) is one connection machine and `config.max_subflows` copies of
   the subflow machine (slots 0..N-1; slot 0 is the initial subflow). Events are abstracted
   to labels (`Label`): a label names what happened; an *addressed* label also names the
   subflow slot it happened on, and may carry bounded integer/boolean parameters.
3. One step = one labelled event. It is offered to the connection machine if the label is in
   the connection's alphabet, and to the addressed subflow if the label is in the subflow's
   alphabet (synchronous product, as in CSP). Every machine offered the event must fire
   exactly one of its rules whose source contains its state and whose guard holds; if any
   of them has none, the step is impossible (the event is refused). Several enabled rules of
   one machine are a nondeterministic choice; they must share a `choice` tag to say the
   choice is deliberate (RFC 8684 leaves it open), or the determinism check reports them.
4. Guards and effects read the whole pre-state through a `SystemView` (never the post-state)
   and are written with `spec.logic` helpers only, so the same function runs on Python
   values (monitor, `transitions` machines) and on Z3 terms (model checks). An effect
   returns the new values of its own machine's variables only; everything else is unchanged.
5. Integers are bounded (`Variable.lo`..`Variable.hi`): a step whose effect would leave the
   bounds is impossible. This is the finite abstraction the model checks work in; the
   bounds are parameters of `Config`.
6. `step_candidates` below is the only definition of the step semantics. The monitor, the
   `transitions` runner and the Z3 encoder all call it; nobody writes a second copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import product
from typing import Any, Literal

from spec.logic import And, Value, is_symbolic

Sort = Literal["bool", "int"]
CONNECTION = "connection"
SUBFLOW = "subflow"


@dataclass(frozen=True)
class Variable:
    """A bounded state variable of a machine, or a parameter of a label."""

    name: str
    sort: Sort = "bool"
    initial: bool | int = False
    lo: int = 0
    hi: int = 1
    doc: str = ""

    def in_bounds(self, value: Value) -> Value:
        if self.sort == "bool":
            return True
        return And(value >= self.lo, value <= self.hi)


@dataclass(frozen=True)
class Label:
    """An abstract event the rules match on.

    `origin` says who causes it, which the replay harness needs: "app" (an API call on the
    endpoint), "peer" (a segment received), "endpoint" (a segment the endpoint sends),
    "timer", "path" (address or link events), or "internal".
    """

    name: str
    origin: str
    addressed: bool = True
    params: tuple[Variable, ...] = ()
    doc: str = ""


Guard = Callable[["SystemView"], Value]
Effect = Callable[["SystemView"], Mapping[str, Value]]


def always(view: SystemView) -> Value:
    return True


def unchanged(view: SystemView) -> Mapping[str, Value]:
    return {}


@dataclass(frozen=True)
class Rule:
    """One named row of a lifecycle table (Netsem-style: a name, plain words, the RFC)."""

    name: str
    source: tuple[str, ...]
    label: str
    target: str | None  # None: stay in the source state
    guard: Guard = always
    effect: Effect = unchanged
    rfc: str = ""
    doc: str = ""
    choice: str | None = None
    guard_text: str = ""  # short human text of the guard, for diagrams ("" = none)

    def target_from(self, source: str) -> str:
        return source if self.target is None else self.target


@dataclass(frozen=True)
class MachineSpec:
    name: str
    states: tuple[str, ...]
    initial: str
    variables: tuple[Variable, ...]
    rules: tuple[Rule, ...]
    doc: str = ""

    @cached_property
    def alphabet(self) -> frozenset[str]:
        return frozenset(rule.label for rule in self.rules)

    @cached_property
    def _rules_by_label(self) -> Mapping[str, tuple[Rule, ...]]:
        index: dict[str, list[Rule]] = {}
        for rule in self.rules:
            index.setdefault(rule.label, []).append(rule)
        return {label: tuple(rules) for label, rules in index.items()}

    def variable(self, name: str) -> Variable:
        for variable in self.variables:
            if variable.name == name:
                return variable
        raise KeyError(f"{self.name} has no variable {name!r}")

    def state_index(self, state: str) -> int:
        return self.states.index(state)

    def rules_for(self, label: str) -> tuple[Rule, ...]:
        return self._rules_by_label.get(label, ())


@dataclass(frozen=True)
class Config:
    """The size of the finite model. Linux tops out at 8 subflows; Z3 runs with fewer."""

    max_subflows: int = 3
    subflow_limit: int = 3  # the path manager's limit (<= max_subflows)
    max_bytes: int = 4  # bound of the data-level byte counters (abstract units)
    max_address_ids: int = 3


@dataclass(frozen=True)
class Invariant:
    """A named safety property. kind "state": predicate(view); kind "step":
    predicate(pre_view, step, post_view), checked on every possible transition."""

    name: str
    rfc: str
    doc: str
    predicate: Callable[..., Value]
    kind: Literal["state", "step"] = "state"


@dataclass(frozen=True)
class Step:
    """A labelled event offered to the system: label, subflow slot, parameter values."""

    label: str
    index: int | None = None
    params: Mapping[str, Value] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Views: how guards, effects and invariants read a state (concrete or symbolic).


class MachineView:
    """One machine instance's variables as attributes, plus its control state."""

    def __init__(self, machine: MachineSpec, values: Mapping[str, Value], prefix: str) -> None:
        self._machine = machine
        self._values = values
        self._prefix = prefix

    @property
    def state(self) -> Value:
        return self._values[f"{self._prefix}.state"]

    def in_(self, *states: str) -> Value:
        """The machine is in one of `states` (works on names and on Z3 state indices)."""
        for state in states:
            if state not in self._machine.states:
                raise KeyError(f"{self._machine.name} has no state {state!r}")
        current = self.state
        if is_symbolic(current):
            from spec.logic import Or

            return Or(*(current == self._machine.state_index(state) for state in states))
        return current in states

    def __getattr__(self, name: str) -> Value:
        if name.startswith("_"):
            raise AttributeError(name)
        key = f"{self._prefix}.{name}"
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"{self._machine.name} has no variable {name!r}") from None


class SystemView:
    """The whole system state, seen from one step: `conn`, the addressed subflow `sf`,
    all subflows `subflows`, the step's parameters `p`, and `config`."""

    def __init__(
        self,
        system: SystemSpec,
        values: Mapping[str, Value],
        step: Step | None = None,
    ) -> None:
        self.system = system
        self.values = values
        self.config = system.config
        self.conn = MachineView(system.connection, values, "conn")
        self.subflows = tuple(
            MachineView(system.subflow, values, f"sf{index}")
            for index in range(system.config.max_subflows)
        )
        self.step = step
        self.index = None if step is None else step.index
        self.p = _Params(step.params if step is not None else {})

    @property
    def sf(self) -> MachineView:
        if self.index is None:
            raise AttributeError("this step addresses no subflow")
        return self.subflows[self.index]

    def others(self) -> tuple[MachineView, ...]:
        """Every subflow slot but the addressed one."""
        return tuple(view for slot, view in enumerate(self.subflows) if slot != self.index)


class _Params:
    def __init__(self, params: Mapping[str, Value]) -> None:
        self._params = params

    def __getattr__(self, name: str) -> Value:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._params[name]
        except KeyError:
            raise AttributeError(f"the step has no parameter {name!r}") from None


# ---------------------------------------------------------------------------------------
# The system and its one step semantics.


@dataclass(frozen=True)
class Candidate:
    """One way a step can happen: the rule each participating machine fires, the
    condition under which it is possible, and the new values it writes."""

    rules: tuple[tuple[str, Rule], ...]  # (machine prefix, rule)
    condition: Value
    updates: Mapping[str, Value]


@dataclass(frozen=True)
class SystemSpec:
    connection: MachineSpec
    subflow: MachineSpec
    labels: Mapping[str, Label]
    invariants: tuple[Invariant, ...]
    config: Config = Config()

    # -- the state space ---------------------------------------------------------------

    def prefixes(self) -> tuple[tuple[str, MachineSpec], ...]:
        return (("conn", self.connection),) + tuple(
            (f"sf{index}", self.subflow) for index in range(self.config.max_subflows)
        )

    def state_keys(self) -> tuple[str, ...]:
        keys: list[str] = []
        for prefix, machine in self.prefixes():
            keys.append(f"{prefix}.state")
            keys.extend(f"{prefix}.{variable.name}" for variable in machine.variables)
        return tuple(keys)

    def initial_values(self) -> dict[str, Value]:
        values: dict[str, Value] = {}
        for prefix, machine in self.prefixes():
            values[f"{prefix}.state"] = machine.initial
            for variable in machine.variables:
                values[f"{prefix}.{variable.name}"] = variable.initial
        return values

    def machine_of(self, key: str) -> MachineSpec:
        return self.connection if key.startswith("conn.") else self.subflow

    def all_rules(self) -> tuple[tuple[str, Rule], ...]:
        """(machine name, rule) for every rule of the spec."""
        return tuple((CONNECTION, rule) for rule in self.connection.rules) + tuple(
            (SUBFLOW, rule) for rule in self.subflow.rules
        )

    # -- the step semantics ----------------------------------------------------------------

    def participants(self, step: Step) -> tuple[tuple[str, MachineSpec], ...]:
        label = self.labels[step.label]
        taking_part: list[tuple[str, MachineSpec]] = []
        if step.label in self.connection.alphabet:
            taking_part.append(("conn", self.connection))
        if step.label in self.subflow.alphabet:
            if not label.addressed or step.index is None:
                raise ValueError(f"subflow label {step.label!r} needs a subflow slot")
            taking_part.append((f"sf{step.index}", self.subflow))
        if not taking_part:
            raise ValueError(f"label {step.label!r} is in no machine's alphabet")
        return tuple(taking_part)

    def step_candidates(self, values: Mapping[str, Value], step: Step) -> list[Candidate]:
        """Every way `step` can happen from `values` (concrete or symbolic).

        Concrete: conditions are bools and the caller keeps the true ones. Symbolic: the
        caller builds Or(And(condition, next == updates, frame)) over the candidates."""
        view = SystemView(self, values, step)
        symbolic = is_symbolic(*values.values())
        per_machine: list[list[tuple[str, Rule, Value, dict[str, Value]]]] = []
        for prefix, machine in self.participants(step):
            options: list[tuple[str, Rule, Value, dict[str, Value]]] = []
            current = values[f"{prefix}.state"]
            for rule in machine.rules_for(step.label):
                if symbolic:
                    in_source = MachineView(machine, values, prefix).in_(*rule.source)
                elif current not in rule.source:
                    continue
                else:
                    in_source = True
                guard = rule.guard(view)
                if not symbolic and not guard:
                    continue
                updates: dict[str, Value] = {}
                for name, value in rule.effect(view).items():
                    variable = machine.variable(name)  # KeyError: effect writes a stranger
                    updates[f"{prefix}.{name}"] = value
                    guard = And(guard, variable.in_bounds(value))
                updates[f"{prefix}.state"] = _target_value(machine, rule, current, symbolic)
                options.append((prefix, rule, And(in_source, guard), updates))
            if not options:
                return []
            per_machine.append(options)
        candidates: list[Candidate] = []
        for combination in product(*per_machine):
            condition = And(*(option[2] for option in combination))
            if not symbolic and not condition:
                continue
            updates = {}
            for option in combination:
                updates.update(option[3])
            candidates.append(
                Candidate(
                    rules=tuple((option[0], option[1]) for option in combination),
                    condition=condition,
                    updates=updates,
                )
            )
        return candidates

    def successors(self, values: Mapping[str, Value], step: Step) -> Iterator[
        tuple[Candidate, dict[str, Any]]
    ]:
        """Concrete successors of a concrete state: (candidate, next values)."""
        for candidate in self.step_candidates(values, step):
            next_values = dict(values)
            next_values.update(candidate.updates)
            yield candidate, next_values


def _target_value(machine: MachineSpec, rule: Rule, current: Value, symbolic: bool) -> Value:
    if rule.target is None:
        return current
    if rule.target not in machine.states:
        raise KeyError(f"rule {rule.name} targets unknown state {rule.target!r}")
    return machine.state_index(rule.target) if symbolic else rule.target
