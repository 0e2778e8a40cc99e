"""Which variable values can still matter: a backward live-variable analysis over the
tables (as a compiler does over a control-flow graph).

A variable of a machine instance is *live* in a control state when some rule may read it
before any rule overwrites it, starting from that state. Reads are what a guard or an
effect mentions (found by evaluating it on the Z3 template); a read from outside the
machine's own rules (the other machine, another slot, an invariant) makes the variable
live everywhere. Mutation testing uses this: two next states that differ only in dead
variables can never be told apart by any trace.
"""

from __future__ import annotations

from collections.abc import Sequence

import z3

from model_checks.encoding import Encoding, _constant_names
from spec.core import SystemView


def live_states(encoding: Encoding, extra: Sequence[z3.ExprRef] = ()) -> dict[str, set[str]]:
    """key (e.g. "sf1.local_id") -> control states of its machine where it is live."""
    system = encoding.system
    by_name = {str(var): key for key, var in encoding.template.items()}
    everywhere: set[str] = set()
    for term in extra:
        everywhere |= {by_name[n] for n in _constant_names(term) if n in by_name}
    # reads[(prefix, rule name)] = keys read; writes likewise; and who reads from outside
    reads: dict[tuple[str, str], set[str]] = {}
    writes: dict[tuple[str, str], set[str]] = {}
    for choice in encoding.choices:
        step = encoding.template_step(choice.label, choice.slot)
        view = SystemView(system, encoding.template, step)
        for prefix, rule in choice.rules:
            if (prefix, rule.name) in reads:
                continue
            terms = [rule.guard(view)]
            effect = rule.effect(view)
            terms += list(effect.values())
            names = set()
            for term in terms:
                if isinstance(term, z3.ExprRef):
                    names |= _constant_names(term)
            keys = {by_name[n] for n in names if n in by_name}
            reads[(prefix, rule.name)] = keys
            writes[(prefix, rule.name)] = {f"{prefix}.{name}" for name in effect}
            for key in keys:
                if not key.startswith(prefix + ".") and not key.endswith(".state"):
                    everywhere.add(key)
    result: dict[str, set[str]] = {}
    for prefix, machine in system.prefixes():
        for variable in machine.variables:
            key = f"{prefix}.{variable.name}"
            if key in everywhere:
                result[key] = set(machine.states)
                continue
            live: set[str] = set()
            changed = True
            while changed:
                changed = False
                for rule in machine.rules:
                    if (prefix, rule.name) not in reads:
                        continue  # never fires in this slot (no candidate for it)
                    rule_reads = reads[(prefix, rule.name)]
                    rule_writes = writes.get((prefix, rule.name), set())
                    for source in rule.source:
                        if source in live:
                            continue
                        target = rule.target_from(source)
                        if key in rule_reads or (key not in rule_writes and target in live):
                            live.add(source)
                            changed = True
            result[key] = live
    return result


def live_in(encoding: Encoding, key: str, state: dict[str, z3.ExprRef],
            live: dict[str, set[str]]) -> z3.BoolRef:
    """The variable `key` is live in the (symbolic) state."""
    if key.endswith(".state"):
        return z3.BoolVal(True)
    prefix = key.split(".", 1)[0]
    machine = dict(encoding.system.prefixes())[prefix]
    states = live.get(key, set(machine.states))
    if len(states) == len(machine.states):
        return z3.BoolVal(True)
    control = state[f"{prefix}.state"]
    return z3.Or(*(control == machine.state_index(name) for name in sorted(states))) \
        if states else z3.BoolVal(False)
