"""Bounded model checking: one incremental unrolling, many targets, shortest hits first.

Every bounded question the checks ask is "can the system, from its initial state, reach a
state (or take a step) where this formula holds?": an invariant violated, a rule firing, a
control state entered, two rules enabled at once, no step possible. They all share one
unrolling of the transition relation; at each depth the disjunction of the targets not yet
hit is asked, the targets true in the model are recorded with the trace that reaches them,
and the rest are asked again, until the disjunction is unsatisfiable and the next depth is
unrolled. So every hit is a shortest one, and a target never hit is unreachable within the
depth.

Every trace read from a model is replayed through the concrete semantics
(`SystemSpec.successors`) before it is reported, so a divergence between the Z3 encoding
and the concrete step semantics is an error, never a silent wrong answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import z3

from model_checks.encoding import Encoding, StepVars
from spec.core import Step, SystemSpec

TargetKind = Literal["state", "step", "probe"]


class EncodingMismatch(AssertionError):
    """A Z3 model the concrete step semantics does not reproduce: a bug in the encoder."""


Fired = tuple[tuple[str, str], ...]  # (machine prefix, rule name) per participating machine


@dataclass
class Trace:
    """A run of the system: the steps, the rules each one fired, every state. Plain data
    (picklable), so worker processes can hand traces back."""

    steps: list[Step]
    fired: list[Fired]
    states: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.steps)

    def lines(self) -> list[str]:
        out = []
        for number, (step, fired) in enumerate(zip(self.steps, self.fired, strict=True), 1):
            params = ", ".join(f"{name}={value}" for name, value in step.params.items())
            rules = ", ".join(f"{prefix}:{rule}" for prefix, rule in fired)
            where = "" if step.index is None else f"[{step.index}]"
            out.append(f"{number:3}. {step.label}{where}({params})  fires {rules}")
        return out

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "label": step.label,
                "index": step.index,
                "params": dict(step.params),
                "rules": [f"{prefix}:{rule}" for prefix, rule in fired],
            }
            for step, fired in zip(self.steps, self.fired, strict=True)
        ]

    def extended(self, step: Step, fired: Fired, state: dict[str, Any]) -> Trace:
        return Trace([*self.steps, step], [*self.fired, fired], [*self.states, state])


@dataclass
class Target:
    """A formula the search tries to make true at some depth.

    kind "state": over the template state, asked of state k. "step": over the template
    transition (state, choice, params, next state), asked of transition k-1 -> k. "probe":
    over the template state and free template parameters (an event that could be offered in
    state k, not the one taken), asked of state k with fresh parameter variables."""

    key: Any
    kind: TargetKind
    term: z3.BoolRef


@dataclass
class Hit:
    key: Any
    depth: int
    trace: Trace
    probe: dict[tuple[str, str], Any] = field(default_factory=dict)


class Unrolling:
    """The initial state and k copies of the transition relation, in one solver."""

    def __init__(self, encoding: Encoding, solver: z3.Solver | None = None,
                 initial: bool = True) -> None:
        self.encoding = encoding
        # QF_FD is Z3's finite-domain solver: bounded integers are bit-blasted into its
        # incremental SAT core. On these models it is orders of magnitude faster than the
        # default SMT solver (depth 30 of the toy spec: ~1 s against minutes), and it needs
        # every integer bounded, which `domain` asserts for every state of the unrolling.
        self.solver = solver if solver is not None else z3.SolverFor("QF_FD")
        self.confirm = initial
        self.states = [encoding.state_vars("0")]
        self.steps: list[StepVars] = []
        self.solver.add(encoding.domain(self.states[0]))
        if initial:
            self.solver.add(encoding.initial(self.states[0]))

    @property
    def depth(self) -> int:
        return len(self.steps)

    def extend(self) -> None:
        k = self.depth
        step = self.encoding.step_vars(str(k))
        following = self.encoding.state_vars(str(k + 1))
        self.solver.add(self.encoding.transition(self.states[k], step, following))
        self.solver.add(self.encoding.domain(following))
        self.steps.append(step)
        self.states.append(following)

    def at(self, target: Target, k: int, probe: StepVars | None) -> z3.BoolRef | None:
        if target.kind == "state":
            return self.encoding.instantiate(target.term, state=self.states[k])
        if target.kind == "probe":
            return self.encoding.instantiate(target.term, state=self.states[k], step=probe)
        if k == 0:
            return None
        return self.encoding.instantiate(
            target.term, state=self.states[k - 1], next_state=self.states[k],
            step=self.steps[k - 1],
        )

    def trace(self, model: z3.ModelRef, k: int) -> Trace:
        steps, fired = [], []
        for step_vars in self.steps[:k]:
            step, choice = self.encoding.read_step(model, step_vars)
            steps.append(step)
            fired.append(rule_names(choice.rules))
        states = [self.encoding.read_state(model, state) for state in self.states[: k + 1]]
        trace = Trace(steps, fired, states)
        if self.confirm:
            confirm(self.encoding.system, trace)
        return trace


def confirm(system: SystemSpec, trace: Trace) -> None:
    """Replay a trace through the concrete semantics; it must give the same states."""
    values = dict(system.initial_values())
    if values != trace.states[0]:
        raise EncodingMismatch(f"initial state differs: {trace.states[0]} != {values}")
    for number, (step, wanted) in enumerate(zip(trace.steps, trace.fired, strict=True)):
        for candidate, next_values in system.successors(values, step):
            if rule_names(candidate.rules) == wanted:
                values = next_values
                break
        else:
            raise EncodingMismatch(
                f"step {number + 1} {step} cannot fire {wanted} concretely from {values}"
            )
        if values != trace.states[number + 1]:
            raise EncodingMismatch(
                f"step {number + 1} {step}: concrete {values} != Z3 {trace.states[number + 1]}"
            )


def rule_names(rules) -> Fired:
    return tuple((prefix, rule.name) for prefix, rule in rules)


@dataclass
class SearchResult:
    hits: dict[Any, Hit]
    depth: int  # the depth up to which every unhit target is known unreachable
    seconds: float
    complete: bool  # False when a deadline cut the search short


def search(
    encoding: Encoding,
    targets: Iterable[Target],
    depth: int,
    *,
    deadline: float | None = None,
    on_depth: Callable[[int, int], None] | None = None,
    stop_when_done: bool = True,
    constraints: Callable[[Unrolling, int], Iterable[z3.BoolRef]] | None = None,
    strengthen: Callable[[Unrolling, int], Iterable[z3.BoolRef]] | None = None,
    from_state: Mapping[str, Any] | None = None,
) -> SearchResult:
    """Find, for every target, the shortest run that makes it true (up to `depth` steps).

    `constraints(unrolling, k)` may add per-query side conditions on state k (used by the
    "CLOSED stays reachable" check to exclude states already shown to close).
    `strengthen(unrolling, k)` gives facts known to hold on every reachable state k (proved
    invariants); they are asserted for good, which prunes the search without changing
    what is reachable."""
    start = time.monotonic()
    remaining: dict[Any, Target] = {target.key: target for target in targets}
    hits: dict[Any, Hit] = {}
    unrolling = Unrolling(encoding, initial=from_state is None)
    solver = unrolling.solver
    if from_state is not None:
        # From a concrete state instead of the initial one; traces are then not
        # confirmed from the initial state (the caller does, with the prefix).
        unrolling.confirm = False
        solver.add(*(unrolling.states[0][key] == encoding.encode_value(key, value)
                     for key, value in from_state.items()))
    reached = -1
    for k in range(depth + 1):
        if deadline is not None and time.monotonic() > deadline:
            return SearchResult(hits, reached, time.monotonic() - start, False)
        if k > 0:
            unrolling.extend()
        if strengthen is not None:
            solver.add(*strengthen(unrolling, k))
        probe = encoding.step_vars(f"probe{k}")
        probe_bounds = encoding._param_bounds(probe.params)
        terms = {}
        for key, target in remaining.items():
            term = unrolling.at(target, k, probe)
            if term is not None and not z3.is_false(z3.simplify(term)):
                terms[key] = term
        while terms:
            solver.push()
            solver.add(*probe_bounds)
            if constraints is not None:
                solver.add(*constraints(unrolling, k))
            solver.add(z3.Or(*terms.values()))
            if deadline is not None:
                # One depth can take long; the deadline holds inside it too.
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0:
                    solver.pop()
                    return SearchResult(hits, reached, time.monotonic() - start, False)
                solver.set("timeout", left_ms)
            answer = solver.check()
            if answer != z3.sat:
                solver.pop()
                if answer == z3.unknown:
                    if deadline is not None and time.monotonic() >= deadline - 0.05:
                        return SearchResult(hits, reached, time.monotonic() - start, False)
                    raise RuntimeError(f"Z3 gave up at depth {k}: {solver.reason_unknown()}")
                break
            model = solver.model()
            found = [key for key, term in terms.items()
                     if z3.is_true(model.eval(term, model_completion=True))]
            trace = unrolling.trace(model, k)
            probe_values = {
                name: _value(model.eval(var, model_completion=True))
                for name, var in probe.params.items()
            }
            solver.pop()
            for key in found:
                hits[key] = Hit(key, k, trace, probe_values)
                del terms[key]
                del remaining[key]
        reached = k
        if on_depth is not None:
            on_depth(k, len(remaining))
        if stop_when_done and not remaining:
            break
    return SearchResult(hits, depth if not remaining else reached, time.monotonic() - start,
                        True)


def _value(raw: z3.ExprRef) -> Any:
    if z3.is_bool(raw):
        return z3.is_true(raw)
    return raw.as_long()


def state_targets(encoding: Encoding, predicates: Mapping[Any, Callable]) -> list[Target]:
    """Targets "predicate(view) holds" for state predicates."""
    return [
        Target(key, "state", encoding.state_formula(predicate, encoding.template))
        for key, predicate in predicates.items()
    ]
