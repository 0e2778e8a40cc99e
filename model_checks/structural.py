"""Structural checks of the tables: determinism, deadlock freedom, CLOSED stays reachable,
every control state reachable, and (with `coverage`) every rule fired.

What counts as terminal: a connection in one of `terminal_states` (CLOSED by default) may
only idle. Its subflow slots are left as they are: once the connection is CLOSED nothing
above them exists, so a stuck subflow there is not a deadlock. Every other reachable state
must have some enabled step (for some parameter values), and from every reachable state a
terminal state must be reachable within `close_bound` steps.

Determinism: two candidates of the same event (label, slot, parameter values) that make
one machine fire different rules, both enabled in a reachable state, are a finding unless
both rules carry the same non-None `choice` tag (RFC 8684 leaves that choice open).

All but the CLOSED check are targets of the one shared BMC search (`bmc.search`), so their
witnesses are shortest traces. "CLOSED stays reachable" is a forall-exists property; it is
checked by counterexample-guided covering: find a reachable state not yet known to close,
find (by BMC from that concrete state) the shortest way to CLOSED, and cover every state
from which that same sequence of events closes (its weakest precondition, a formula), until
no reachable state within the depth is uncovered or one cannot close within the bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import z3

from model_checks.bmc import Target, Trace, Unrolling
from model_checks.encoding import Choice, Encoding

DEFAULT_TERMINAL_STATES = ("CLOSED",)


def terminal_states(encoding: Encoding, names: Sequence[str] | None = None) -> tuple[str, ...]:
    wanted = tuple(names) if names is not None else DEFAULT_TERMINAL_STATES
    return tuple(name for name in wanted if name in encoding.system.connection.states)


def terminal_template(encoding: Encoding, terminal: Sequence[str]) -> z3.BoolRef:
    machine = encoding.system.connection
    state = encoding.template["conn.state"]
    return z3.Or(*(state == machine.state_index(name) for name in terminal)) if terminal \
        else z3.BoolVal(False)


def determinism_targets(encoding: Encoding) -> list[Target]:
    """("nondeterminism", machine, rule_a, rule_b): both enabled for the same event."""
    by_event: dict[tuple[str, int | None], list[Choice]] = {}
    for choice in encoding.choices:
        by_event.setdefault((choice.label, choice.slot), []).append(choice)
    pairs: dict[tuple[str, str, str, str], list[z3.BoolRef]] = {}
    for choices in by_event.values():
        for i, first in enumerate(choices):
            for second in choices[i + 1:]:
                for (prefix, rule_a), (_, rule_b) in zip(first.rules, second.rules, strict=True):
                    if rule_a.name == rule_b.name:
                        continue
                    if rule_a.choice is not None and rule_a.choice == rule_b.choice:
                        continue  # a choice the spec marks as deliberate
                    machine = "connection" if prefix == "conn" else "subflow"
                    names = sorted((rule_a.name, rule_b.name))
                    key = ("nondeterminism", machine, names[0], names[1])
                    pairs.setdefault(key, []).append(z3.And(first.condition, second.condition))
    return [Target(key, "probe", z3.Or(*terms)) for key, terms in pairs.items()]


def deadlock_target(encoding: Encoding, terminal: Sequence[str]) -> Target:
    return Target(("deadlock",), "state", z3.And(z3.Not(terminal_template(encoding, terminal)),
                                                  z3.Not(encoding.enabled_template())))


def state_reachability_targets(encoding: Encoding) -> list[Target]:
    """("state", machine, name): the connection, or any subflow slot, is in that state."""
    system = encoding.system
    targets = []
    for name in system.connection.states:
        index = system.connection.state_index(name)
        targets.append(Target(("state", "connection", name), "state",
                              encoding.template["conn.state"] == index))
    slots = range(system.config.max_subflows)
    for name in system.subflow.states:
        index = system.subflow.state_index(name)
        targets.append(Target(("state", "subflow", name), "state",
                              z3.Or(*(encoding.template[f"sf{slot}.state"] == index
                                      for slot in slots))))
    return targets


def coverage_targets(encoding: Encoding) -> list[Target]:
    """("rule", machine, name): the last step fires that rule (in any slot)."""
    targets = []
    for machine, rule in encoding.system.all_rules():
        firing = encoding.choices_firing(machine, rule.name)
        term = z3.Or(*(encoding.template_choice == choice.index for choice in firing)) \
            if firing else z3.BoolVal(False)
        targets.append(Target(("rule", machine, rule.name), "step", term))
    return targets


# ---------------------------------------------------------------------------------------
# CLOSED stays reachable


@dataclass
class ClosableResult:
    result: str  # "bounded" | "violated"
    depth: int  # reachable states examined up to this depth
    bound: int  # CLOSED must be reachable within this many steps
    seconds: float
    regions: int  # how many event sequences cover the reachable states
    longest: int  # the longest shortest way to CLOSED met
    counterexample: Trace | None = None  # the way to a state that cannot close
    stuck_state: dict[str, Any] | None = None
    complete: bool = True


def _path_to_terminal(
    encoding: Encoding, values: Mapping[str, Any], terminal: z3.BoolRef, bound: int,
) -> list[tuple[Choice, dict[tuple[str, str], Any]]] | None:
    """The shortest run from a concrete state to a terminal state, within `bound` steps."""
    unrolling = Unrolling(encoding, initial=False)
    solver = unrolling.solver
    solver.add(*(unrolling.states[0][key] == encoding.encode_value(key, value)
                 for key, value in values.items()))
    for k in range(bound + 1):
        if k > 0:
            unrolling.extend()
        solver.push()
        solver.add(encoding.instantiate(terminal, state=unrolling.states[k]))
        if solver.check() == z3.sat:
            model = solver.model()
            path = []
            for step_vars in unrolling.steps:
                step, choice = encoding.read_step(model, step_vars)
                params = {(choice.label, name): value for name, value in step.params.items()}
                path.append((choice, params))
            solver.pop()
            return path
        solver.pop()
    return None


def _weakest_precondition(
    encoding: Encoding, path: Iterable[tuple[Choice, dict[tuple[str, str], Any]]],
    terminal: z3.BoolRef,
) -> z3.BoolRef:
    """The states (template) from which this exact sequence of events reaches terminal."""
    current: dict[str, z3.ExprRef] = dict(encoding.template)
    conditions: list[z3.BoolRef] = []
    for choice, params in path:
        pairs = [(encoding.template[key], current[key]) for key in encoding.keys]
        for (label, name), value in params.items():
            variable = encoding.template_params[(label, name)]
            pairs.append((variable, z3.BoolVal(value) if z3.is_bool(variable)
                          else z3.IntVal(value)))
        conditions.append(z3.substitute(choice.condition, *pairs))
        following = dict(current)
        for key, update in choice.updates.items():
            value = update if isinstance(update, z3.ExprRef) else (
                z3.BoolVal(update) if z3.is_bool(current[key]) else z3.IntVal(update))
            following[key] = z3.substitute(value, *pairs)
        current = following
    pairs = [(encoding.template[key], current[key]) for key in encoding.keys]
    conditions.append(z3.substitute(terminal, *pairs))
    return z3.simplify(z3.And(*conditions))


def check_closable(
    encoding: Encoding,
    depth: int,
    bound: int,
    terminal: Sequence[str],
    deadline: float | None = None,
) -> ClosableResult:
    start = time.monotonic()
    terminal_term = terminal_template(encoding, terminal)
    covered: list[z3.BoolRef] = [terminal_term]
    unrolling = Unrolling(encoding)
    solver = unrolling.solver
    longest = 0
    for k in range(depth + 1):
        if k > 0:
            unrolling.extend()
        while True:
            if deadline is not None and time.monotonic() > deadline:
                return ClosableResult("bounded", k - 1, bound, time.monotonic() - start,
                                      len(covered) - 1, longest, complete=False)
            solver.push()
            state = unrolling.states[k]
            solver.add(*(z3.Not(encoding.instantiate(region, state=state)) for region in covered))
            answer = solver.check()
            if answer != z3.sat:
                solver.pop()
                break
            model = solver.model()
            trace = unrolling.trace(model, k)
            solver.pop()
            values = trace.states[-1]
            path = _path_to_terminal(encoding, values, terminal_term, bound)
            if path is None:
                return ClosableResult("violated", k, bound, time.monotonic() - start,
                                      len(covered) - 1, longest, counterexample=trace,
                                      stuck_state=values)
            longest = max(longest, len(path))
            covered.append(_weakest_precondition(encoding, path, terminal_term))
    return ClosableResult("bounded", depth, bound, time.monotonic() - start, len(covered) - 1,
                          longest)
