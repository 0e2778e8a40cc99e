"""The Z3 encoding of a `SystemSpec`, generated from its one step semantics.

Nothing here knows a rule by name: the transition relation is built by calling
`SystemSpec.step_candidates` once on symbolic *template* variables for every label and
subflow slot, and each unrolled step is a substitution of that template (DESIGN.md
principle 1: the tables are never written a second time).

One step of the encoding is functional: a `choice` integer names which candidate fires
(label, slot, the rules each participating machine fires), the label's parameters are free
bounded variables, and every next-state variable is an if-then-else over the candidates
that write it. So `choice` and the parameters read from a model give back the `Step`s of a
trace, and the concrete semantics can replay and confirm it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import z3

from spec.core import Candidate, Label, MachineSpec, Rule, Step, SystemSpec, SystemView, Variable

# "Some step is enabled" quantifies the label's parameters existentially; under a negation
# (deadlock) that is a universal, which the finite-domain solver cannot take, so the
# parameter values are enumerated. Beyond this many combinations z3.Exists is used instead
# (correct, but only the slower default solver accepts it).
MAX_ENUMERATED_PARAMS = 4096


@dataclass(frozen=True)
class Choice:
    """One candidate of one (label, slot): what fires when `choice == index`."""

    index: int
    label: str
    slot: int | None
    rules: tuple[tuple[str, Rule], ...]  # (machine prefix, rule), as in spec.core.Candidate
    condition: z3.BoolRef  # over the template state and the label's template parameters
    updates: Mapping[str, z3.ExprRef]

    def fires(self, machine: str, rule_name: str) -> bool:
        return any(
            rule.name == rule_name and _machine_of_prefix(prefix) == machine
            for prefix, rule in self.rules
        )

    def describe(self) -> str:
        where = "" if self.slot is None else f"[{self.slot}]"
        fired = ", ".join(f"{prefix}:{rule.name}" for prefix, rule in self.rules)
        return f"{self.label}{where} ({fired})"


def _machine_of_prefix(prefix: str) -> str:
    return "connection" if prefix == "conn" else "subflow"


@dataclass
class StepVars:
    """The variables of one unrolled transition: its choice and its parameters."""

    choice: z3.ArithRef
    params: dict[tuple[str, str], z3.ExprRef]  # (label, param) -> variable


@dataclass
class Encoding:
    """Template variables, the candidates, and the transition template of a system."""

    system: SystemSpec
    keys: tuple[str, ...] = field(init=False)
    template: dict[str, z3.ExprRef] = field(init=False)
    template_next: dict[str, z3.ExprRef] = field(init=False)
    template_params: dict[tuple[str, str], z3.ExprRef] = field(init=False)
    template_choice: z3.ArithRef = field(init=False)
    choices: list[Choice] = field(init=False)

    def __post_init__(self) -> None:
        system = self.system
        self.keys = system.state_keys()
        self.template = {key: self._const(key, key) for key in self.keys}
        self.template_next = {key: self._const(key, f"{key}'") for key in self.keys}
        self.template_params = {}
        for label in system.labels.values():
            for param in label.params:
                self.template_params[(label.name, param.name)] = _param_const(
                    param, f"param:{label.name}.{param.name}"
                )
        self.template_choice = z3.Int("choice")
        self.choices = []
        for label_name, slot in self.steps():
            step = self.template_step(label_name, slot)
            for candidate in system.step_candidates(self.template, step):
                choice = self._choice(len(self.choices), label_name, slot, candidate)
                # A candidate whose condition is false for every state (a slot a guard
                # rules out) can never fire; leaving it out keeps the relation small.
                if not z3.is_false(choice.condition):
                    self.choices.append(choice)
        self._transition = self._build_transition()
        self._domain = self._build_domain(self.template)

    # -- variables ----------------------------------------------------------------------

    def _const(self, key: str, name: str) -> z3.ExprRef:
        prefix, variable_name = key.split(".", 1)
        machine = self.system.machine_of(key)
        if variable_name == "state":
            return z3.Int(name)
        variable = machine.variable(variable_name)
        return z3.Bool(name) if variable.sort == "bool" else z3.Int(name)

    def variable_of(self, key: str) -> Variable | None:
        """The Variable behind a key, or None for a control state."""
        _, variable_name = key.split(".", 1)
        if variable_name == "state":
            return None
        return self.system.machine_of(key).variable(variable_name)

    def steps(self) -> list[tuple[str, int | None]]:
        """Every (label, slot) an event can be: addressed labels once per subflow slot."""
        out: list[tuple[str, int | None]] = []
        for name, label in self.system.labels.items():
            if not self._in_some_alphabet(name):
                continue
            if label.addressed:
                out.extend((name, slot) for slot in range(self.system.config.max_subflows))
            else:
                out.append((name, None))
        return out

    def _in_some_alphabet(self, label: str) -> bool:
        return label in self.system.connection.alphabet or label in self.system.subflow.alphabet

    def template_step(self, label: str, slot: int | None) -> Step:
        params = {
            param.name: self.template_params[(label, param.name)]
            for param in self.system.labels[label].params
        }
        return Step(label, slot, params)

    def _choice(self, index: int, label: str, slot: int | None, candidate: Candidate) -> Choice:
        condition = z3.simplify(_as_bool(candidate.condition))
        return Choice(index, label, slot, candidate.rules, condition, dict(candidate.updates))

    def state_vars(self, name: str) -> dict[str, z3.ExprRef]:
        """A fresh copy of the state variables, suffixed with `name`."""
        return {key: self._const(key, f"{key}@{name}") for key in self.keys}

    def step_vars(self, name: str) -> StepVars:
        params = {
            (label, param_name): _param_const(self._label_param(label, param_name),
                                              f"param:{label}.{param_name}@{name}")
            for (label, param_name) in self.template_params
        }
        return StepVars(z3.Int(f"choice@{name}"), params)

    def _label_param(self, label: str, name: str) -> Variable:
        for param in self.system.labels[label].params:
            if param.name == name:
                return param
        raise KeyError((label, name))

    # -- formulas over the template --------------------------------------------------------

    def _build_transition(self) -> z3.BoolRef:
        """T(s, choice, params, s'): the functional transition relation."""
        conjuncts: list[z3.BoolRef] = [
            self.template_choice >= 0,
            self.template_choice < len(self.choices),
        ]
        for choice in self.choices:
            conjuncts.append(z3.Implies(self.template_choice == choice.index, choice.condition))
        for key in self.keys:
            value: z3.ExprRef = self.template[key]
            for choice in reversed(self.choices):
                update = choice.updates.get(key)
                if update is None:
                    continue
                update = _as_sort(update, value)
                if z3.eq(update, self.template[key]):
                    continue
                value = z3.If(self.template_choice == choice.index, update, value)
            conjuncts.append(self.template_next[key] == value)
        conjuncts.extend(self._param_bounds(self.template_params))
        return z3.And(*conjuncts)

    def _param_bounds(self, params: Mapping[tuple[str, str], z3.ExprRef]) -> list[z3.BoolRef]:
        bounds = []
        for (label, name), var in params.items():
            variable = self._label_param(label, name)
            if variable.sort == "int":
                bounds.append(z3.And(var >= variable.lo, var <= variable.hi))
        return bounds

    def _build_domain(self, state: Mapping[str, z3.ExprRef]) -> z3.BoolRef:
        """Every variable within its declared range (for induction, which starts anywhere)."""
        conjuncts: list[z3.BoolRef] = []
        for key in self.keys:
            variable = self.variable_of(key)
            if variable is None:
                machine = self.system.machine_of(key)
                conjuncts.append(z3.And(state[key] >= 0, state[key] < len(machine.states)))
            elif variable.sort == "int":
                conjuncts.append(z3.And(state[key] >= variable.lo, state[key] <= variable.hi))
        return z3.And(*conjuncts)

    # -- instantiation ------------------------------------------------------------------------

    def _pairs(
        self,
        state: Mapping[str, z3.ExprRef] | None = None,
        next_state: Mapping[str, z3.ExprRef] | None = None,
        step: StepVars | None = None,
    ) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
        pairs: list[tuple[z3.ExprRef, z3.ExprRef]] = []
        if state is not None:
            pairs.extend((self.template[key], state[key]) for key in self.keys)
        if next_state is not None:
            pairs.extend((self.template_next[key], next_state[key]) for key in self.keys)
        if step is not None:
            pairs.append((self.template_choice, step.choice))
            pairs.extend((self.template_params[name], step.params[name]) for name in step.params)
        return pairs

    def instantiate(self, term: z3.ExprRef, state=None, next_state=None, step=None) -> z3.ExprRef:
        pairs = self._pairs(state, next_state, step)
        return z3.substitute(term, *pairs) if pairs else term

    def transition(self, state, step: StepVars, next_state) -> z3.BoolRef:
        return self.instantiate(self._transition, state, next_state, step)

    def domain(self, state) -> z3.BoolRef:
        return self.instantiate(self._domain, state)

    def initial(self, state: Mapping[str, z3.ExprRef]) -> z3.BoolRef:
        return z3.And(*(state[key] == self.encode_value(key, value)
                        for key, value in self.system.initial_values().items()))

    def encode_value(self, key: str, value: Any) -> z3.ExprRef:
        if key.endswith(".state"):
            return z3.IntVal(self.system.machine_of(key).state_index(value))
        variable = self.variable_of(key)
        assert variable is not None
        return z3.BoolVal(bool(value)) if variable.sort == "bool" else z3.IntVal(int(value))

    def state_formula(self, predicate, state) -> z3.BoolRef:
        """A state predicate (view -> Value) over `state`."""
        return _as_bool(predicate(SystemView(self.system, state)))

    def step_invariant_template(self, predicate) -> z3.BoolRef:
        """A step invariant predicate(pre, step, post) over (template, choice, template_next):
        it must hold for whichever candidate fires."""
        conjuncts: list[z3.BoolRef] = []
        for choice in self.choices:
            step = self.template_step(choice.label, choice.slot)
            pre_view = SystemView(self.system, self.template, step)
            post_view = SystemView(self.system, self.template_next, step)
            holds = z3.simplify(_as_bool(predicate(pre_view, step, post_view)))
            if z3.is_true(holds):
                continue
            conjuncts.append(z3.Implies(self.template_choice == choice.index, holds))
        return z3.And(*conjuncts) if conjuncts else z3.BoolVal(True)

    def enabled_template(self) -> z3.BoolRef:
        """Some step is possible from the template state, for some parameter values."""
        disjuncts: list[z3.BoolRef] = []
        for choice in self.choices:
            disjuncts.append(self.exists_params(choice))
        return z3.Or(*disjuncts) if disjuncts else z3.BoolVal(False)

    def exists_params(self, choice: Choice) -> z3.BoolRef:
        """The choice is possible for some value of its label's parameters."""
        params = self.system.labels[choice.label].params
        if not params:
            return choice.condition
        domains = [_domain_values(param) for param in params]
        size = 1
        for domain in domains:
            size *= len(domain) if domain is not None else MAX_ENUMERATED_PARAMS + 1
        variables = [self.template_params[(choice.label, param.name)] for param in params]
        if size > MAX_ENUMERATED_PARAMS:
            bounds = self._param_bounds(
                {(choice.label, param.name): self.template_params[(choice.label, param.name)]
                 for param in params}
            )
            return z3.Exists(variables, z3.And(*bounds, choice.condition))
        options = []
        for combination in itertools.product(*domains):
            options.append(z3.substitute(choice.condition, *zip(variables, combination,
                                                                   strict=True)))
        return z3.simplify(z3.Or(*options))

    def influencing_keys(self, extra: Sequence[z3.ExprRef] = ()) -> set[str]:
        """The state variables that can matter to what happens next: those some guard (or
        one of the `extra` formulas, e.g. invariants) reads, closed under "an effect
        computes a variable that matters from this one". A variable outside this cone of
        influence can never change which events are enabled."""
        by_name = {str(var): key for key, var in self.template.items()}
        wanted = set()
        for term in [choice.condition for choice in self.choices] + list(extra):
            wanted |= {by_name[name] for name in _constant_names(term) if name in by_name}
        changed = True
        while changed:
            changed = False
            for choice in self.choices:
                for key, value in choice.updates.items():
                    if key in wanted and isinstance(value, z3.ExprRef):
                        for name in _constant_names(value):
                            source = by_name.get(name)
                            if source is not None and source not in wanted:
                                wanted.add(source)
                                changed = True
        return wanted

    def choices_firing(self, machine: str, rule_name: str) -> list[Choice]:
        return [choice for choice in self.choices if choice.fires(machine, rule_name)]

    # -- models back to traces -----------------------------------------------------------

    def read_state(self, model: z3.ModelRef, state: Mapping[str, z3.ExprRef]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key in self.keys:
            raw = model.eval(state[key], model_completion=True)
            if key.endswith(".state"):
                machine: MachineSpec = self.system.machine_of(key)
                values[key] = machine.states[raw.as_long()]
            elif z3.is_bool(raw):
                values[key] = z3.is_true(raw)
            else:
                values[key] = raw.as_long()
        return values

    def read_step(self, model: z3.ModelRef, step: StepVars) -> tuple[Step, Choice]:
        choice = self.choices[model.eval(step.choice, model_completion=True).as_long()]
        params: dict[str, Any] = {}
        for param in self.system.labels[choice.label].params:
            raw = model.eval(step.params[(choice.label, param.name)], model_completion=True)
            params[param.name] = z3.is_true(raw) if param.sort == "bool" else raw.as_long()
        return Step(choice.label, choice.slot, params), choice

    def labels(self) -> Mapping[str, Label]:
        return self.system.labels


def _constant_names(term: z3.ExprRef) -> set[str]:
    """Names of the uninterpreted constants in a term (its free variables)."""
    names: set[str] = set()
    seen: set[int] = set()
    stack = [term]
    while stack:
        node = stack.pop()
        if node.get_id() in seen:
            continue
        seen.add(node.get_id())
        if z3.is_const(node) and node.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            names.add(node.decl().name())
        stack.extend(node.children())
    return names


def _param_const(param: Variable, name: str) -> z3.ExprRef:
    return z3.Bool(name) if param.sort == "bool" else z3.Int(name)


def _domain_values(param: Variable) -> Sequence[z3.ExprRef] | None:
    if param.sort == "bool":
        return [z3.BoolVal(False), z3.BoolVal(True)]
    if param.hi - param.lo + 1 > MAX_ENUMERATED_PARAMS:
        return None
    return [z3.IntVal(value) for value in range(param.lo, param.hi + 1)]


def _as_bool(value: Any) -> z3.BoolRef:
    if isinstance(value, z3.ExprRef):
        return value
    return z3.BoolVal(bool(value))


def _as_sort(value: Any, like: z3.ExprRef) -> z3.ExprRef:
    if isinstance(value, z3.ExprRef):
        return value
    if z3.is_bool(like):
        return z3.BoolVal(bool(value))
    return z3.IntVal(int(value))


def as_bool(value: Any) -> z3.BoolRef:
    """A guard, predicate or invariant result as a Z3 Boolean (constants included)."""
    return _as_bool(value)
