"""The named invariants: bounded model checking, then unbounded proofs.

Each invariant ends as `violated` (with the shortest counterexample BMC found), `proved`
(by k-induction or by Spacer, Z3's CHC engine) or `bounded(depth)` (no violation within
the depth, and no unbounded proof went through).

k-induction is run Houdini-style over all invariants at once: the candidates are assumed
together on the k states of an arbitrary path, and any candidate a counterexample to
induction breaks is dropped until the rest is jointly k-inductive, which proves every
survivor, given the base case: every candidate holds on the first k states of every run,
checked here first, so a false candidate (a planted or stale lemma) is never assumed.
Invariants proved at one k are then assumed everywhere at the next k, which is sound
because they hold in every reachable state. What k-induction leaves goes to Spacer, with
the proved ones as lemmas.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import z3

from model_checks.bmc import Hit, Target, Trace, Unrolling, search
from model_checks.encoding import Encoding
from spec.core import Invariant, SystemView


@dataclass
class InvariantResult:
    name: str
    kind: str
    result: str  # "proved" | "bounded" | "violated"
    method: str  # "BMC", "k-induction (k=2)", "Spacer"
    depth: int  # BMC depth reached (the counterexample's length when violated)
    seconds: float
    counterexample: Trace | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.result == "bounded":
            return f"bounded({self.depth})"
        return self.result


def invariant_violation_targets(encoding: Encoding,
                                invariants: Sequence[Invariant]) -> list[Target]:
    """One target per invariant: its negation, on a state or on a transition."""
    targets = []
    for invariant in invariants:
        holds = holds_template(encoding, invariant)
        targets.append(Target(("invariant", invariant.name),
                              "state" if invariant.kind == "state" else "step",
                              z3.Not(holds)))
    return targets


def holds_template(encoding: Encoding, invariant: Invariant) -> z3.BoolRef:
    if invariant.kind == "state":
        view = SystemView(encoding.system, encoding.template)
        return z3.simplify(_bool(invariant.predicate(view)))
    return encoding.step_invariant_template(invariant.predicate)


def _bool(value: Any) -> z3.BoolRef:
    return value if isinstance(value, z3.ExprRef) else z3.BoolVal(bool(value))


# ---------------------------------------------------------------------------------------
# k-induction


@dataclass
class InductionOutcome:
    proved: dict[str, int]  # invariant -> k it was proved at
    counterexamples: dict[str, dict[str, Any]]  # the last CTI state that broke each one
    seconds: float


def k_induction(
    encoding: Encoding,
    invariants: Sequence[Invariant],
    max_k: int = 3,
    deadline: float | None = None,
    facts: Any = None,
) -> InductionOutcome:
    """Houdini-style k-induction; `facts` (checks.Lemmas: already proved to hold in every
    reachable state) are assumed on every state and transition of the path."""
    start = time.monotonic()
    holds = {invariant.name: holds_template(encoding, invariant) for invariant in invariants}
    kinds = {invariant.name: invariant.kind for invariant in invariants}
    proved: dict[str, int] = {}
    ctis: dict[str, dict[str, Any]] = {}
    refuted: set[str] = set()
    for k in range(1, max_k + 1):
        candidates = [name for name in holds if name not in proved and name not in refuted]
        if not candidates:
            break
        if deadline is not None and time.monotonic() > deadline:
            break
        # Base case: every candidate holds on the first k states of every run (the
        # inductive step below assumes exactly that much). A candidate that fails here is
        # false, full stop: it is never assumed and never retried.
        for name in _fails_in_first_states(encoding, holds, kinds, candidates, k):
            refuted.add(name)
        candidates = [name for name in candidates if name not in refuted]
        if not candidates:
            break
        # A path s_0 .. s_k from anywhere in the domain; transitions 0 .. k-1 are the
        # hypothesis, transition k-1 -> k (and state k) the conclusion.
        path = Unrolling(encoding, initial=False)
        for _ in range(k):
            path.extend()
        solver = path.solver
        # Simple paths only: a lasso through a bad state is not a real counterexample.
        for i in range(k + 1):
            for j in range(i + 1, k + 1):
                solver.add(z3.Or(*(path.states[i][key] != path.states[j][key]
                                   for key in encoding.keys)))

        def at(name: str, position: int, path: Unrolling = path) -> z3.BoolRef:
            if kinds[name] == "state":
                return encoding.instantiate(holds[name], state=path.states[position])
            # a step invariant "at position p" is about transition p-1 -> p
            return encoding.instantiate(holds[name], state=path.states[position - 1],
                                        next_state=path.states[position],
                                        step=path.steps[position - 1])

        for name in proved:  # known invariants hold everywhere
            for position in range(0 if kinds[name] == "state" else 1, k + 1):
                solver.add(at(name, position))
        if facts is not None:
            for position in range(k + 1):
                solver.add(*facts.assume_on(encoding, path, position))
        alive = list(candidates)
        while alive:
            if deadline is not None and time.monotonic() > deadline:
                alive = []
                break
            solver.push()
            for name in alive:
                for position in range(0 if kinds[name] == "state" else 1, k):
                    solver.add(at(name, position))
            conclusions = {name: at(name, k) for name in alive}
            solver.add(z3.Or(*(z3.Not(term) for term in conclusions.values())))
            answer = solver.check()
            if answer == z3.unsat:
                solver.pop()
                break
            if answer == z3.unknown:
                solver.pop()
                alive = []
                break
            model = solver.model()
            broken = [name for name, term in conclusions.items()
                      if z3.is_false(model.eval(term, model_completion=True))]
            for name in broken:
                ctis[name] = encoding.read_state(model, path.states[k - 1])
            solver.pop()
            alive = [name for name in alive if name not in broken]
        for name in alive:
            proved[name] = k
            ctis.pop(name, None)
    return InductionOutcome(proved, ctis, time.monotonic() - start)


def _fails_in_first_states(encoding: Encoding, holds: dict[str, z3.BoolRef],
                           kinds: dict[str, str], candidates: Sequence[str],
                           k: int) -> list[str]:
    """The candidates some run breaks within its first k states (k - 1 steps)."""
    run = Unrolling(encoding, initial=True)
    for _ in range(k - 1):
        run.extend()
    failing = []
    for name in candidates:
        if kinds[name] == "state":
            breaks = [encoding.instantiate(holds[name], state=run.states[position])
                      for position in range(k)]
        else:
            breaks = [encoding.instantiate(holds[name], state=run.states[position - 1],
                                           next_state=run.states[position],
                                           step=run.steps[position - 1])
                      for position in range(1, k)]
        if not breaks:
            continue
        run.solver.push()
        run.solver.add(z3.Or(*(z3.Not(term) for term in breaks)))
        if run.solver.check() != z3.unsat:
            failing.append(name)
        run.solver.pop()
    return failing


# ---------------------------------------------------------------------------------------
# Spacer (constrained Horn clauses)


@dataclass
class SpacerAnswer:
    answer: str  # "proved" | "violated" | "unknown"
    lemma: z3.BoolRef | None = None  # Spacer's inductive invariant, checked by us
    seconds: float = 0.0


def spacer_prove(
    encoding: Encoding,
    invariant: Invariant | None,
    lemmas: Sequence[Invariant] = (),
    timeout_ms: int = 20_000,
    extra: Sequence[z3.BoolRef] = (),
    bad: z3.BoolRef | None = None,
) -> SpacerAnswer:
    """Prove one invariant with Spacer.

    Reach(s) is the reachable set: Init(s) -> Reach(s); Reach(s) and T(s, s') -> Reach(s');
    Reach(s) and bad -> false. Facts already proved (`lemmas`, and `extra` state formulas)
    restrict the transitions to states where they hold, which leaves the reachable set as
    it is. On success Spacer's inductive invariant is checked here (initial, and inductive
    relative to the facts) before it is handed back as a new lemma. With `bad` (a formula
    over the template state and parameters) instead of an invariant, "proved" means no
    reachable state satisfies it."""
    start = time.monotonic()
    keys = encoding.keys
    sorts = [encoding.template[key].sort() for key in keys]
    reach = z3.Function("Reach", *sorts, z3.BoolSort())
    fixedpoint = z3.Fixedpoint()
    fixedpoint.set(engine="spacer")
    fixedpoint.set("timeout", timeout_ms)
    fixedpoint.register_relation(reach)
    state = [encoding.template[key] for key in keys]
    following = [encoding.template_next[key] for key in keys]
    params = list(encoding.template_params.values())
    fixedpoint.declare_var(*state, *following, *params, encoding.template_choice)
    fixedpoint.rule(reach(*state), encoding.initial(encoding.template))
    known = [holds_template(encoding, lemma) for lemma in lemmas if lemma.kind == "state"]
    known += list(extra)
    step_known = [holds_template(encoding, lemma) for lemma in lemmas if lemma.kind == "step"]
    transition = encoding.transition(encoding.template, _template_step(encoding),
                                     encoding.template_next)
    body = [reach(*state), transition, *known, *step_known]
    fixedpoint.rule(reach(*following), body)
    if bad is not None:
        query = z3.And(reach(*state), bad)
    elif invariant.kind == "state":
        query = z3.And(reach(*state), z3.Not(holds_template(encoding, invariant)))
    else:
        query = z3.And(*body, z3.Not(holds_template(encoding, invariant)))
    try:
        answer = fixedpoint.query(query)
    except z3.Z3Exception:
        return SpacerAnswer("unknown", seconds=time.monotonic() - start)
    if answer == z3.sat:
        return SpacerAnswer("violated", seconds=time.monotonic() - start)
    if answer != z3.unsat:
        return SpacerAnswer("unknown", seconds=time.monotonic() - start)
    lemma = None
    try:
        cover = fixedpoint.get_cover_delta(-1, reach)
        candidate = z3.substitute_vars(cover, *state)
        if _inductive(encoding, candidate, known, step_known, transition):
            lemma = candidate
    except z3.Z3Exception:
        lemma = None
    return SpacerAnswer("proved", lemma, time.monotonic() - start)


def _inductive(encoding: Encoding, formula: z3.BoolRef, known, step_known, transition) -> bool:
    """formula holds initially and is preserved by every step from a state where the
    known facts hold: then it holds in every reachable state."""
    solver = z3.SolverFor("QF_FD")
    solver.add(encoding.initial(encoding.template), z3.Not(formula))
    if solver.check() != z3.unsat:
        return False
    following = z3.substitute(formula, *[(encoding.template[key], encoding.template_next[key])
                                         for key in encoding.keys])
    solver = z3.SolverFor("QF_FD")
    solver.add(encoding.domain(encoding.template), encoding.domain(encoding.template_next),
               formula, *known, *step_known, transition, z3.Not(following))
    return solver.check() == z3.unsat


def _template_step(encoding: Encoding):
    from model_checks.encoding import StepVars

    return StepVars(encoding.template_choice, dict(encoding.template_params))


# ---------------------------------------------------------------------------------------
# Putting it together


def check_invariants(
    encoding: Encoding,
    invariants: Sequence[Invariant],
    depth: int,
    *,
    max_k: int = 3,
    spacer_timeout_ms: int = 20_000,
    use_spacer: bool = True,
    deadline: float | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> list[InvariantResult]:
    """BMC to `depth` for every invariant, then k-induction and Spacer for the survivors."""
    start = time.monotonic()
    targets = invariant_violation_targets(encoding, invariants)
    bmc = search(
        encoding, targets, depth, deadline=deadline,
        on_depth=(lambda k, left: on_progress(f"BMC depth {k}")) if on_progress else None,
    )
    bmc_seconds = time.monotonic() - start
    results: dict[str, InvariantResult] = {}
    survivors = []
    for invariant in invariants:
        hit: Hit | None = bmc.hits.get(("invariant", invariant.name))
        if hit is not None:
            results[invariant.name] = InvariantResult(
                invariant.name, invariant.kind, "violated", "BMC", hit.depth, bmc_seconds,
                counterexample=hit.trace,
            )
        else:
            survivors.append(invariant)
    if not survivors:
        return [results[invariant.name] for invariant in invariants]
    if on_progress:
        on_progress("k-induction")
    induction = k_induction(encoding, survivors, max_k=min(max_k, max(bmc.depth, 1)),
                            deadline=deadline)
    for invariant in survivors:
        k = induction.proved.get(invariant.name)
        if k is not None:
            results[invariant.name] = InvariantResult(
                invariant.name, invariant.kind, "proved", f"BMC + {k}-induction", bmc.depth,
                bmc_seconds + induction.seconds,
            )
    proved_invariants = [inv for inv in survivors if inv.name in induction.proved]
    for invariant in survivors:
        if invariant.name in results:
            continue
        seconds = bmc_seconds + induction.seconds
        notes = [f"not {max_k}-inductive"]
        if use_spacer and (deadline is None or time.monotonic() < deadline):
            if on_progress:
                on_progress(f"Spacer {invariant.name}")
            spacer_start = time.monotonic()
            answer = spacer_prove(encoding, invariant, proved_invariants,
                                  timeout_ms=spacer_timeout_ms).answer
            seconds += time.monotonic() - spacer_start
            if answer == "proved":
                results[invariant.name] = InvariantResult(
                    invariant.name, invariant.kind, "proved", "BMC + Spacer", bmc.depth,
                    seconds,
                )
                continue
            if answer == "violated":
                results[invariant.name] = InvariantResult(
                    invariant.name, invariant.kind, "violated", "Spacer", bmc.depth, seconds,
                    notes=[f"reachable violation deeper than {bmc.depth}: rerun with a "
                           "larger --depth for the trace"],
                )
                continue
            notes.append(f"Spacer: {answer}")
        results[invariant.name] = InvariantResult(
            invariant.name, invariant.kind, "bounded", "BMC", bmc.depth, seconds, notes=notes,
        )
    return [results[invariant.name] for invariant in invariants]
