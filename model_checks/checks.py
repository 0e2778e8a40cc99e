"""The model checks of one `SystemSpec`, phase by phase, and how their answers combine.

1. `prove_by_induction`: k-induction over the named invariants (Houdini-style, k <= 2).
   What it proves is assumed by every later query (it holds in every reachable state).
2. `relative_checks`: structural properties that the proved invariants already imply,
   each one query with no unrolling: no deadlock, each pair of overlapping rules never
   enabled together.
3. `bmc_phase` (a worker): one incremental BMC over the system, assuming the proved
   invariants on every state, with every open question as a target: each rule fired
   (coverage witnesses, shortest first), each control state entered, each unproved
   invariant violated, each unproved pair of rules enabled together, a deadlock.
4. `proof_phase` (the other worker): Spacer for what induction left, then "CLOSED stays
   reachable" by covering (see `structural`), relative to everything proved.

`combine` turns the answers into report rows: a property is `violated` if BMC hit it
(with the shortest counterexample), else `proved` if some proof went through, else
`bounded(d)` with the depth BMC finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import z3

from model_checks.bmc import Hit, Target, Unrolling, search
from model_checks.encoding import Encoding, StepVars
from model_checks.invariants import (
    holds_template,
    invariant_violation_targets,
    k_induction,
    spacer_prove,
)
from model_checks.results import (
    BOUNDED,
    PROVED,
    UNKNOWN,
    VIOLATED,
    CoverageResult,
    PropertyResult,
    Witness,
    relative,
)
from model_checks.structural import (
    check_closable,
    coverage_targets,
    deadlock_target,
    determinism_targets,
    state_reachability_targets,
    terminal_template,
)
from spec.core import Invariant, SystemSpec

Progress = Callable[[str], None]


@dataclass
class CheckOptions:
    depth: int = 30  # BMC bound
    close_bound: int = 12  # CLOSED must be reachable within this many steps
    bmc_seconds: float = 40.0  # coverage BMC stops when all is covered, or after this
    bmc2_seconds: float = 15.0  # round 2 BMC (what the proofs left open)
    spacer_ms: int = 25_000  # per Spacer query (tried again only with new lemmas)
    spacer_first_ms: int = 25_000  # per Spacer query on the first pass
    spacer_seconds: float = 60.0  # for all Spacer queries together (both workers)
    induction_k: int = 2
    terminal: tuple[str, ...] = ("CLOSED",)
    witness_dir: Path | None = Path("out/witnesses")
    certificates: Path | None = Path("out/proof-certificates.json")
    counterexample_dir: Path | None = Path("out/counterexamples")


@dataclass
class Lemmas:
    """Facts proved to hold in every reachable state (or on every transition)."""

    state: list[z3.BoolRef] = field(default_factory=list)
    step: list[z3.BoolRef] = field(default_factory=list)

    def assume_on(self, encoding: Encoding, unrolling: Unrolling, k: int) -> list[z3.BoolRef]:
        facts = [encoding.instantiate(term, state=unrolling.states[k]) for term in self.state]
        if k > 0:
            facts += [encoding.instantiate(term, state=unrolling.states[k - 1],
                                           next_state=unrolling.states[k],
                                           step=unrolling.steps[k - 1]) for term in self.step]
        return facts


def lemmas_of(encoding: Encoding, invariants: Sequence[Invariant],
              extra: Sequence[z3.BoolRef] = ()) -> Lemmas:
    lemmas = Lemmas(state=list(extra))
    for invariant in invariants:
        term = holds_template(encoding, invariant)
        (lemmas.state if invariant.kind == "state" else lemmas.step).append(term)
    return lemmas


def formula_text(formula: z3.BoolRef) -> str:
    """A formula over the template state as text, to cross a process boundary."""
    return formula.sexpr()


def formula_from_text(encoding: Encoding, text: str) -> z3.BoolRef:
    declarations = {str(var): var for var in encoding.template.values()}
    parsed = z3.parse_smt2_string(f"(assert {text})", decls=declarations)
    return z3.And(*parsed)


# ---------------------------------------------------------------------------------------
# Phase 1 and 2: induction, and what the proved invariants imply


@dataclass
class InductionAnswers:
    proved: dict[str, int]  # invariant -> k
    seconds: float


def prove_by_induction(encoding: Encoding, max_k: int,
                       lemmas: Sequence[Invariant] = ()) -> InductionAnswers:
    """The named invariants and the strengthening lemmas (`model_checks.lemmas`), proved
    together: a lemma helps only if it is itself proved."""
    outcome = k_induction(encoding, (*encoding.system.invariants, *lemmas), max_k=max_k)
    return InductionAnswers(outcome.proved, outcome.seconds)


def _relative_solver(encoding: Encoding, lemmas: Lemmas) -> z3.Solver:
    """A solver over one arbitrary state (and event parameters) where the lemmas hold.
    Everything is bounded: the finite-domain solver answers "unknown" otherwise."""
    solver = z3.SolverFor("QF_FD")
    solver.add(encoding.domain(encoding.template), *lemmas.state,
               *encoding._param_bounds(encoding.template_params))
    return solver


@dataclass
class RelativeAnswers:
    deadlock_free: bool
    deterministic_pairs: set[Any]  # target keys proved never enabled together
    open_pairs: list[Target]
    impossible_pairs: int  # pairs whose sources or guards can never overlap at all
    seconds: float


def relative_checks(encoding: Encoding, lemmas: Lemmas, terminal: Sequence[str]) -> RelativeAnswers:
    start = time.monotonic()
    solver = _relative_solver(encoding, lemmas)
    dead = deadlock_target(encoding, terminal)
    solver.push()
    solver.add(dead.term)
    deadlock_free = solver.check() == z3.unsat
    solver.pop()
    pairs = determinism_targets(encoding)
    bare = _relative_solver(encoding, Lemmas())
    possible = []
    for target in pairs:
        bare.push()
        bare.add(target.term)
        if bare.check() != z3.unsat:
            possible.append(target)
        bare.pop()
    impossible = len(pairs) - len(possible)
    proved: set[Any] = set()
    open_pairs = list(possible)
    still_open: list[Target] = []
    # A pair is proved deterministic when no state satisfying the proved invariants
    # enables both; ask for all at once, set aside the ones a model shows, repeat.
    while open_pairs:
        solver.push()
        solver.add(z3.Or(*(target.term for target in open_pairs)))
        answer = solver.check()
        if answer != z3.sat:
            solver.pop()
            if answer == z3.unsat:
                proved.update(target.key for target in open_pairs)
            else:
                still_open.extend(open_pairs)
            break
        model = solver.model()
        shown = [target for target in open_pairs
                 if z3.is_true(model.eval(target.term, model_completion=True))]
        solver.pop()
        still_open.extend(shown)
        open_pairs = [target for target in open_pairs if target not in shown]
    return RelativeAnswers(deadlock_free, proved, still_open, impossible,
                           time.monotonic() - start)


# ---------------------------------------------------------------------------------------
# Phase 3: the BMC worker


@dataclass
class BmcAnswers:
    hits: dict[Any, Hit]
    depth: int
    seconds: float
    complete: bool


def bmc_phase(
    encoding: Encoding,
    lemmas: Lemmas,
    *,
    coverage: bool,
    invariants: Sequence[Invariant],
    pairs: Sequence[Target],
    deadlock: bool,
    terminal: Sequence[str],
    depth: int,
    seconds: float,
    progress: Progress | None = None,
) -> BmcAnswers:
    targets = coverage_targets(encoding) + state_reachability_targets(encoding) \
        if coverage else []
    targets += invariant_violation_targets(encoding, invariants)
    targets += list(pairs)
    if deadlock:
        targets.append(deadlock_target(encoding, terminal))
    deadline = time.monotonic() + seconds

    def on_depth(k: int, left: int) -> None:
        if progress:
            progress(f"depth {k}/{depth}, {left} open")

    result = search(
        encoding, targets, depth, deadline=deadline, on_depth=on_depth,
        stop_when_done=True,
        strengthen=lambda unrolling, k: lemmas.assume_on(encoding, unrolling, k),
    )
    return BmcAnswers(result.hits, result.depth, result.seconds, result.complete)


# ---------------------------------------------------------------------------------------
# Phase 4: the proof worker


@dataclass
class SpacerAnswers:
    answers: dict[str, str]  # invariant -> proved | violated | unknown
    lemmas: list[str]  # "<invariant>\n<Spacer's inductive invariant, checked, as text>"
    seconds: float


def spacer_phase(
    encoding: Encoding,
    proved_invariants: Sequence[Invariant],
    open_invariants: Sequence[Invariant],
    *,
    spacer_ms: int,
    seconds: float,
    first_ms: int | None = None,
    progress: Progress | None = None,
    shared: MutableMapping[str, Any] | None = None,
    reverse: bool = False,
) -> SpacerAnswers:
    """Spacer on each open invariant; every proof adds its invariant and Spacer's own
    inductive invariant to the facts the next query may assume. An invariant Spacer gave
    up on is tried again only if later proofs brought new facts.

    Two workers may run this at once, sharing answers and lemmas through `shared` (a
    manager dict): "answer:<name>" -> answer, "lemma:<name>" -> lemma text, "busy:<name>"
    while a worker is on it (the other one skips it). `reverse` walks the list backwards."""
    start = time.monotonic()
    deadline = start + seconds
    shared = shared if shared is not None else {}
    by_name = {invariant.name: invariant for invariant in open_invariants}
    known = list(proved_invariants)
    extra: list[z3.BoolRef] = []
    merged: set[str] = set()
    answers: dict[str, str] = {}
    tried_with: dict[str, tuple[int, int]] = {}
    order = list(reversed(open_invariants)) if reverse else list(open_invariants)

    def merge() -> None:
        """Take in what the other worker (or a re-checked certificate) proved: proved
        invariants become facts, and so does every checked lemma."""
        for key in list(shared.keys()):
            if key in merged:
                continue
            kind, _, name = key.partition(":")
            if kind == "answer":
                answers[name] = shared[key]
                if shared[key] == "proved":
                    merged.add(key)
                    if name in by_name:
                        known.append(by_name[name])
            elif kind == "lemma" and shared[key]:
                merged.add(key)
                extra.append(formula_from_text(encoding, shared[key]))

    def settled(name: str) -> bool:
        return shared.get(f"answer:{name}") in ("proved", "violated")

    first_pass = True
    while time.monotonic() < deadline:
        merge()
        pending = [invariant for invariant in order if not settled(invariant.name)]
        if not pending:
            break
        progressed = first_pass
        first_pass = False
        for invariant in pending:
            merge()
            if settled(invariant.name) or shared.get(f"busy:{invariant.name}"):
                continue
            facts = len(known) + len(extra)
            if tried_with.get(invariant.name, (-1, 0))[0] == facts or \
                    shared.get(f"tried:{invariant.name}") == facts:
                continue  # nothing new to try it with (here or in the other worker)
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms < 500:
                break
            if progress:
                progress(f"Spacer: {invariant.name}")
            # A short first try each, so one hard invariant cannot starve the others.
            limit = spacer_ms if invariant.name in tried_with or first_ms is None \
                else first_ms
            tried_with[invariant.name] = (facts, limit)
            shared[f"busy:{invariant.name}"] = True
            outcome = spacer_prove(encoding, invariant, known,
                                   timeout_ms=min(limit, left_ms), extra=extra)
            shared[f"busy:{invariant.name}"] = False
            answers[invariant.name] = outcome.answer
            if outcome.answer == "proved":
                if outcome.lemma is not None:
                    shared[f"lemma:{invariant.name}"] = formula_text(outcome.lemma)
                shared[f"answer:{invariant.name}"] = "proved"
                progressed = True
            elif outcome.answer == "violated":
                shared[f"answer:{invariant.name}"] = "violated"
            else:
                shared[f"tried:{invariant.name}"] = facts
                shared.setdefault(f"answer:{invariant.name}", "unknown")
        if not progressed:
            break
    merge()
    lemmas = [f"{key.partition(':')[2]}\n{shared[key]}" for key in sorted(merged)
              if key.startswith("lemma:")]
    return SpacerAnswers(answers, lemmas, time.monotonic() - start)


# ---------------------------------------------------------------------------------------
# Proof certificates: Spacer's inductive invariants, kept between runs and re-checked


def load_certificates(path: Path | None) -> dict[str, str]:
    """Lemma texts kept by an earlier run. No fingerprint decides whether they still apply
    (Z3's normal forms depend on the order terms were built in, so a hash of the encoding
    is not stable across runs): `recheck_certificates` checks every one from scratch and
    drops what no longer holds."""
    import json

    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    lemmas = data.get("lemmas", {}) if isinstance(data, dict) else {}
    return {str(name): str(text) for name, text in lemmas.items()}


def save_certificates(path: Path | None, lemmas: dict[str, str]) -> None:
    import json

    if path is None or not lemmas:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    note = ("Spacer's inductive invariants from the last `mptcp-ref check`, one per "
            "invariant it proved; re-checked from scratch before any use")
    path.write_text(json.dumps({"note": note, "lemmas": lemmas}, indent=1) + "\n",
                    encoding="utf-8")


def recheck_certificates(
    encoding: Encoding,
    certificates: dict[str, str],
    proved_invariants: Sequence[Invariant],
    open_invariants: Sequence[Invariant],
) -> tuple[list[Invariant], dict[str, str]]:
    """Which open invariants the cached lemmas prove, checked from scratch: the lemmas
    that hold initially and are jointly inductive (Houdini, relative to the invariants
    already proved) are facts; an invariant they imply (a state invariant in every state
    they allow, a step invariant on every step from such a state) is proved. Nothing is
    taken on trust: a stale or broken certificate just drops out."""
    known = lemmas_of(encoding, proved_invariants)
    lemmas: dict[str, z3.BoolRef] = {}
    for name, text in certificates.items():
        try:
            lemmas[name] = formula_from_text(encoding, text)
        except (z3.Z3Exception, ValueError):
            continue  # written for other variables: not for this spec
    initial = z3.SolverFor("QF_FD")
    initial.add(encoding.initial(encoding.template))
    alive = {}
    for name, lemma in lemmas.items():
        initial.push()
        initial.add(z3.Not(lemma))
        if initial.check() == z3.unsat:
            alive[name] = lemma
        initial.pop()
    step = z3.SolverFor("QF_FD")
    transition = encoding.transition(encoding.template, StepVars(
        encoding.template_choice, dict(encoding.template_params)), encoding.template_next)
    renaming = [(encoding.template[key], encoding.template_next[key]) for key in encoding.keys]
    step.add(encoding.domain(encoding.template), encoding.domain(encoding.template_next),
             transition, *known.state, *known.step)
    while alive:
        step.push()
        step.add(*alive.values())
        after = {name: z3.substitute(lemma, *renaming) for name, lemma in alive.items()}
        step.add(z3.Or(*(z3.Not(term) for term in after.values())))
        answer = step.check()
        if answer != z3.sat:
            step.pop()
            if answer != z3.unsat:
                alive = {}
            break
        model = step.model()
        alive = {name: alive[name] for name, term in after.items()
                 if z3.is_true(model.eval(term, model_completion=True))}
        step.pop()
    proved = []
    step.add(*alive.values())
    for invariant in open_invariants:
        step.push()
        step.add(z3.Not(holds_template(encoding, invariant)))
        if step.check() == z3.unsat:
            proved.append(invariant)
        step.pop()
    return proved, {name: formula_text(lemma) for name, lemma in alive.items()}


@dataclass
class ClosableAnswers:
    closable: Any  # structural.ClosableResult
    method: str


def closable_phase(encoding: Encoding, lemmas: Lemmas, terminal: Sequence[str], bound: int,
                   depth: int, progress: Progress | None = None) -> ClosableAnswers:
    if progress:
        progress("CLOSED stays reachable")
    closable, method = _closable(encoding, lemmas, terminal, bound, depth)
    return ClosableAnswers(closable, method)


def _closable(encoding: Encoding, lemmas: Lemmas, terminal: Sequence[str], bound: int,
              depth: int):
    """First over every state the proved invariants allow (a proof if it goes through),
    else over the states BMC reaches within `depth` (a bounded answer)."""
    from model_checks.structural import ClosableResult, _path_to_terminal, _weakest_precondition

    start = time.monotonic()
    terminal_term = terminal_template(encoding, terminal)
    solver = _relative_solver(encoding, lemmas)
    covered = [terminal_term]
    longest = 0
    while True:
        solver.push()
        solver.add(*(z3.Not(region) for region in covered))
        answer = solver.check()
        if answer == z3.unsat:
            solver.pop()
            return ClosableResult(PROVED, depth, bound, time.monotonic() - start,
                                  len(covered) - 1, longest), "covering, relative to " \
                "the proved invariants"
        if answer != z3.sat:
            solver.pop()
            break
        values = encoding.read_state(solver.model(), encoding.template)
        solver.pop()
        path = _path_to_terminal(encoding, values, terminal_term, bound)
        if path is None:
            break  # maybe an unreachable state: fall back to the reachable ones
        longest = max(longest, len(path))
        covered.append(_weakest_precondition(encoding, path, terminal_term))
    result: ClosableResult = check_closable(encoding, depth, bound, terminal)
    return result, "covering of BMC-reachable states"


# ---------------------------------------------------------------------------------------
# Combining the answers


@dataclass
class Answers:
    """Everything the phases found, for `invariant_rows` and `structural_rows`."""

    induction: InductionAnswers
    spacer: SpacerAnswers
    relative: RelativeAnswers
    first_bmc: BmcAnswers  # coverage, reachability, open invariants
    second_bmc: BmcAnswers | None  # what the proofs left open, with every lemma assumed
    closable: ClosableAnswers
    max_k: int
    relative_k: set[str] = field(default_factory=set)  # k-inductive given Spacer's lemmas
    certified: set[str] = field(default_factory=set)  # proved by a re-checked certificate

    def hit(self, key) -> Hit | None:
        for bmc in (self.first_bmc, self.second_bmc):
            if bmc is not None and key in bmc.hits:
                return bmc.hits[key]
        return None

    @property
    def bmc_depth(self) -> int:
        depths = [self.first_bmc.depth]
        if self.second_bmc is not None:
            depths.append(self.second_bmc.depth)
        return max(depths)

    @property
    def bmc_seconds(self) -> float:
        return self.first_bmc.seconds + (self.second_bmc.seconds if self.second_bmc else 0.0)


def invariant_rows(system: SystemSpec, answers: Answers) -> list[PropertyResult]:
    rows = []
    induction, spacer = answers.induction, answers.spacer
    for invariant in system.invariants:
        hit = answers.hit(("invariant", invariant.name))
        k = induction.proved.get(invariant.name)
        by_spacer = spacer.answers.get(invariant.name, "")
        if hit is not None:
            row = PropertyResult(invariant.name, "invariant", "BMC", VIOLATED, hit.depth,
                                 answers.bmc_seconds, counterexample=hit.trace)
            if k is not None or by_spacer == PROVED:
                row.notes.append("ENCODER BUG: also proved")
        elif k is not None:
            method = f"{k}-induction" + (" + Spacer lemmas" if invariant.name in
                                         answers.relative_k else "")
            row = PropertyResult(invariant.name, "invariant", method, PROVED, None,
                                 induction.seconds)
        elif invariant.name in answers.certified:
            row = PropertyResult(invariant.name, "invariant",
                                 "Spacer certificate, re-checked", PROVED, None,
                                 induction.seconds)
        elif by_spacer == PROVED:
            row = PropertyResult(invariant.name, "invariant", "Spacer (CHC)", PROVED, None,
                                 spacer.seconds)
        elif by_spacer == VIOLATED:
            row = PropertyResult(invariant.name, "invariant", "Spacer (CHC)", VIOLATED,
                                 answers.bmc_depth, spacer.seconds,
                                 notes=[f"violated deeper than BMC depth {answers.bmc_depth}"])
        else:
            bmc = answers.second_bmc or answers.first_bmc
            row = PropertyResult(invariant.name, "invariant", "BMC", BOUNDED,
                                 bmc.depth, bmc.seconds,
                                 notes=[f"not {answers.max_k}-inductive; Spacer: "
                                        f"{by_spacer or 'not run'}"])
        if invariant.rfc:
            row.notes.insert(0, f"RFC 8684 {invariant.rfc}")
        rows.append(row)
    return rows


def lemma_rows(lemmas: Sequence[Invariant], induction: InductionAnswers) -> list[PropertyResult]:
    """One row per strengthening lemma: proved with the invariants, or dropped (not a
    failure: the lemma was only a means; what it was for shows in the invariant rows)."""
    rows = []
    for lemma in lemmas:
        k = induction.proved.get(lemma.name)
        if k is not None:
            row = PropertyResult(lemma.name, "lemma", f"{k}-induction", PROVED, None,
                                 induction.seconds)
        else:
            row = PropertyResult(lemma.name, "lemma", "k-induction", UNKNOWN, None,
                                 induction.seconds,
                                 notes=["not inductive here: dropped, never assumed"])
        row.notes.insert(0, f"RFC 8684 {lemma.rfc}")
        rows.append(row)
    return rows


def coverage_result(encoding: Encoding, bmc: BmcAnswers) -> CoverageResult:
    witnesses = []
    for machine, rule in encoding.system.all_rules():
        hit = bmc.hits.get(("rule", machine, rule.name))
        witnesses.append(Witness(machine, rule.name, hit.depth if hit else None,
                                 hit.trace if hit else None))
    unreached = [f"{key[1]}:{key[2]}" for key in _state_keys(encoding)
                 if key not in bmc.hits]
    return CoverageResult(witnesses, bmc.depth, bmc.seconds, unreached_states=unreached)


def _state_keys(encoding: Encoding) -> list[tuple[str, str, str]]:
    keys = [("state", "connection", name) for name in encoding.system.connection.states]
    keys += [("state", "subflow", name) for name in encoding.system.subflow.states]
    return keys


def write_witnesses(coverage: CoverageResult, folder: Path) -> None:
    from model_checks.traces import write_trace

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jsonl"):
        old.unlink()
    for witness in coverage.witnesses:
        if witness.trace is None:
            continue
        path = folder / f"{witness.machine}__{witness.rule}.jsonl"
        write_trace(witness.trace, path, witness=f"{witness.machine}:{witness.rule}",
                    length=len(witness.trace))
        witness.trace_file = relative(path)
    coverage.folder = relative(folder)


def structural_rows(encoding: Encoding, answers: Answers,
                    options: CheckOptions) -> list[PropertyResult]:
    rows = []
    relative_answers = answers.relative
    # Determinism
    found = []
    for bmc in (answers.first_bmc, answers.second_bmc):
        if bmc is not None:
            found += [(key, hit) for key, hit in bmc.hits.items() if key[0] == "nondeterminism"]
    open_keys = {target.key for target in relative_answers.open_pairs}
    unresolved = open_keys - {key for key, _ in found}
    tagged = sum(1 for _, rule in encoding.system.all_rules() if rule.choice)
    notes = [f"{len(relative_answers.deterministic_pairs)} pairs of rules with overlapping "
             f"sources proved never enabled together (from the proved invariants); "
             f"{relative_answers.impossible_pairs} pairs can never overlap; "
             f"{tagged} rules carry a deliberate choice tag"]
    seconds = relative_answers.seconds + answers.bmc_seconds
    if found:
        found.sort(key=lambda item: item[1].depth)
        for key, hit in found:
            event = _probe_event(encoding, key, hit)
            notes.append(f"{key[1]}: {key[2]} and {key[3]} both enabled after "
                         f"{hit.depth} steps on {event}")
        rows.append(PropertyResult("determinism", "structural", "BMC", VIOLATED,
                                   found[0][1].depth, seconds,
                                   counterexample=found[0][1].trace, notes=notes))
    elif unresolved:
        notes.append(f"{len(unresolved)} pairs only bounded: "
                     + ", ".join(f"{k[2]}/{k[3]}" for k in sorted(unresolved)))
        depth = answers.second_bmc.depth if answers.second_bmc else answers.first_bmc.depth
        rows.append(PropertyResult("determinism", "structural", "BMC", BOUNDED, depth,
                                   seconds, notes=notes))
    else:
        rows.append(PropertyResult("determinism", "structural",
                                   "implied by the proved invariants", PROVED, None,
                                   relative_answers.seconds, notes=notes))
    # Deadlock
    hit = answers.hit(("deadlock",))
    terminal_note = (f"terminal: connection in {'/'.join(options.terminal)} (it may only "
                     "idle there)")
    if hit is not None:
        rows.append(PropertyResult("no_deadlock", "structural", "BMC", VIOLATED, hit.depth,
                                   answers.bmc_seconds, counterexample=hit.trace,
                                   notes=["a reachable non-terminal state with no step",
                                          terminal_note]))
    elif relative_answers.deadlock_free:
        rows.append(PropertyResult("no_deadlock", "structural",
                                   "implied by the proved invariants", PROVED, None,
                                   relative_answers.seconds, notes=[terminal_note]))
    else:
        depth = answers.second_bmc.depth if answers.second_bmc else answers.first_bmc.depth
        rows.append(PropertyResult("no_deadlock", "structural", "BMC", BOUNDED, depth,
                                   answers.bmc_seconds, notes=[terminal_note]))
    # CLOSED stays reachable
    closable = answers.closable.closable
    name = f"closed_reachable_within_{closable.bound}"
    notes = [f"{closable.regions} event sequences cover the states; the longest way to "
             f"CLOSED is {closable.longest} steps"]
    if closable.result == VIOLATED:
        notes.append(f"stuck state: {_short_state(encoding, closable.stuck_state)}")
        rows.append(PropertyResult(name, "structural", answers.closable.method, VIOLATED,
                                   closable.depth, closable.seconds,
                                   counterexample=closable.counterexample, notes=notes))
    else:
        rows.append(PropertyResult(name, "structural", answers.closable.method,
                                   closable.result,
                                   None if closable.result == PROVED else closable.depth,
                                   closable.seconds, notes=notes))
    # Every control state reachable
    bmc = answers.first_bmc
    unreached = [f"{key[1]}:{key[2]}" for key in _state_keys(encoding) if key not in bmc.hits]
    deepest = max((bmc.hits[key].depth for key in _state_keys(encoding) if key in bmc.hits),
                  default=0)
    if unreached:
        rows.append(PropertyResult("every_state_reachable", "structural", "BMC",
                                   BOUNDED if not bmc.complete else VIOLATED, bmc.depth,
                                   bmc.seconds,
                                   notes=[f"never reached within {bmc.depth} steps: "
                                          + ", ".join(unreached)]))
    else:
        rows.append(PropertyResult("every_state_reachable", "structural", "BMC witnesses",
                                   PROVED, deepest, bmc.seconds,
                                   notes=[f"every control state entered within {deepest} "
                                          "steps"]))
    return rows


def _probe_event(encoding: Encoding, key, hit: Hit) -> str:
    label = None
    for choice in encoding.choices:
        names = {rule.name for _, rule in choice.rules}
        if key[2] in names or key[3] in names:
            label = choice.label
            break
    params = {name: value for (lab, name), value in hit.probe.items() if lab == label}
    return f"{label}({', '.join(f'{k}={v}' for k, v in params.items())})"


def _short_state(encoding: Encoding, values: dict[str, Any] | None) -> str:
    if not values:
        return ""
    initial = encoding.system.initial_values()
    parts = [f"{key}={value}" for key, value in values.items()
             if key.endswith(".state") or value != initial[key]]
    return ", ".join(parts)
