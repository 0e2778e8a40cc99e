"""Seeded faults in a copy of the spec tables, and the checks that must catch them.

A mutant is the spec with one change made by `dataclasses.replace` on a copy of the
tables: a guard dropped or negated, a target changed, a rule deleted, an effect weakened
(one variable no longer written), two rules' events swapped, a source state added. The
rules to mutate are drawn with a fixed seed from the rules that have a coverage witness,
so every mutant touches behaviour the spec really has.

A mutant is killed when the checks tell it from the spec:

1. coverage replay: some coverage witness of the spec (a trace the spec accepts) is
   refused by the mutant;
2. divergence: one BMC run over the *spec* looks, for every remaining mutant at once, for
   the shortest reachable state where the mutant's table offers a different set of
   (enabled event, next state) than the spec's for some event on an affected label
   (`divergence_target`). From there a distinguishing trace is built: the event itself
   when one side refuses it, or that event followed by one the two sides disagree on.
   The trace is confirmed concretely: the spec's monitor (`spec.monitor.check_trace`)
   rejects what the mutant accepts, or the reverse;
3. failing that, the mutant's next state is checked against the spec's invariants and
   its proved strengthening lemmas (facts of every state the spec reaches).

A mutant with no divergence in any state the proved invariants allow is *equivalent*
(reported with that proof, not counted as killed or surviving); one with no divergence
found within the BMC bound is a survivor.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import z3

from model_checks.bmc import Hit, Target, Trace, Unrolling, rule_names, search
from model_checks.encoding import Encoding, StepVars
from model_checks.explore import enabled_steps
from model_checks.invariants import spacer_prove
from model_checks.results import MutantResult
from model_checks.sampling import label_sources
from model_checks.traces import accepts
from spec.core import (
    Invariant,
    MachineSpec,
    Rule,
    Step,
    SystemSpec,
    SystemView,
    always,
    unchanged,
)
from spec.logic import Not

SEED = 8684
# Events looked at past a divergence state for one both tables answer differently.
DISTINGUISH_DEPTH = 3


@dataclass(frozen=True)
class Mutant:
    name: str
    operator: str
    description: str
    machine: str  # "connection" | "subflow"
    build: Callable[[SystemSpec], SystemSpec]
    labels: frozenset[str]  # labels whose behaviour may differ
    rules: frozenset[str] = frozenset()  # the rules changed


def _machine(system: SystemSpec, machine: str) -> MachineSpec:
    return system.connection if machine == "connection" else system.subflow


def _with_rules(system: SystemSpec, machine: str, rules: Sequence[Rule]) -> SystemSpec:
    mutated = replace(_machine(system, machine), rules=tuple(rules))
    if machine == "connection":
        return replace(system, connection=mutated)
    return replace(system, subflow=mutated)


def _map_rule(machine: str, name: str, change: Callable[[Rule], Rule | None]):
    def build(system: SystemSpec) -> SystemSpec:
        rules = []
        for rule in _machine(system, machine).rules:
            if rule.name == name:
                changed = change(rule)
                if changed is not None:
                    rules.append(changed)
            else:
                rules.append(rule)
        return _with_rules(system, machine, rules)
    return build


def _without_key(effect, key: str):
    def weakened(view: SystemView) -> Mapping[str, Any]:
        return {name: value for name, value in effect(view).items() if name != key}
    return weakened


def _negated(guard):
    return lambda view: Not(guard(view))


def _written_keys(encoding: Encoding, machine: str, rule: Rule) -> list[str]:
    for choice in encoding.choices:
        for prefix, fired in choice.rules:
            if fired.name == rule.name and (prefix == "conn") == (machine == "connection"):
                variables = [key.split(".", 1)[1] for key in choice.updates
                             if key.startswith(prefix + ".") and not key.endswith(".state")]
                return sorted(variables)
    return []


def generate(system: SystemSpec, encoding: Encoding, witnessed: set[tuple[str, str]],
             seed: int = SEED) -> list[Mutant]:
    """At least 20 mutants, the same ones every run (seeded)."""
    rng = random.Random(seed)
    rules = [(machine, rule) for machine, rule in system.all_rules()
             if (machine, rule.name) in witnessed]
    rules.sort(key=lambda item: (item[0], item[1].name))
    rng.shuffle(rules)
    mutants: list[Mutant] = []
    used: set[str] = set()

    def take(predicate, count: int, make) -> None:
        taken = 0
        for machine, rule in rules:
            if taken == count:
                return
            if rule.name in used or not predicate(machine, rule):
                continue
            made = make(machine, rule)
            if made is None:
                continue
            used.add(rule.name)
            mutants.append(made)
            taken += 1

    def drop_guard(machine, rule):
        return Mutant(f"drop_guard:{rule.name}", "drop a guard",
                      f"{machine} rule {rule.name} fires without its guard "
                      f"({rule.guard_text or 'guard'})", machine,
                      _map_rule(machine, rule.name, lambda r: replace(r, guard=always)),
                      frozenset({rule.label}), frozenset({rule.name}))

    def negate_guard(machine, rule):
        return Mutant(f"negate_guard:{rule.name}", "negate a guard",
                      f"{machine} rule {rule.name} fires exactly when its guard is false",
                      machine,
                      _map_rule(machine, rule.name,
                                lambda r: replace(r, guard=_negated(r.guard))),
                      frozenset({rule.label}), frozenset({rule.name}))

    def change_target(machine, rule):
        states = _machine(system, machine).states
        others = [state for state in states if state not in (rule.target, *rule.source)]
        if not others:
            return None
        target = rng.choice(others)
        return Mutant(f"change_target:{rule.name}", "change a target",
                      f"{machine} rule {rule.name} goes to {target} instead of "
                      f"{rule.target}", machine,
                      _map_rule(machine, rule.name, lambda r: replace(r, target=target)),
                      frozenset({rule.label}), frozenset({rule.name}))

    def delete_rule(machine, rule):
        return Mutant(f"delete_rule:{rule.name}", "delete a rule",
                      f"{machine} rule {rule.name} is gone", machine,
                      _map_rule(machine, rule.name, lambda r: None),
                      frozenset({rule.label}), frozenset({rule.name}))

    def weaken_effect(machine, rule):
        keys = _written_keys(encoding, machine, rule)
        if not keys:
            return None
        key = rng.choice(keys)
        return Mutant(f"weaken_effect:{rule.name}", "weaken an effect",
                      f"{machine} rule {rule.name} no longer writes {key}", machine,
                      _map_rule(machine, rule.name,
                                lambda r: replace(r, effect=_without_key(r.effect, key))),
                      frozenset({rule.label}), frozenset({rule.name}))

    def widen_source(machine, rule):
        states = _machine(system, machine).states
        extra = [state for state in states if state not in rule.source]
        if not extra:
            return None
        state = rng.choice(extra)
        return Mutant(f"widen_source:{rule.name}", "add a source state",
                      f"{machine} rule {rule.name} may also fire in {state}", machine,
                      _map_rule(machine, rule.name,
                                lambda r: replace(r, source=(*r.source, state))),
                      frozenset({rule.label}), frozenset({rule.name}))

    has_guard = lambda machine, rule: rule.guard is not always  # noqa: E731
    has_effect = lambda machine, rule: rule.effect is not unchanged  # noqa: E731
    has_target = lambda machine, rule: rule.target is not None  # noqa: E731
    anything = lambda machine, rule: True  # noqa: E731
    take(has_guard, 5, drop_guard)
    take(has_guard, 2, negate_guard)
    take(has_target, 4, change_target)
    take(anything, 4, delete_rule)
    take(has_effect, 5, weaken_effect)
    take(anything, 1, widen_source)
    # Swap the events of two rules of one machine (different labels, both witnessed).
    swaps = 0
    for machine in ("connection", "subflow"):
        pool = [rule for m, rule in rules if m == machine and rule.name not in used]
        while swaps < (2 if machine == "connection" else 4) and len(pool) >= 2:
            first = pool.pop()
            # Same addressing, so both rules' guards still find the subflow they read.
            addressed = system.labels[first.label].addressed
            second = next((rule for rule in pool if rule.label != first.label
                           and system.labels[rule.label].addressed == addressed), None)
            if second is None:
                break
            pool.remove(second)
            used.update({first.name, second.name})
            swaps += 1
            mutants.append(_swap(machine, first, second))
    return mutants


def _swap(machine: str, first: Rule, second: Rule) -> Mutant:
    def build(system: SystemSpec) -> SystemSpec:
        rules = []
        for rule in _machine(system, machine).rules:
            if rule.name == first.name:
                rules.append(replace(rule, label=second.label))
            elif rule.name == second.name:
                rules.append(replace(rule, label=first.label))
            else:
                rules.append(rule)
        return _with_rules(system, machine, rules)

    return Mutant(f"swap_events:{first.name}/{second.name}", "swap two events",
                  f"{machine} rules {first.name} ({first.label}) and {second.name} "
                  f"({second.label}) trade events", machine, build,
                  frozenset({first.label, second.label}), frozenset({first.name, second.name}))


# ---------------------------------------------------------------------------------------
# The divergence target: where the mutant's table and the spec's answer an event differently


def _candidates(system: SystemSpec, encoding: Encoding, label: str, slot: int | None):
    step = encoding.template_step(label, slot)
    try:
        return system.step_candidates(encoding.template, step)
    except (ValueError, AttributeError, KeyError):
        return []  # the label left every alphabet (a swap) or lost its slot


def _post(encoding: Encoding, candidate) -> dict[str, z3.ExprRef]:
    post = dict(encoding.template)
    for key, value in candidate.updates.items():
        like = encoding.template[key]
        if not isinstance(value, z3.ExprRef):
            value = z3.BoolVal(bool(value)) if z3.is_bool(like) else z3.IntVal(int(value))
        post[key] = value
    return post


def divergence_target(encoding: Encoding, mutant_system: SystemSpec, mutant: Mutant,
                      live: dict[str, set[str]] | None = None) -> Target:
    """A probe over the spec's template state and parameters: for some affected event, a
    (condition, next state) of one table is matched by none of the other's. Next states
    are compared on control states and on the variables still live there (`liveness`): a
    difference in a value every run overwrites before reading can never show in a
    trace."""
    from model_checks.liveness import live_in

    disjuncts = []
    for label in sorted(mutant.labels):
        if label not in encoding.system.labels:
            continue
        addressed = encoding.system.labels[label].addressed
        slots = range(encoding.system.config.max_subflows) if addressed else (None,)
        for slot in slots:
            original = _candidates(encoding.system, encoding, label, slot)
            changed = _candidates(mutant_system, encoding, label, slot)
            for ours, theirs in ((changed, original), (original, changed)):
                for candidate in ours:
                    post = _post(encoding, candidate)
                    liveness = {}
                    matched = []
                    for other in theirs:
                        other_post = _post(encoding, other)
                        # Only variables one of the two writes can differ.
                        same = []
                        for key in set(candidate.updates) | set(other.updates):
                            if z3.eq(post[key], other_post[key]):
                                continue
                            equal = post[key] == other_post[key]
                            if live is not None and not key.endswith(".state"):
                                if key not in liveness:
                                    liveness[key] = live_in(encoding, key, post, live)
                                equal = z3.Implies(liveness[key], equal)
                            same.append(equal)
                        matched.append(z3.And(_bool(other.condition), *same))
                    disjuncts.append(z3.And(_bool(candidate.condition),
                                            z3.Not(z3.Or(*matched)) if matched
                                            else z3.BoolVal(True)))
    term = z3.simplify(z3.Or(*disjuncts)) if disjuncts else z3.BoolVal(False)
    return Target(("mutant", mutant.name), "probe", term)


def _bool(value) -> z3.BoolRef:
    return value if isinstance(value, z3.ExprRef) else z3.BoolVal(bool(value))


# ---------------------------------------------------------------------------------------
# Running the mutants


def _successor_states(system: SystemSpec, states, step: Step) -> set[tuple]:
    out = set()
    for state in states:
        try:
            for _, values in system.successors(dict(state), step):
                out.add(tuple(sorted(values.items())))
        except (KeyError, ValueError, AttributeError):
            continue  # a mutant's guard reading what the event does not have: refused
    return out


def _state_sets(system: SystemSpec, steps: Sequence[Step]) -> set[tuple]:
    states = {tuple(sorted(system.initial_values().items()))}
    for step in steps:
        states = _successor_states(system, states, step)
    return states


def _enabled(system: SystemSpec, states, sources) -> set[tuple]:
    """Enabled events as hashable (label, slot, sorted parameter items)."""
    out: set[tuple] = set()
    for state in states:
        for step in enabled_steps(system, dict(state), sources):
            out.add((step.label, step.index, tuple(sorted(step.params.items()))))
    return out


def _step_of(event: tuple) -> Step:
    label, index, params = event
    return Step(label, index, dict(params))


def distinguish(spec: SystemSpec, mutant: SystemSpec, prefix: Sequence[Step], event: Step,
                ) -> tuple[list[Step], str] | None:
    """A trace one of the two accepts and the other refuses: prefix + event, or
    prefix + event + one more event (the first the two disagree on)."""
    before_spec = _state_sets(spec, prefix)
    before_mutant = _state_sets(mutant, prefix)
    after_spec = _successor_states(spec, before_spec, event)
    after_mutant = _successor_states(mutant, before_mutant, event)
    trace = [*prefix, event]
    if after_mutant and not after_spec:
        return trace, "the mutant accepts a trace the spec refuses"
    if after_spec and not after_mutant:
        return trace, "the mutant refuses a trace the spec accepts"
    enabled_spec = _enabled(spec, after_spec, label_sources(spec))
    enabled_mutant = _enabled(mutant, after_mutant, label_sources(mutant))
    only_mutant = sorted(enabled_mutant - enabled_spec, key=repr)
    only_spec = sorted(enabled_spec - enabled_mutant, key=repr)
    if only_mutant:
        return ([*trace, _step_of(only_mutant[0])],
                "the mutant accepts a trace the spec refuses")
    if only_spec:
        return [*trace, _step_of(only_spec[0])], "the mutant refuses a trace the spec accepts"
    return None


def product_distinguish(spec: Encoding, mutant: Encoding, spec_state: Mapping[str, Any],
                        mutant_state: Mapping[str, Any], depth: int,
                        changed: frozenset[str] = frozenset(),
                        confirm: Callable[[list[Step]], bool] | None = None,
                        attempts: int = 6) -> list[Step] | None:
    """The shortest sequence of events (at most `depth`, then one more) that the spec from
    `spec_state` and the mutant from `mutant_state` answer differently: both take the
    same events (label, slot, parameters), and the last one is enabled on one side only.
    Both tables share the state variables and parameters, so one set of parameter
    variables serves both sides and only the event identity has to be tied.

    Where the spec leaves a choice open, the two sides could part ways by choosing
    differently, which no trace would show (the spec allows both). So both sides must
    fire the same rules at every step, except where a `changed` rule is involved."""
    events: dict[tuple[str, int | None], int] = {}
    for choice in (*spec.choices, *mutant.choices):
        events.setdefault((choice.label, choice.slot), len(events))
    combos: dict[tuple, int] = {}
    for choice in (*spec.choices, *mutant.choices):
        combos.setdefault(rule_names(choice.rules), len(combos))

    def touches(choice) -> bool:
        return any(rule.name in changed for _, rule in choice.rules)
    left = Unrolling(spec, initial=False)
    right = Unrolling(mutant, solver=left.solver, initial=False)
    solver = left.solver
    for key, value in spec_state.items():
        solver.add(left.states[0][key] == spec.encode_value(key, value))
    for key, value in mutant_state.items():
        solver.add(right.states[0][key] == spec.encode_value(key, value))

    def event_of(encoding: Encoding, choice_var, event_var) -> z3.BoolRef:
        return z3.And(*(z3.Implies(choice_var == choice.index,
                                   event_var == events[(choice.label, choice.slot)])
                        for choice in encoding.choices))

    def enabled(encoding: Encoding, state, event_var, params) -> z3.BoolRef:
        options = []
        for choice in encoding.choices:
            condition = encoding.instantiate(choice.condition, state=state,
                                             step=StepVars(z3.IntVal(choice.index), params))
            options.append(z3.And(event_var == events[(choice.label, choice.slot)], condition))
        return z3.Or(*options)

    for k in range(depth + 1):
        if k > 0:
            shared = spec.step_vars(f"pd{k}")
            left.steps.append(shared)
            following_left = spec.state_vars(f"pdl{k}")
            solver.add(spec.transition(left.states[-1], shared, following_left),
                       spec.domain(following_left))
            left.states.append(following_left)
            mutant_choice = z3.Int(f"pd_choice_mutant{k}")
            mutant_step = StepVars(mutant_choice, shared.params)
            following_right = spec.state_vars(f"pdr{k}")
            solver.add(mutant.transition(right.states[-1], mutant_step, following_right),
                       spec.domain(following_right))
            right.states.append(following_right)
            right.steps.append(mutant_step)
            event = z3.Int(f"pd_event{k}")
            # bounded, or the finite-domain solver answers "unknown"
            solver.add(event >= 0, event < len(events))
            solver.add(event_of(spec, shared.choice, event),
                       event_of(mutant, mutant_choice, event))
            left_combo, right_combo = z3.Int(f"pd_combo_l{k}"), z3.Int(f"pd_combo_r{k}")
            free_left, free_right = z3.Bool(f"pd_free_l{k}"), z3.Bool(f"pd_free_r{k}")
            for encoding, choice_var, combo, free in ((spec, shared.choice, left_combo,
                                                       free_left),
                                                      (mutant, mutant_choice, right_combo,
                                                       free_right)):
                solver.add(combo >= 0, combo < len(combos))
                solver.add(*(z3.Implies(choice_var == choice.index,
                                        z3.And(combo == combos[rule_names(choice.rules)],
                                               free == touches(choice)))
                             for choice in encoding.choices))
            solver.add(z3.Or(left_combo == right_combo, free_left, free_right))
        probe = spec.step_vars(f"pd_probe{k}")
        probe_event = z3.Int(f"pd_probe_event{k}")
        solver.push()
        solver.add(*spec._param_bounds(probe.params))
        solver.add(probe_event >= 0, probe_event < len(events))
        solver.add(z3.Xor(enabled(spec, left.states[-1], probe_event, probe.params),
                          enabled(mutant, right.states[-1], probe_event, probe.params)))
        for _ in range(attempts):
            if solver.check() != z3.sat:
                break
            model = solver.model()
            steps = [spec.read_step(model, step_vars)[0] for step_vars in left.steps]
            which = model.eval(probe_event, model_completion=True).as_long()
            label, slot = next(key for key, index in events.items() if index == which)
            params = {}
            for variable in spec.system.labels[label].params:
                raw = model.eval(probe.params[(label, variable.name)], model_completion=True)
                params[variable.name] = z3.is_true(raw) if variable.sort == "bool" \
                    else raw.as_long()
            found = [*steps, Step(label, slot, params)]
            if confirm is None or confirm(found):
                solver.pop()
                return found
            # Not a real difference (the other side had another way): rule this one out.
            solver.add(z3.Not(z3.And(*_assignment(model, left.steps, probe_event, probe))))
        solver.pop()
    return None


def _assignment(model: z3.ModelRef, steps: Sequence[StepVars], probe_event, probe: StepVars,
                ) -> list[z3.BoolRef]:
    """The model's values of the product's event choices and parameters, as equalities."""
    fixed = [probe_event == model.eval(probe_event, model_completion=True)]
    for step_vars in [*steps, probe]:
        fixed.append(step_vars.choice == model.eval(step_vars.choice, model_completion=True))
        fixed += [var == model.eval(var, model_completion=True)
                  for var in step_vars.params.values()]
    return fixed


def _broken_invariant(spec: SystemSpec, mutant: SystemSpec, steps: Sequence[Step]) -> str:
    """An invariant of the spec some run of the mutant along `steps` breaks, or ""."""
    runs = [(dict(mutant.initial_values()), None)]
    for step in steps:
        following = []
        for values, _ in runs:
            for candidate, after in mutant.successors(values, step):
                pre, post = SystemView(spec, values, step), SystemView(spec, after, step)
                for invariant in spec.invariants:
                    if invariant.kind == "step" and not invariant.predicate(pre, step, post):
                        return invariant.name
                view = SystemView(spec, after)
                for invariant in spec.invariants:
                    if invariant.kind == "state" and not invariant.predicate(view):
                        return invariant.name
                following.append((after, candidate))
        runs = following
    return ""


def run_mutants(
    system: SystemSpec,
    encoding: Encoding,
    witnesses: Mapping[tuple[str, str], Trace],
    lemmas,  # checks.Lemmas: proved invariants of the spec
    *,
    depth: int,
    seconds: float,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
    mutants: Sequence[Mutant] | None = None,
    spacer_ms: int = 10_000,
    proved_lemmas: Sequence[Invariant] = (),
) -> list[MutantResult]:
    start = time.monotonic()
    # The spec's proved strengthening lemmas (`model_checks.lemmas`) hold in every state it
    # reaches, so they count like its invariants: a mutant run that breaks one has reached a
    # state the spec never does.
    system = replace(system, invariants=(*system.invariants, *proved_lemmas))
    mutants = list(mutants) if mutants is not None else generate(system, encoding,
                                                                  set(witnesses))
    built = {mutant.name: mutant.build(system) for mutant in mutants}
    results: dict[str, MutantResult] = {}
    # 1. Coverage replay.
    for mutant in mutants:
        began = time.monotonic()
        for (machine, rule), trace in sorted(witnesses.items()):
            ok, index = accepts(built[mutant.name], trace.steps)
            if not ok:
                results[mutant.name] = MutantResult(
                    mutant.name, mutant.operator, mutant.description, "killed",
                    "coverage replay",
                    f"refuses step {index + 1} of the witness of {machine}:{rule}, "
                    "which the spec accepts",
                    time.monotonic() - began, trace)
                break
    if progress:
        progress(f"mutants: {len(results)} killed by coverage replay")
    # 2. Divergence, one BMC over the spec for all the others.
    remaining = [mutant for mutant in mutants if mutant.name not in results]
    from model_checks.liveness import live_states

    # Observability: what guards and effects read. A variable only invariants read
    # cannot change a trace; whether the mutant still keeps the invariants is checked
    # separately below, by proof, before any mutant is called equivalent.
    live = live_states(encoding)
    targets = {mutant.name: divergence_target(encoding, built[mutant.name], mutant, live)
               for mutant in remaining}
    equivalent_proofs = _equivalent_by_lemmas(encoding, lemmas, targets)
    searched = [targets[name] for name in targets if name not in equivalent_proofs]
    began = time.monotonic()
    found = search(
        encoding, searched, depth, deadline=began + seconds,
        strengthen=lambda unrolling, k: lemmas.assume_on(encoding, unrolling, k),
        on_depth=(lambda k, left: progress(f"mutants: divergence BMC depth {k}, {left} left"))
        if progress else None,
    ) if searched else None
    share = (time.monotonic() - began) / max(len(searched), 1)
    bound = found.depth if found else 0
    hits = found.hits if found else {}
    for mutant in remaining:
        if mutant.name in equivalent_proofs:
            results[mutant.name] = MutantResult(
                mutant.name, mutant.operator, mutant.description, "equivalent",
                "proof", EQUIVALENT, share)

    # 3. Per mutant: a distinguishing trace, an invariant broken, or an equivalence proof;
    # shared out over the workers (forked: they inherit the mutants' closures).
    def follow_up(names: Sequence[str], say) -> dict[str, MutantResult]:
        out = {}
        for mutant in remaining:
            if mutant.name not in names:
                continue
            if say:
                say(f"mutants: {mutant.name}")
            out[mutant.name] = _follow_up(system, built[mutant.name], mutant, encoding,
                                          hits.get(("mutant", mutant.name)), targets,
                                          lemmas, bound, depth, share, spacer_ms)
        return out

    todo = [mutant.name for mutant in remaining if mutant.name not in equivalent_proofs]
    from model_checks.pipeline import _Job, _wait

    parts = [todo[index::workers] for index in range(max(workers, 1))]
    jobs = [_Job(f"mutants{index}", (lambda say, part=part: follow_up(part, say)),
                 (lambda part_name, message: progress(message)) if progress else None,
                 workers > 1)
            for index, part in enumerate(parts) if part]
    _wait(jobs)
    for job in jobs:
        results.update(job.result)
    # 4. No trace tells an "equivalent" mutant apart; it is equivalent only if it also
    # keeps every invariant and lemma of the spec (proved on the mutant by induction),
    # else it is killed by the invariant it breaks or, failing both, survives.
    for mutant in mutants:
        result = results[mutant.name]
        if result.status == "equivalent":
            results[mutant.name] = _keeps_the_invariants(system, built[mutant.name], mutant,
                                                         result, depth)
    if progress:
        progress(f"mutants done in {time.monotonic() - start:.1f}s")
    return [results[mutant.name] for mutant in mutants]


def _keeps_the_invariants(system: SystemSpec, mutated: SystemSpec, mutant: Mutant,
                          result: MutantResult, depth: int) -> MutantResult:
    from model_checks.invariants import k_induction

    began = time.monotonic()
    checked = replace(mutated, invariants=system.invariants)
    encoding = Encoding(checked)
    outcome = k_induction(encoding, checked.invariants, max_k=2)
    names = {invariant.name for invariant in checked.invariants}
    proved = set(outcome.proved)
    known = [invariant for invariant in checked.invariants if invariant.name in proved]
    for invariant in checked.invariants:
        if invariant.name not in proved:
            if spacer_prove(encoding, invariant, known, timeout_ms=5_000).answer == "proved":
                proved.add(invariant.name)
    if proved >= names:
        result.detail += ("; and every invariant and lemma of the spec is proved on the "
                          "mutant (k-induction, Spacer)")
        result.seconds += time.monotonic() - began
        return result
    caught = _invariant_bmc(system, mutated, mutant, depth, seconds=8.0)
    if caught is not None:
        caught.seconds += result.seconds + time.monotonic() - began
        return caught
    unproved = sorted(names - proved)
    return MutantResult(mutant.name, mutant.operator, mutant.description, "survived", "",
                        "no trace tells it apart, but the spec's invariants are not proved "
                        f"on it ({', '.join(unproved[:3])}) and BMC finds no violation",
                        result.seconds + time.monotonic() - began)


EQUIVALENT = ("in every state satisfying the proved invariants the mutated rows enable "
              "the same events, reach the same control states and the same values of every "
              "variable still live there, so no trace tells the mutant from the spec")


def _follow_up(system, mutated, mutant: Mutant, encoding: Encoding, hit: Hit | None,
               targets, lemmas, bound: int, depth: int, share: float,
               spacer_ms: int) -> MutantResult:
    if hit is None:
        began = time.monotonic()
        outcome = spacer_prove(encoding, None, (), timeout_ms=spacer_ms,
                               extra=lemmas.state, bad=targets[mutant.name].term)
        if outcome.answer == "proved":
            return MutantResult(mutant.name, mutant.operator, mutant.description,
                                "equivalent", "proof (Spacer)",
                                EQUIVALENT.replace("every state satisfying the proved "
                                                   "invariants", "every reachable state"),
                                share + time.monotonic() - began)
        result = MutantResult(mutant.name, mutant.operator, mutant.description, "survived",
                              "", f"no divergence within {bound} steps (Spacer: "
                              f"{outcome.answer})", share + time.monotonic() - began)
    else:
        result = _kill_at(system, mutated, mutant, encoding, hit, share)
    if result.status == "survived":
        caught = _invariant_bmc(system, mutated, mutant, depth, seconds=8.0)
        if caught is not None:
            caught.seconds += result.seconds
            return caught
    return result


def _kill_at(system, mutated, mutant: Mutant, encoding: Encoding, hit: Hit,
             share: float) -> MutantResult:
    began = time.monotonic()
    prefix = list(hit.trace.steps)

    def killed(steps: list[Step], how: str) -> MutantResult | None:
        spec_ok, spec_index = accepts(system, steps)
        mutant_ok, mutant_index = accepts(mutated, steps)
        if spec_ok == mutant_ok:
            return None
        if not spec_ok:
            detail = f"the mutant accepts a trace the spec refuses (at step {spec_index + 1})"
        else:
            detail = f"the mutant refuses a trace the spec accepts (at step {mutant_index + 1})"
        broken = _broken_invariant(system, mutated, steps)
        if broken:
            detail += f"; the mutant's run also breaks invariant {broken}"
        return MutantResult(mutant.name, mutant.operator, mutant.description, "killed",
                            how, detail, share + time.monotonic() - began,
                            Trace(steps, [() for _ in steps], []))

    probes = _probe_events(encoding, hit, mutant)
    for event in probes:
        outcome = distinguish(system, mutated, prefix, event)
        if outcome is not None:
            result = killed(outcome[0], "divergence (trace set changed)")
            if result is not None:
                return result
    # Same traces, but the mutant's step may already land in a state the spec's invariants
    # (or proved lemmas) rule out: a concrete run, cheaper than any search below.
    for event in probes:
        steps = [*prefix, event]
        broken = _broken_invariant(system, mutated, steps)
        if broken:
            return MutantResult(mutant.name, mutant.operator, mutant.description, "killed",
                                f"invariant {broken}",
                                f"the mutant's run breaks it after {len(steps)} steps",
                                share + time.monotonic() - began,
                                Trace(steps, [() for _ in steps], []))
    # The two tables reach different states on the same events; look a few events on
    # for one they answer differently, with both tables in one Z3 query.
    start_state = hit.trace.states[-1]
    mutant_encoding = Encoding(mutated)
    continuation = product_distinguish(
        encoding, mutant_encoding, start_state, start_state, depth=DISTINGUISH_DEPTH,
        changed=mutant.rules,
        confirm=lambda steps: accepts(system, [*prefix, *steps])[0]
        != accepts(mutated, [*prefix, *steps])[0])
    if continuation is not None:
        result = killed([*prefix, *continuation], "divergence (trace set changed)")
        if result is not None:
            return result
    # Same traces so far: maybe the mutant breaks an invariant a few steps on.
    path = _violation_from(system, mutant_encoding, start_state, depth=8, seconds=25.0)
    if path is not None:
        steps = [*prefix, *path[0]]
        broken = _broken_invariant(system, mutated, steps)
        if broken:
            return MutantResult(mutant.name, mutant.operator, mutant.description, "killed",
                                f"invariant {broken}",
                                f"the mutant's run breaks it after {len(steps)} steps",
                                share + time.monotonic() - began,
                                Trace(steps, [() for _ in steps], []))
    return MutantResult(mutant.name, mutant.operator, mutant.description, "survived", "",
                        f"diverges after {hit.depth} steps, but no event within 4 more "
                        "tells the two apart, and no invariant breaks within 8",
                        share + time.monotonic() - began)


def _violation_from(system: SystemSpec, mutant_encoding: Encoding, state: Mapping[str, Any],
                    depth: int, seconds: float = 8.0) -> tuple[list[Step], str] | None:
    """BMC on the mutant from a concrete state, for the spec's invariants."""
    from model_checks.invariants import invariant_violation_targets

    checked = replace(mutant_encoding.system, invariants=system.invariants)
    targets = invariant_violation_targets(mutant_encoding, checked.invariants)
    found = search(mutant_encoding, targets, depth, from_state=state,
                   deadline=time.monotonic() + seconds)
    if not found.hits:
        return None
    key, hit = min(found.hits.items(), key=lambda item: item[1].depth)
    return list(hit.trace.steps), key[1]


def _invariant_bmc(system: SystemSpec, mutated: SystemSpec, mutant: Mutant, depth: int,
                   seconds: float) -> MutantResult | None:
    """The last resort: the spec's invariants and deadlock freedom, checked by BMC on the
    mutant itself (no lemmas: what was proved of the spec says nothing of the mutant)."""
    from model_checks.invariants import invariant_violation_targets
    from model_checks.structural import deadlock_target, terminal_states

    began = time.monotonic()
    encoding = Encoding(mutated)
    checked = replace(mutated, invariants=system.invariants)
    targets = invariant_violation_targets(encoding, checked.invariants)
    targets.append(deadlock_target(encoding, terminal_states(encoding)))
    found = search(encoding, targets, depth, deadline=began + seconds)
    if not found.hits:
        return None
    key, hit = min(found.hits.items(), key=lambda item: item[1].depth)
    what = f"invariant {key[1]}" if key[0] == "invariant" else "deadlock"
    return MutantResult(mutant.name, mutant.operator, mutant.description, "killed", what,
                        f"BMC on the mutant: violated after {hit.depth} steps",
                        time.monotonic() - began, hit.trace)


def _probe_events(encoding: Encoding, hit: Hit, mutant: Mutant) -> list[Step]:
    """The affected events the probe's parameter values make, every slot."""
    events = []
    for label in sorted(mutant.labels):
        spec = encoding.system.labels.get(label)
        if spec is None:
            continue
        params = {param.name: hit.probe[(label, param.name)] for param in spec.params}
        slots = range(encoding.system.config.max_subflows) if spec.addressed else (None,)
        events.extend(Step(label, slot, params) for slot in slots)
    return events


def _equivalent_by_lemmas(encoding: Encoding, lemmas, targets: Mapping[str, Target]) -> set[str]:
    solver = z3.SolverFor("QF_FD")
    solver.add(encoding.domain(encoding.template), *lemmas.state)
    probe = encoding._param_bounds(encoding.template_params)
    solver.add(*probe)
    proved = set()
    for name, target in targets.items():
        solver.push()
        solver.add(target.term)
        if solver.check() == z3.unsat:
            proved.add(name)
        solver.pop()
    return proved


__all__ = ["Mutant", "generate", "run_mutants", "distinguish", "divergence_target",
           "rule_names"]
