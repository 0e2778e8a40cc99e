"""Strengthening lemmas (model_checks/lemmas.py): proved, never assumed.

With them every named invariant of the real spec is 1-inductive; without them some are
not (which is why they exist); a false lemma is dropped by the Houdini loop instead of
being trusted; and a mutant that only changes which states are reached is caught by a
lemma the spec proved.
"""

from __future__ import annotations

from dataclasses import replace

from model_checks.checks import lemmas_of, prove_by_induction
from model_checks.encoding import Encoding
from model_checks.lemmas import applicable_lemmas, strengthening_lemmas
from model_checks.mutants import Mutant, _map_rule, run_mutants
from spec.core import Invariant, always
from spec.logic import Not
from spec.system import SYSTEM
from tests import model_check_toy as toy

ENCODING = Encoding(SYSTEM)
NAMES = {invariant.name for invariant in SYSTEM.invariants}


def test_with_the_lemmas_every_invariant_is_1_inductive():
    lemmas = strengthening_lemmas(SYSTEM.config)
    assert len(lemmas) >= 10
    induction = prove_by_induction(ENCODING, 1, lemmas)
    assert NAMES <= set(induction.proved), NAMES - set(induction.proved)
    assert {lemma.name for lemma in lemmas} <= set(induction.proved)
    assert set(induction.proved.values()) == {1}


def test_without_the_lemmas_some_invariants_are_not_inductive():
    induction = prove_by_induction(ENCODING, 1)
    not_inductive = NAMES - set(induction.proved)
    assert {"data_acked_within_sent", "closed_only_after_close"} <= not_inductive


def test_a_false_lemma_is_dropped_not_assumed():
    # False: a DATA_FIN is sent in every run that closes gracefully.
    false_lemma = Invariant("lemma_never_sends_data_fin", "3.3.3", "planted, false",
                            lambda view: Not(view.conn.fin_sent))
    # It holds initially, so only the step check can drop it.
    induction = prove_by_induction(ENCODING, 1, (*strengthening_lemmas(), false_lemma))
    assert "lemma_never_sends_data_fin" not in induction.proved
    assert NAMES <= set(induction.proved)


def test_a_lemma_false_initially_is_dropped():
    opened = Invariant("lemma_always_opened", "App. D", "planted, false initially",
                       lambda view: view.conn.opened)
    induction = prove_by_induction(ENCODING, 1, (opened,))
    assert "lemma_always_opened" not in induction.proved


def test_lemmas_that_read_missing_variables_do_not_apply_to_other_specs():
    assert applicable_lemmas(toy.TOY) == ()
    assert len(applicable_lemmas(SYSTEM)) == len(strengthening_lemmas(SYSTEM.config))


def test_a_mutant_reaching_a_state_the_spec_never_reaches_is_killed_by_a_lemma():
    """Without its guard, CLOSING moves to TIME_WAIT on any DATA_ACK: the traces stay
    alike for many steps, but the mutant sits in TIME_WAIT with its DATA_FIN unacked."""
    lemmas = strengthening_lemmas(SYSTEM.config)
    induction = prove_by_induction(ENCODING, 1, lemmas)
    facts = lemmas_of(ENCODING, [*SYSTEM.invariants, *lemmas])
    assert NAMES <= set(induction.proved)
    from model_checks.bmc import search
    from model_checks.structural import coverage_targets

    found = search(ENCODING, coverage_targets(ENCODING), 10)
    witnesses = {(key[1], key[2]): hit.trace for key, hit in found.hits.items()}
    rule = next(r for r in SYSTEM.connection.rules if r.name == "conn_data_fin_acked_closing")
    mutant = Mutant("drop_guard:conn_data_fin_acked_closing", "drop a guard",
                    "CLOSING moves to TIME_WAIT on any DATA_ACK", "connection",
                    _map_rule("connection", rule.name, lambda r: replace(r, guard=always)),
                    frozenset({rule.label}), frozenset({rule.name}))
    [with_lemmas] = run_mutants(SYSTEM, ENCODING, witnesses, facts, depth=12, seconds=20,
                                mutants=[mutant], proved_lemmas=lemmas)
    assert with_lemmas.status == "killed", with_lemmas
    assert with_lemmas.killed_by.startswith("invariant ")
    # the run it reports really is one the mutant takes and the spec cannot end in
    assert with_lemmas.trace is not None and len(with_lemmas.trace.steps) >= 5
