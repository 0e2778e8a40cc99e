"""The whole check of a spec, in order, on two worker processes where it pays.

    encode -> k-induction
      round 1: [worker 1] BMC: coverage witnesses, states entered, open invariants
               [worker 2] Spacer on the open invariants (each proof a new lemma)
               [main]     LIA proofs, Hypothesis exploration
      round 2 (every lemma assumed): what the lemmas imply (deadlock, determinism),
               [worker 1] "CLOSED stays reachable" by covering
               [worker 2] BMC on what is still open (pairs of rules, invariants)
      -> report rows -> (optionally) mutants

Workers are forked, so they inherit the spec (its guards are closures, which do not
pickle) and send back plain records only. `workers=1` runs everything in this process
(the tests do, and a debugger likes it).
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from model_checks import cc_proofs
from model_checks.checks import (
    Answers,
    CheckOptions,
    bmc_phase,
    closable_phase,
    coverage_result,
    formula_from_text,
    invariant_rows,
    lemma_rows,
    lemmas_of,
    load_certificates,
    prove_by_induction,
    recheck_certificates,
    relative_checks,
    save_certificates,
    spacer_phase,
    structural_rows,
    write_witnesses,
)
from model_checks.encoding import Encoding
from model_checks.explore import explore
from model_checks.invariants import k_induction
from model_checks.lemmas import applicable_lemmas
from model_checks.results import (
    BOUNDED,
    PROVED,
    UNKNOWN,
    VIOLATED,
    PropertyResult,
    Report,
    relative,
)
from spec.core import SystemSpec

Progress = Callable[[str, str], None]  # (part, message)


class _Job:
    """A function run in a forked child (or inline), its result fetched later."""

    def __init__(self, name: str, function: Callable[..., Any], progress: Progress | None,
                 parallel: bool) -> None:
        self.name = name
        self.result: Any = None
        self.error: str | None = None
        self.started = time.monotonic()
        self.seconds = 0.0
        if not parallel:
            try:
                self.result = function(lambda message: progress(name, message)
                                       if progress else None)
            except Exception:  # noqa: BLE001 - reported as the job's error
                self.error = traceback.format_exc()
            self.seconds = time.monotonic() - self.started
            self.process = None
            return
        context = multiprocessing.get_context("fork")
        self.queue = context.Queue()
        self.process = context.Process(target=_child, args=(self.queue, function), daemon=True)
        self.process.start()
        self._progress = progress

    def poll(self) -> bool:
        """Drain messages; True once the result is in."""
        if self.process is None:
            return True
        while not self.queue.empty():
            kind, payload = self.queue.get()
            if kind == "progress":
                if self._progress:
                    self._progress(self.name, payload)
            elif kind == "result":
                self.result = payload
                self.seconds = time.monotonic() - self.started
                self.process.join()
                self.process = None
                return True
            else:
                self.error = payload
                self.seconds = time.monotonic() - self.started
                self.process.join()
                self.process = None
                return True
        if not self.process.is_alive() and self.queue.empty():
            self.error = f"worker {self.name} died (exit code {self.process.exitcode})"
            self.process = None
            return True
        return False


def _child(queue, function) -> None:
    try:
        queue.put(("result", function(lambda message: queue.put(("progress", message)))))
    except Exception:  # noqa: BLE001 - sent to the parent
        queue.put(("error", traceback.format_exc()))


def _wait(jobs: list[_Job], while_waiting: Callable[[], None] | None = None) -> None:
    if while_waiting is not None:
        while_waiting()
    while not all(job.poll() for job in jobs):
        time.sleep(0.05)
    for job in jobs:
        if job.error:
            raise RuntimeError(f"{job.name} failed:\n{job.error}")


def run_checks(
    system: SystemSpec,
    options: CheckOptions | None = None,
    *,
    mutants: bool = False,
    workers: int = 2,
    progress: Progress | None = None,
    cc: bool = True,
    hypothesis_examples: int = 20,
    mutant_seconds: float = 30.0,
) -> Report:
    options = options or CheckOptions()
    report = Report(config={**asdict(system.config), "depth": options.depth,
                            "close_bound": options.close_bound})
    parallel = workers > 1

    def tell(part: str, message: str) -> None:
        if progress:
            progress(part, message)

    began = time.monotonic()
    tell("encode", "building the Z3 encoding from the tables")
    encoding = Encoding(system)
    report.timings["encode"] = time.monotonic() - began
    report.config["choices"] = len(encoding.choices)
    report.config["state_variables"] = len(encoding.keys)

    started = time.monotonic()
    tell("induction", "k-induction over the invariants")
    strengthening = applicable_lemmas(system)
    induction = prove_by_induction(encoding, options.induction_k, strengthening)
    proved = [inv for inv in system.invariants if inv.name in induction.proved]
    open_invariants = [inv for inv in system.invariants if inv.name not in induction.proved]
    # Proved lemmas are facts like the proved invariants; unproved ones are dropped.
    proved_lemmas = [lemma for lemma in strengthening if lemma.name in induction.proved]
    first_lemmas = lemmas_of(encoding, [*proved, *proved_lemmas])
    report.timings["induction"] = time.monotonic() - started

    # Round 1: coverage BMC then Spacer, next to Spacer; the two take the invariants in
    # the same order from one shared list (an invariant another worker is on is skipped),
    # and share answers and lemmas, so later proofs build on earlier ones.
    manager = multiprocessing.Manager() if parallel else None
    shared: Any = manager.dict() if manager is not None else {}
    # Spacer's lemmas from an earlier run on this very encoding, re-checked from scratch.
    certified: set[str] = set()
    cached = load_certificates(options.certificates)
    if cached:
        tell("induction", "re-checking cached proof certificates")
        by_certificate, kept = recheck_certificates(encoding, cached,
                                                    [*proved, *proved_lemmas], open_invariants)
        for invariant in by_certificate:
            certified.add(invariant.name)
            shared[f"answer:{invariant.name}"] = "proved"
        for name, text in kept.items():
            shared[f"lemma:{name}"] = text
    spacer_deadline = time.monotonic() + options.spacer_seconds

    def spacer_from(reverse: bool, say) -> Any:
        return spacer_phase(encoding, [*proved, *proved_lemmas], open_invariants,
                            spacer_ms=options.spacer_ms,
                            seconds=max(0.0, spacer_deadline - time.monotonic()),
                            first_ms=options.spacer_first_ms, progress=say, shared=shared,
                            reverse=reverse)

    def first_bmc(say):
        coverage = bmc_phase(encoding, first_lemmas, coverage=True, invariants=(), pairs=(),
                             deadlock=False, terminal=options.terminal, depth=options.depth,
                             seconds=options.bmc_seconds, progress=say)
        if parallel:
            spacer_from(False, say)
        return coverage

    def spacer(say):
        return spacer_from(False, say)

    side_rows: list[PropertyResult] = []

    def meanwhile() -> None:
        if cc:
            started = time.monotonic()
            tell("cc", "LIA proofs over the reals")
            side_rows.extend(_cc_rows())
            report.timings["cc_proofs"] = time.monotonic() - started
        if hypothesis_examples:
            started = time.monotonic()
            tell("hypothesis", f"exploring {hypothesis_examples} runs")
            failure = (options.counterexample_dir / "hypothesis.jsonl"
                       if options.counterexample_dir else None)
            side_rows.append(explore(system, examples=hypothesis_examples, steps=40,
                                     failure_path=failure))
            report.timings["hypothesis"] = time.monotonic() - started

    jobs = [_Job("bmc", first_bmc, progress, parallel),
            _Job("spacer", spacer, progress, parallel)]
    _wait(jobs, meanwhile)
    first = jobs[0].result
    spacer_answers = _shared_answers(dict(shared), jobs[1].result)
    if manager is not None:
        manager.shutdown()
    save_certificates(options.certificates,
                      {key.partition(":")[2]: text for key, text in _lemma_items(spacer_answers)})
    report.timings["coverage+spacer"] = jobs[0].seconds
    report.timings["spacer"] = jobs[1].seconds

    # Round 2: everything proved so far is a lemma.
    started = time.monotonic()
    relative_k: set[str] = set()
    proved += [inv for inv in open_invariants if spacer_answers.answers.get(inv.name) == PROVED]
    still_open = [inv for inv in open_invariants if inv not in proved]
    lemma_terms = [formula_from_text(encoding, text) for _, text in _lemma_items(spacer_answers)]
    lemmas = lemmas_of(encoding, [*proved, *proved_lemmas], lemma_terms)
    if still_open:
        # What Spacer left may be inductive now that everything else is a lemma.
        tell("relative", "k-induction of the rest, relative to every lemma")
        again = k_induction(encoding, still_open, max_k=options.induction_k, facts=lemmas)
        for invariant in list(still_open):
            k = again.proved.get(invariant.name)
            if k is not None:
                induction.proved[invariant.name] = k
                relative_k.add(invariant.name)
                still_open.remove(invariant)
                proved.append(invariant)
        if again.proved:
            lemmas = lemmas_of(encoding, [*proved, *proved_lemmas], lemma_terms)
    tell("relative", "deadlock and determinism from the proved invariants")
    relative_answers = relative_checks(encoding, lemmas, options.terminal)
    report.timings["relative"] = time.monotonic() - started

    def closable(say):
        return closable_phase(encoding, lemmas, options.terminal, options.close_bound,
                              options.depth, progress=say)

    def second_bmc(say):
        return bmc_phase(encoding, lemmas, coverage=False, invariants=still_open,
                         pairs=relative_answers.open_pairs,
                         deadlock=not relative_answers.deadlock_free,
                         terminal=options.terminal, depth=options.depth,
                         seconds=options.bmc2_seconds, progress=say)

    jobs = [_Job("closable", closable, progress, parallel)]
    if still_open or relative_answers.open_pairs or not relative_answers.deadlock_free:
        jobs.append(_Job("bmc2", second_bmc, progress, parallel))
    _wait(jobs)
    report.timings["closable"] = jobs[0].seconds
    second = jobs[1].result if len(jobs) > 1 else None
    if second is not None:
        report.timings["bmc2"] = jobs[1].seconds

    answers = Answers(induction, spacer_answers, relative_answers, first, second,
                      jobs[0].result, options.induction_k, relative_k, certified)
    rows = invariant_rows(system, answers)
    rows += lemma_rows(strengthening, induction)
    rows += structural_rows(encoding, answers, options)
    coverage = coverage_result(encoding, first)
    explain_dead_rules(encoding, lemmas, coverage)
    if options.witness_dir is not None:
        write_witnesses(coverage, options.witness_dir)
    report.coverage = coverage
    rows.append(_coverage_row(coverage))
    rows += side_rows
    if options.counterexample_dir is not None:
        _write_counterexamples(rows, options.counterexample_dir)
    report.properties = rows

    if mutants:
        from model_checks.mutants import run_mutants

        started = time.monotonic()
        witnesses = {(w.machine, w.rule): w.trace for w in coverage.witnesses
                     if w.trace is not None}
        report.mutants = run_mutants(
            system, encoding, witnesses, lemmas, depth=options.depth,
            seconds=mutant_seconds, workers=workers,
            progress=lambda message: tell("mutants", message), proved_lemmas=proved_lemmas)
        report.timings["mutants"] = time.monotonic() - started
    report.timings["total"] = time.monotonic() - began
    return report


def _shared_answers(shared: dict[str, Any], own):
    """The Spacer answers of both workers, from their shared dict (lemmas keyed by the
    invariant they came with, "lemma:<name>")."""
    from model_checks.checks import SpacerAnswers

    answers = dict(own.answers)
    lemmas = []
    for key, value in sorted(shared.items()):
        kind, _, name = key.partition(":")
        if kind == "answer":
            answers[name] = value
        elif kind == "lemma" and value:
            lemmas.append(f"{name}\n{value}")
    return SpacerAnswers(answers, lemmas, own.seconds)


def _lemma_items(answers) -> list[tuple[str, str]]:
    return [(f"lemma:{item.partition(chr(10))[0]}", item.partition(chr(10))[2])
            for item in answers.lemmas]


def explain_dead_rules(encoding: Encoding, lemmas, coverage) -> None:
    """A rule BMC found no witness for is proved dead when no state the lemmas allow
    enables it."""
    import z3

    for witness in coverage.dead:
        firing = encoding.choices_firing(witness.machine, witness.rule)
        solver = z3.SolverFor("QF_FD")
        solver.add(encoding.domain(encoding.template), *lemmas.state,
                   *encoding._param_bounds(encoding.template_params))
        solver.add(z3.Or(*(choice.condition for choice in firing)) if firing
                   else z3.BoolVal(False))
        if solver.check() == z3.unsat:
            witness.explanation = ("dead (proved): no state satisfying the proved invariants "
                                   "enables it" if firing else
                                   "dead (proved): no label/slot combination can fire it")
        else:
            witness.explanation = f"no witness within {coverage.depth} steps (not proved dead)"


def _cc_rows() -> list[PropertyResult]:
    rows = []
    for result in cc_proofs.prove_all():
        row = PropertyResult(result.name, "congestion control", result.method,
                             result.result if result.result != "unknown" else UNKNOWN,
                             None, result.seconds, notes=["premises: " + "; ".join(
                                 result.premises)])
        if result.counterexample:
            row.notes.append(f"counterexample: {result.counterexample}")
        rows.append(row)
    return rows


def _coverage_row(coverage) -> PropertyResult:
    dead = coverage.dead
    longest = max((w.depth or 0 for w in coverage.witnesses), default=0)
    witnessed = len(coverage.witnesses) - len(dead)
    notes = [f"{witnessed}/{len(coverage.witnesses)} rules witnessed, longest witness "
             f"{longest} steps"]
    if dead:
        notes += [f"{w.machine}:{w.rule}: {w.explanation}" for w in dead]
        proved_dead = any(w.explanation.startswith("dead (proved)") for w in dead)
        return PropertyResult("rule_coverage", "coverage", "BMC (shortest witnesses)",
                              VIOLATED if proved_dead else BOUNDED, coverage.depth,
                              coverage.seconds, notes=notes)
    return PropertyResult("rule_coverage", "coverage", "BMC (shortest witnesses)", PROVED,
                          longest, coverage.seconds, notes=notes)


def _write_counterexamples(rows: list[PropertyResult], folder: Path) -> None:
    from model_checks.traces import write_trace

    for row in rows:
        if row.result == VIOLATED and row.counterexample is not None and not row.trace_file:
            path = folder / f"{row.name.replace(':', '_').replace(' ', '_')}.jsonl"
            write_trace(row.counterexample, path, violated=row.name)
            row.trace_file = relative(path)


__all__ = ["CheckOptions", "run_checks", "BOUNDED", "PROVED", "VIOLATED"]
