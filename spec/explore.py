"""A small explicit-state explorer of the spec (breadth-first, concrete values), for tests
and quick sanity checks before the Z3 model checks: which states are reachable within a
depth, whether every invariant holds on them and on every transition, which rules ever
fire, and whether two rules of one machine are enabled together without a shared
`choice` tag (core rule 3). It steps the spec only through `SystemSpec.successors`.

Keep the configuration small (2 subflow slots, 2 data units): the state space grows fast.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from spec.core import Step, SystemSpec, SystemView

# Parameter values that behave alike are sampled, not enumerated: MP_TCPRST's reason code
# only matters as "none" (-1) or "some" (>= 0).
DEFAULT_PARAM_VALUES: Mapping[str, Sequence[Any]] = {"reason": (-1, 1)}


@dataclass
class Exploration:
    states: dict[tuple, int] = field(default_factory=dict)  # state -> depth first seen
    fired: set[str] = field(default_factory=set)  # rule names that fired
    violations: list[str] = field(default_factory=list)
    nondeterminism: set[str] = field(default_factory=set)
    truncated: bool = False


def all_steps(system: SystemSpec, param_values: Mapping[str, Sequence[Any]]) -> list[Step]:
    """Every step of the finite model (labels x slots x parameter values)."""
    steps = []
    for name, label in system.labels.items():
        domains = [
            param_values.get(p.name)
            or ((False, True) if p.sort == "bool" else tuple(range(p.lo, p.hi + 1)))
            for p in label.params
        ]
        slots = range(system.config.max_subflows) if label.addressed else [None]
        for index in slots:
            for combo in product(*domains):
                params = dict(zip([p.name for p in label.params], combo, strict=True))
                steps.append(Step(name, index, params))
    return steps


def _sources(system: SystemSpec) -> dict[tuple[str, str], set[str]]:
    """(machine name, label) -> control states where some rule of that label starts."""
    table: dict[tuple[str, str], set[str]] = {}
    for machine in (system.connection, system.subflow):
        for rule in machine.rules:
            table.setdefault((machine.name, rule.label), set()).update(rule.source)
    return table


def steps_from(system: SystemSpec, values: Mapping[str, Any], steps: list[Step],
               sources: dict[tuple[str, str], set[str]]) -> Iterator[Step]:
    """The steps worth trying in a state (cheap filter on control states)."""
    conn_state = values["conn.state"]
    for step in steps:
        if step.label in system.connection.alphabet and \
                conn_state not in sources[("connection", step.label)]:
            continue
        if step.label in system.subflow.alphabet and \
                values[f"sf{step.index}.state"] not in sources[("subflow", step.label)]:
            continue
        yield step


def explore(system: SystemSpec, depth: int, max_states: int = 200_000,
            param_values: Mapping[str, Sequence[Any]] = DEFAULT_PARAM_VALUES,
            check: bool = True) -> Exploration:
    """Breadth-first search to `depth` steps, checking invariants on the way."""
    result = Exploration()
    steps = all_steps(system, param_values)
    sources = _sources(system)
    state_invariants = [inv for inv in system.invariants if inv.kind == "state"]
    step_invariants = [inv for inv in system.invariants if inv.kind == "step"]
    initial = system.initial_values()
    frontier = [initial]
    result.states[tuple(sorted(initial.items()))] = 0
    for level in range(1, depth + 1):
        following = []
        for values in frontier:
            pre_view = SystemView(system, values)
            for step in steps_from(system, values, steps, sources):
                candidates = list(system.successors(values, step))
                _check_choice(candidates, step, values, result)
                for candidate, next_values in candidates:
                    result.fired.update(rule.name for _, rule in candidate.rules)
                    if check:
                        step_view = SystemView(system, values, step)
                        post_view = SystemView(system, next_values, step)
                        for inv in step_invariants:
                            if not inv.predicate(step_view, step, post_view):
                                result.violations.append(_report(inv.name, values, step))
                    key = tuple(sorted(next_values.items()))
                    if key in result.states:
                        continue
                    result.states[key] = level
                    if check:
                        view = SystemView(system, next_values)
                        for inv in state_invariants:
                            if not inv.predicate(view):
                                result.violations.append(_report(inv.name, next_values, step))
                    if len(result.states) >= max_states:
                        result.truncated = True
                        return result
                    following.append(next_values)
            del pre_view
        frontier = following
        if not frontier:
            break
    return result


def _check_choice(candidates: list, step: Step, values: Mapping[str, Any],
                  result: Exploration) -> None:
    """Core rule 3: rules of one machine enabled together must share a choice tag."""
    if len(candidates) < 2:
        return
    per_prefix: dict[str, set] = {}
    for candidate, _ in candidates:
        for prefix, rule in candidate.rules:
            per_prefix.setdefault(prefix, set()).add(rule)
    for rules in per_prefix.values():
        if len(rules) > 1 and (len({r.choice for r in rules}) > 1 or None in
                               {r.choice for r in rules}):
            result.nondeterminism.add(" / ".join(sorted(r.name for r in rules))
                                      + f" on {step.label}")


def _report(name: str, values: Mapping[str, Any], step: Step) -> str:
    return f"{name} after {step.label}[{step.index}]({dict(step.params)}): {dict(values)}"


def random_walks(system: SystemSpec, walks: int, depth: int, seed: int = 0,
                 param_values: Mapping[str, Sequence[Any]] = DEFAULT_PARAM_VALUES,
                 result: Exploration | None = None,
                 start: Sequence[Mapping[str, Any]] = ()) -> Exploration:
    """Coverage-guided random runs (go-explore style). Each run starts from a state seen
    before (or one given in `start`, e.g. states of known traces), prefers transitions that
    fire a rule not fired yet, and otherwise picks at random; invariants are checked all
    along. Reaches the deep rules (closing handshakes, joins) that breadth-first search
    cannot afford."""

    import random

    rng = random.Random(seed)
    result = result if result is not None else Exploration()
    steps = all_steps(system, param_values)
    sources = _sources(system)
    state_invariants = [inv for inv in system.invariants if inv.kind == "state"]
    step_invariants = [inv for inv in system.invariants if inv.kind == "step"]
    archive = [system.initial_values(), *(dict(values) for values in start)]
    promising: list[dict[str, Any]] = []  # states left with untried fresh transitions
    for _ in range(walks):
        values = promising.pop() if promising else rng.choice(archive)
        for _ in range(depth):
            move, more = _pick_move(system, values, steps, sources, result, rng)
            if move is None:
                break
            if more:
                promising.append(values)
            step, candidate, following = move
            result.fired.update(rule.name for _, rule in candidate.rules)
            pre, post = SystemView(system, values, step), SystemView(system, following, step)
            for inv in step_invariants:
                if not inv.predicate(pre, step, post):
                    result.violations.append(_report(inv.name, values, step))
            key = tuple(sorted(following.items()))
            if key not in result.states:
                result.states[key] = -1
                archive.append(following)
                view = SystemView(system, following)
                for inv in state_invariants:
                    if not inv.predicate(view):
                        result.violations.append(_report(inv.name, following, step))
            values = following
    return result


def _pick_move(system: SystemSpec, values: Mapping[str, Any], steps: list[Step],
               sources: dict[tuple[str, str], set[str]], result: Exploration,
               rng: Any) -> tuple[tuple | None, bool]:
    """A transition firing a rule not fired yet if there is one, else a random one; and
    whether other fresh transitions were left."""
    possible = list(steps_from(system, values, steps, sources))
    rng.shuffle(possible)
    fresh_steps = [step for step in possible
                   if not all(rule.name in result.fired
                              for rule in system.connection.rules_for(step.label)
                              + system.subflow.rules_for(step.label))]
    for position, step in enumerate(fresh_steps):
        for candidate, following in system.successors(values, step):
            if any(rule.name not in result.fired for _, rule in candidate.rules):
                return (step, candidate, following), position + 1 < len(fresh_steps)
    rng.shuffle(possible)
    for step in possible:
        moves = list(system.successors(values, step))
        if moves:
            candidate, following = rng.choice(moves)
            return (step, candidate, following), False
    return None, False
