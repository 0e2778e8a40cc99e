"""The spec tables are well formed: names, RFC references, alphabets, option coverage, and
every guard, effect and invariant evaluates on Z3 terms (DESIGN.md principle 2)."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import z3

from spec.core import Step, SystemView
from spec.labels import LABEL_OPTIONS, OPTION_SUBTYPES
from spec.system import SYSTEM

RULES = SYSTEM.all_rules()
RFC_FORMAT = re.compile(r"^(\d+(\.\d+)*|App\. D|RFC \d+( \d+(\.\d+)*)?)$")


def test_rule_names_are_unique_snake_case_and_prefixed_by_machine():
    names = [rule.name for _, rule in RULES]
    assert [n for n, c in Counter(names).items() if c > 1] == []
    for machine, rule in RULES:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", rule.name), rule.name
        assert rule.name.startswith("conn_" if machine == "connection" else "sf_"), rule.name


@pytest.mark.parametrize("machine,rule", RULES, ids=[rule.name for _, rule in RULES])
def test_rule_has_rfc_doc_and_known_states(machine, rule):
    spec = SYSTEM.connection if machine == "connection" else SYSTEM.subflow
    assert RFC_FORMAT.match(rule.rfc), f"{rule.name}: rfc {rule.rfc!r}"
    assert rule.doc and rule.doc.endswith("."), rule.name
    assert rule.source and set(rule.source) <= set(spec.states), rule.name
    assert rule.target is None or rule.target in spec.states, rule.name
    assert rule.label in SYSTEM.labels, rule.name


def test_every_label_is_used_and_only_addressed_labels_reach_subflows():
    used = SYSTEM.connection.alphabet | SYSTEM.subflow.alphabet
    assert used == set(SYSTEM.labels)
    for name, label in SYSTEM.labels.items():
        assert label.origin in {"app", "peer", "endpoint", "timer", "path"}, name
        if name in SYSTEM.subflow.alphabet:
            assert label.addressed, name
        assert name.split("_")[0] in {"app", "send", "recv", "timeout", "path"}, name


def test_every_option_subtype_appears_in_some_rule():
    carried = {option for _, rule in RULES for option in LABEL_OPTIONS.get(rule.label, ())}
    assert carried == set(OPTION_SUBTYPES)
    for option in OPTION_SUBTYPES:  # in both directions
        for side in ("send", "recv"):
            assert any(rule.label.startswith(side) and option in LABEL_OPTIONS.get(rule.label, ())
                       for _, rule in RULES), (option, side)


def test_deliberate_choices_come_in_groups():
    tags = Counter(rule.choice for _, rule in RULES if rule.choice)
    assert tags and all(count >= 2 for count in tags.values()), tags


def test_invariants_are_named_with_rfc_sections():
    names = [inv.name for inv in SYSTEM.invariants]
    assert len(names) == len(set(names)) >= 10
    for inv in SYSTEM.invariants:
        assert RFC_FORMAT.match(inv.rfc) and inv.doc and inv.kind in ("state", "step")


def _symbolic_state():
    values = {}
    for key in SYSTEM.state_keys():
        machine = SYSTEM.machine_of(key)
        name = key.split(".", 1)[1]
        if name == "state" or machine.variable(name).sort == "int":
            values[key] = z3.Int(key)
        else:
            values[key] = z3.Bool(key)
    return values


def _symbolic_params(label):
    return {p.name: (z3.Int(f"p.{p.name}") if p.sort == "int" else z3.Bool(f"p.{p.name}"))
            for p in label.params}


def test_every_guard_and_effect_builds_z3_terms():
    """step_candidates on Z3 terms: no guard or effect may use Python's and/or/if."""
    values = _symbolic_state()
    for name, label in SYSTEM.labels.items():
        slots = range(SYSTEM.config.max_subflows) if label.addressed else [None]
        for index in slots:
            step = Step(name, index, _symbolic_params(label))
            for candidate in SYSTEM.step_candidates(values, step):
                assert isinstance(candidate.condition, z3.BoolRef | bool), name
                for value in candidate.updates.values():
                    assert isinstance(value, z3.ExprRef | bool | int), (name, value)


def test_every_invariant_builds_z3_terms():
    values = _symbolic_state()
    post = {key: z3.FreshConst(value.sort(), key) for key, value in values.items()}
    for inv in SYSTEM.invariants:
        if inv.kind == "state":
            assert isinstance(inv.predicate(SystemView(SYSTEM, values)), z3.BoolRef), inv.name
            continue
        for name, label in SYSTEM.labels.items():
            step = Step(name, 0 if label.addressed else None, _symbolic_params(label))
            result = inv.predicate(SystemView(SYSTEM, values, step), step,
                                   SystemView(SYSTEM, post, step))
            assert result is True or isinstance(result, z3.BoolRef), (inv.name, name)
