"""Every model check can fail, shown on the toy spec of tests/model_check_toy.py: a
violated state invariant and step invariant (with shortest counterexamples), a
nondeterministic pair (and the same pair tagged as a deliberate choice), a deadlock, a
state that cannot close, dead rules, and the Hypothesis exploration finding and shrinking
a bug. The healthy toy passes all of them."""

from __future__ import annotations

import json
import random

import pytest
import z3

from model_checks.bmc import confirm
from model_checks.checks import CheckOptions
from model_checks.encoding import Encoding, StepVars
from model_checks.explore import explore
from model_checks.pipeline import run_checks
from model_checks.results import BOUNDED, PROVED, VIOLATED
from model_checks.traces import accepts, load_steps
from tests import model_check_toy as toy


def _check(system, tmp_path, **options):
    settings = CheckOptions(depth=12, bmc_seconds=20, bmc2_seconds=10, spacer_seconds=10,
                            witness_dir=tmp_path / "witnesses",
                            counterexample_dir=tmp_path / "counterexamples",
                            certificates=tmp_path / "certificates.json")
    for name, value in options.items():
        setattr(settings, name, value)
    report = run_checks(system, settings, workers=1, cc=False, hypothesis_examples=0)
    return report, {row.name: row for row in report.properties}


def test_healthy_toy_passes_everything(tmp_path):
    report, rows = _check(toy.TOY, tmp_path)
    for name in ("subflow_count_matches", "closed_counts_zero", "initial_subflow_first",
                 "no_data_after_fin", "determinism", "no_deadlock", "every_state_reachable",
                 "rule_coverage"):
        assert rows[name].result == PROVED, rows[name]
    assert rows["closed_reachable_within_12"].result == PROVED
    assert report.exit_code() == 0
    assert not report.coverage.dead
    # every witness is a trace file that replays, and fires its rule last
    for witness in report.coverage.witnesses:
        steps = load_steps(tmp_path / "witnesses" / f"{witness.machine}__{witness.rule}.jsonl")
        assert accepts(toy.TOY, steps) == (True, None)
        assert len(steps) == witness.depth
        assert any(rule == witness.rule for _, rule in witness.trace.fired[-1])


def test_violated_state_invariant_has_the_shortest_counterexample(tmp_path):
    buggy = toy.buggy_reset_keeps_count()
    report, rows = _check(buggy, tmp_path)
    row = rows["subflow_count_matches"]
    assert row.result == VIOLATED
    assert [step.label for step in row.counterexample.steps] == ["open", "reset"]
    assert report.exit_code() == 1
    # the counterexample is a real run of the buggy spec, refused by the healthy one
    assert accepts(buggy, row.counterexample.steps) == (True, None)
    written = load_steps(tmp_path / "counterexamples" / "subflow_count_matches.jsonl")
    assert [step.label for step in written] == ["open", "reset"]


def test_violated_step_invariant(tmp_path):
    _, rows = _check(toy.buggy_send_after_fin(), tmp_path)
    row = rows["no_data_after_fin"]
    assert row.result == VIOLATED
    assert [step.label for step in row.counterexample.steps] == ["open", "close", "send"]
    assert accepts(toy.TOY, row.counterexample.steps)[0] is False


def test_nondeterminism_is_found_unless_tagged(tmp_path):
    _, rows = _check(toy.nondeterministic_toy(), tmp_path)
    row = rows["determinism"]
    assert row.result == VIOLATED
    assert any("conn_close and conn_close_abort" in note for note in row.notes)
    _, rows = _check(toy.deliberately_nondeterministic_toy(), tmp_path)
    assert rows["determinism"].result == PROVED


def test_deadlock_and_unclosable_state_are_found(tmp_path):
    _, rows = _check(toy.deadlocking_toy(), tmp_path)
    deadlock = rows["no_deadlock"]
    assert deadlock.result == VIOLATED
    assert [step.label for step in deadlock.counterexample.steps] == ["open", "close"]
    closable = rows["closed_reachable_within_12"]
    assert closable.result == VIOLATED
    assert closable.counterexample is not None


def test_dead_rules_are_reported(tmp_path):
    report, rows = _check(toy.dead_rule_toy(), tmp_path)
    dead = {f"{w.machine}:{w.rule}" for w in report.coverage.dead}
    assert dead == {"connection:conn_overflow", "subflow:sf_never"}
    assert rows["rule_coverage"].result == VIOLATED
    assert all(w.explanation.startswith("dead (proved)") for w in report.coverage.dead)
    assert set(json.loads(json.dumps(report.as_json()))["coverage"]["dead"]) == dead


def test_json_report_shape(tmp_path):
    report, _ = _check(toy.TOY, tmp_path)
    data = report.as_json()
    assert {"name", "method", "result", "depth", "seconds"} <= set(data["properties"][0])
    assert {"rules", "witnessed", "dead"} <= set(data["coverage"])


def test_hypothesis_exploration_shrinks_and_saves_the_failing_trace(tmp_path):
    path = tmp_path / "hypothesis.jsonl"
    row = explore(toy.buggy_reset_keeps_count(), examples=30, steps=20, failure_path=path)
    assert row.result == VIOLATED
    labels = [step.label for step in load_steps(path)]
    # Shrinking ends at a short trace that opens, then resets (the planted bug); how far
    # it gets in 30 examples depends on Hypothesis' search, so ask for short, not minimal.
    assert labels[0] == "open" and labels[-1] == "reset", labels
    assert len(labels) <= 5, labels
    assert explore(toy.TOY, examples=20, steps=20).result == BOUNDED


@pytest.mark.parametrize("system", [toy.TOY, toy.buggy_send_after_fin()])
def test_z3_successors_are_the_concrete_successors(system):
    """The encoding and the concrete step semantics agree, state by state: for sampled
    reachable states and every event, Z3's possible next states are exactly the concrete
    ones."""
    from model_checks.explore import enabled_steps
    from model_checks.sampling import label_sources, sample_states

    encoding = Encoding(system)
    rng = random.Random(1)
    states = sample_states(system, walks=20, length=10, seed=3)
    sources = label_sources(system)
    for values in rng.sample(states, min(10, len(states))):
        before = {key: encoding.encode_value(key, value) for key, value in values.items()}
        concrete = set()
        for step in enabled_steps(system, values, sources):
            for _, after in system.successors(values, step):
                concrete.add(tuple(sorted(after.items())))
        solver = z3.SolverFor("QF_FD")
        following = encoding.state_vars("next")
        step_vars: StepVars = encoding.step_vars("s")
        solver.add(encoding.transition(before, step_vars, following),
                   encoding.domain(following))
        symbolic = set()
        while solver.check() == z3.sat:
            model = solver.model()
            after = encoding.read_state(model, following)
            symbolic.add(tuple(sorted(after.items())))
            solver.add(z3.Or(*(following[key] != encoding.encode_value(key, value)
                               for key, value in after.items())))
        assert symbolic == concrete


def test_confirm_rejects_a_trace_the_semantics_does_not_take():
    from model_checks.bmc import EncodingMismatch, Trace
    from spec.core import Step

    initial = dict(toy.TOY.initial_values())
    bogus = Trace([Step("reset", 0, {})], [(("conn", "conn_sf_reset"), ("sf0", "sf_reset"))],
                  [initial, initial])
    with pytest.raises(EncodingMismatch):
        confirm(toy.TOY, bogus)


def test_runner_prints_the_table_writes_json_and_fails_on_a_violation(tmp_path, monkeypatch):
    from io import StringIO

    from rich.console import Console

    import spec.system
    from model_checks.runner import run_check_command

    monkeypatch.chdir(tmp_path)
    for system, expected in ((toy.TOY, 0), (toy.buggy_reset_keeps_count(), 1)):
        monkeypatch.setattr(spec.system, "SYSTEM", system)
        out = StringIO()
        code = run_check_command(12, tmp_path / "report.json", mutants=expected == 0,
                                 console=Console(file=out, width=160),
                                 bmc_seconds=10, bmc2_seconds=5, spacer_seconds=5)
        assert code == expected
        text = out.getvalue()
        assert "property" in text and "subflow_count_matches" in text
        data = json.loads((tmp_path / "report.json").read_text())
        assert {p["name"] for p in data["properties"]} >= {"subflow_count_matches",
                                                           "determinism", "no_deadlock"}
        if expected:
            assert "subflow_count_matches violated after 2 steps" in text
            assert "open[0]" in text
        else:
            assert data["mutants"]["survivors"] == []
            assert (tmp_path / "out" / "witnesses").is_dir()


def test_proof_certificates_are_rechecked_not_trusted(tmp_path):
    from model_checks.checks import recheck_certificates

    system = toy.buggy_reset_keeps_count()
    encoding = Encoding(system)
    wanted = [inv for inv in system.invariants if inv.name == "subflow_count_matches"]
    bogus = {
        "claims_the_bug_away": "(= conn.subflows 0)",  # not inductive: open breaks it
        "not_even_initial": "(= conn.state 1)",
        "unknown_variable": "(= nonsense 1)",
    }
    proved, kept = recheck_certificates(encoding, bogus, [], wanted)
    assert proved == [] and kept == {}
    # and a run with such a file still finds the violation
    (tmp_path / "certificates.json").write_text(json.dumps({"lemmas": bogus}))
    _, rows = _check(system, tmp_path)
    assert rows["subflow_count_matches"].result == VIOLATED
