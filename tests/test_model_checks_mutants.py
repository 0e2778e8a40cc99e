"""Seeded mutants: at least 20, each from a copy of the tables, each caught by some check
(coverage replay, a trace the two tables disagree on, an invariant) or proved equivalent;
the spec itself is never changed."""

from __future__ import annotations

from model_checks.bmc import search
from model_checks.checks import lemmas_of, prove_by_induction
from model_checks.encoding import Encoding
from model_checks.lemmas import strengthening_lemmas
from model_checks.mutants import generate, run_mutants
from model_checks.structural import coverage_targets
from model_checks.traces import accepts
from spec.system import SYSTEM
from tests import model_check_toy as toy


def _witnesses(system, encoding, depth=30):
    found = search(encoding, coverage_targets(encoding), depth)
    return {(key[1], key[2]): hit.trace for key, hit in found.hits.items()}


def test_toy_mutants_are_all_caught():
    encoding = Encoding(toy.TOY)
    witnesses = _witnesses(toy.TOY, encoding)
    induction = prove_by_induction(encoding, 2)
    lemmas = lemmas_of(encoding, [i for i in toy.TOY.invariants if i.name in induction.proved])
    results = run_mutants(toy.TOY, encoding, witnesses, lemmas, depth=12, seconds=20)
    assert len(results) >= 10
    by_status = {}
    for result in results:
        by_status.setdefault(result.status, []).append(result)
    assert not by_status.get("survived"), by_status.get("survived")
    # the guard of conn_send (no data after FIN) is implied in ESTABLISHED: equivalent
    assert [m.name for m in by_status.get("equivalent", [])] == ["drop_guard:conn_send"]
    kinds = {result.killed_by.split(" ")[0] for result in by_status["killed"]}
    assert {"coverage", "divergence"} <= kinds
    # a divergence kill carries a trace exactly one of the two tables accepts
    for result in by_status["killed"]:
        if result.killed_by.startswith("divergence"):
            mutated = next(m for m in generate(toy.TOY, encoding, set(witnesses))
                           if m.name == result.name).build(toy.TOY)
            assert accepts(toy.TOY, result.trace.steps)[0] != \
                accepts(mutated, result.trace.steps)[0]


def test_the_real_spec_gets_at_least_twenty_mutants_and_a_sample_is_caught():
    encoding = Encoding(SYSTEM)
    witnesses = _witnesses(SYSTEM, encoding)
    mutants = generate(SYSTEM, encoding, set(witnesses))
    assert len(mutants) >= 20
    assert {m.operator for m in mutants} >= {"drop a guard", "change a target",
                                             "delete a rule", "weaken an effect",
                                             "swap two events"}
    # the spec is untouched by building them
    before = SYSTEM.connection.rules
    sample = [next(m for m in mutants if m.operator == operator)
              for operator in ("drop a guard", "delete a rule", "swap two events")]
    strengthening = strengthening_lemmas(SYSTEM.config)
    induction = prove_by_induction(encoding, 1, strengthening)
    lemmas = lemmas_of(encoding, [i for i in (*SYSTEM.invariants, *strengthening)
                                  if i.name in induction.proved])
    results = run_mutants(SYSTEM, encoding, witnesses, lemmas, depth=10, seconds=20,
                          mutants=sample, proved_lemmas=strengthening)
    assert SYSTEM.connection.rules is before
    for result in results:
        assert result.status in ("killed", "equivalent"), result
