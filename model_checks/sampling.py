"""Random runs of the concrete semantics: cheap samples of reachable states.

Used to guess candidate lemmas (`houdini`) and by the Hypothesis exploration to draw
enabled events. A walk offers events whose labels have a rule starting in the current
control states (a cheap filter), with random parameter values, and takes the first one
`SystemSpec.successors` accepts, choosing among its candidates at random.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

from spec.core import Label, Step, SystemSpec


def label_sources(system: SystemSpec) -> dict[tuple[str, str], frozenset[str]]:
    """(machine name, label) -> control states where some rule of that label starts."""
    table: dict[tuple[str, str], set[str]] = {}
    for machine in (system.connection, system.subflow):
        for rule in machine.rules:
            table.setdefault((machine.name, rule.label), set()).update(rule.source)
    return {key: frozenset(states) for key, states in table.items()}


def plausible_events(
    system: SystemSpec, values: Mapping[str, Any],
    sources: Mapping[tuple[str, str], frozenset[str]],
) -> list[tuple[str, int | None]]:
    """(label, slot) pairs every participating machine has a rule for in its current state."""
    out: list[tuple[str, int | None]] = []
    conn_state = values["conn.state"]
    for name, label in system.labels.items():
        in_conn = name in system.connection.alphabet
        in_subflow = name in system.subflow.alphabet
        if not (in_conn or in_subflow):
            continue
        if in_conn and conn_state not in sources[("connection", name)]:
            continue
        slots = range(system.config.max_subflows) if label.addressed else (None,)
        for slot in slots:
            if in_subflow and values[f"sf{slot}.state"] not in sources[("subflow", name)]:
                continue
            out.append((name, slot))
    return out


def random_params(label: Label, rng: random.Random) -> dict[str, Any]:
    return {
        param.name: rng.choice((False, True)) if param.sort == "bool"
        else rng.randint(param.lo, param.hi)
        for param in label.params
    }


def random_step(system: SystemSpec, values: Mapping[str, Any], rng: random.Random,
                sources, tries: int = 4):
    """(step, candidate, next values) for a random enabled event, or None."""
    events = plausible_events(system, values, sources)
    rng.shuffle(events)
    for label_name, slot in events:
        label = system.labels[label_name]
        for _ in range(tries if label.params else 1):
            step = Step(label_name, slot, random_params(label, rng))
            successors = list(system.successors(values, step))
            if successors:
                candidate, following = rng.choice(successors)
                return step, candidate, following
    return None


def random_walks(system: SystemSpec, walks: int, length: int, seed: int = 0,
                 ) -> Iterator[list[dict[str, Any]]]:
    """`walks` runs of up to `length` steps from the initial state (their states)."""
    rng = random.Random(seed)
    sources = label_sources(system)
    for _ in range(walks):
        values = dict(system.initial_values())
        states = [values]
        for _ in range(length):
            taken = random_step(system, values, rng, sources)
            if taken is None:
                break
            values = taken[2]
            states.append(values)
        yield states


def sample_states(system: SystemSpec, walks: int = 300, length: int = 40, seed: int = 0,
                  ) -> list[dict[str, Any]]:
    """Distinct states met on random walks."""
    seen: dict[tuple, dict[str, Any]] = {}
    for states in random_walks(system, walks, length, seed):
        for state in states:
            seen.setdefault(tuple(sorted(state.items())), state)
    return list(seen.values())
