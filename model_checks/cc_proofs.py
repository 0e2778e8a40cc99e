"""Proofs about coupled congestion control (LIA, RFC 6356), with Z3 over the reals.

Independent of the spec tables. LIA's per-ACK increase is written here once, as
polynomial definitions over Z3 reals (every quotient q = a/b is a variable with q*b = a and
b > 0, which nonlinear arithmetic handles far better than division), for n = 2 and 3
subflows. Three claims, each for every positive window, RTT, MSS and ACK size:

1. `per_subflow` (RFC 6356 goal 2, per path): the increase LIA makes on subflow i for one
   ACK never exceeds what a single Reno flow with that window would make,
   acked * MSS_i / cwnd_i. Premises: cwnd_i, rtt_i, MSS_i, acked > 0, nothing else: it
   is the min(.., ..) cap of the formula.
2. `aggregate_increase` ("do no harm", on the rate of increase): with every subflow
   ACK-clocked (subflow i is acked cwnd_i bytes per rtt_i, in ACKs of any size), the
   connection's total throughput sum_i cwnd_i/rtt_i grows no faster than one Reno flow's
   on the path where Reno's grows fastest (MSS/rtt^2: the shortest RTT). Premises:
   positivity, the fluid ACK-clock model, and the SAME MSS on every subflow (with
   different MSS, Z3 finds a counterexample). ACK sizes may differ (they cancel).
3. `equilibrium` (RFC 6356 section 3, where alpha comes from): in the fluid equilibrium
   where each subflow's expected increase per packet equals its expected decrease
   (p_i * cwnd_i / 2, windows in packets), the total throughput sum_i cwnd_i/rtt_i is at
   most max_i of what one TCP gets on path i at that loss rate, sqrt(2/p_i)/rtt_i.
   Premises: positivity, windows in packets of one size (equal MSS), one packet per ACK,
   the small-loss approximation (1 - p_i ~ 1) in the balance equation.

Method: where a claim has a chain of lemmas, each lemma is proved by Z3 from a subset of
the definitions or from earlier lemmas only, which nonlinear real arithmetic handles where
the whole claim at once times out (claim 2 for n = 3; claim 1, whose chain is the single
step "the min cap alone implies it"). The chain of claim 2 is the textbook argument:
sum_i y_i <= R*S and max_i y_i <= R*S, with y_i = cwnd_i/rtt_i^2, R = max_i 1/rtt_i,
S = sum_i cwnd_i/rtt_i. Otherwise, or if the chain fails, Z3 is asked directly for a
counterexample to the whole claim.

Seeded faults (`variant`): no min cap, alpha with an unsquared denominator, alpha with
max_i(cwnd_i/rtt_i); each breaks some claim and Z3 returns the counterexample.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import z3

VARIANTS = ("rfc6356", "no_cap", "alpha_not_squared", "alpha_max_by_rtt")


@dataclass
class ProofResult:
    claim: str
    subflows: int
    variant: str
    result: str  # "proved" | "violated" | "unknown"
    method: str
    seconds: float
    premises: list[str]
    counterexample: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        suffix = "" if self.variant == "rfc6356" else f" [{self.variant}]"
        return f"cc_lia_{self.claim}_n{self.subflows}{suffix}"


class LiaModel:
    """The variables and polynomial definitions of LIA for n subflows."""

    def __init__(self, n: int, variant: str = "rfc6356", equal_mss: bool = True,
                 packets: bool = False) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}")

        def reals(name: str) -> list[z3.ArithRef]:
            return [z3.Real(f"{name}{i}") for i in range(n)]

        self.n = n
        self.cwnd, self.rtt = reals("cwnd"), reals("rtt")
        if packets:  # windows in packets: MSS = 1, one packet per ACK
            self.mss = [z3.RealVal(1)] * n
            self.acked = [z3.RealVal(1)] * n
        else:
            self.mss, self.acked = reals("mss"), reals("acked")
        self.x = reals("x_")  # cwnd_i / rtt_i
        self.y = reals("y_")  # cwnd_i / rtt_i^2
        self.u = reals("u_")  # 1 / rtt_i
        self.coupled = reals("coupled_")  # alpha * acked_i * MSS_i / cwnd_total
        self.reno = reals("reno_")  # acked_i * MSS_i / cwnd_i
        self.inc = reals("inc_")  # LIA's increase of cwnd_i for one ACK
        self.total, self.rate_sum, self.peak, self.alpha, self.max_u = z3.Reals(
            "cwnd_total rate_sum peak alpha max_u")
        defs: list[z3.BoolRef] = [v > 0 for v in (*self.cwnd, *self.rtt)]
        if not packets:
            defs += [v > 0 for v in (*self.mss, *self.acked)]
            if equal_mss:
                defs += [self.mss[i] == self.mss[0] for i in range(1, n)]
        for i in range(n):
            defs += [self.x[i] * self.rtt[i] == self.cwnd[i],
                     self.y[i] * self.rtt[i] == self.x[i],
                     self.u[i] * self.rtt[i] == 1]
        defs += [self.total == z3.Sum(*self.cwnd), self.rate_sum == z3.Sum(*self.x)]
        peak_of = self.x if variant == "alpha_max_by_rtt" else self.y
        defs += _is_max(self.peak, peak_of) + _is_max(self.max_u, self.u)
        if variant == "alpha_not_squared":
            defs.append(self.alpha * self.rate_sum == self.total * self.peak)
        else:  # RFC 6356: alpha = cwnd_total * max_i(cwnd_i/rtt_i^2) / (sum_i cwnd_i/rtt_i)^2
            defs.append(self.alpha * self.rate_sum * self.rate_sum == self.total * self.peak)
        for i in range(n):
            defs += [self.coupled[i] * self.total == self.alpha * self.acked[i] * self.mss[i],
                     self.reno[i] * self.cwnd[i] == self.acked[i] * self.mss[i]]
            if variant == "no_cap":
                defs.append(self.inc[i] == self.coupled[i])
            else:
                defs.append(self.inc[i] == z3.If(self.coupled[i] <= self.reno[i],
                                                 self.coupled[i], self.reno[i]))
        self.definitions = defs


def _is_max(result: z3.ArithRef, values: Sequence[z3.ArithRef]) -> list[z3.BoolRef]:
    return [*(result >= value for value in values), z3.Or(*(result == value for value in values))]


def _solve(premises: Sequence[z3.BoolRef], goal: z3.BoolRef, timeout_ms: int,
           ) -> tuple[str, dict[str, str]]:
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(*premises)
    solver.add(z3.Not(goal))
    answer = solver.check()
    if answer == z3.unsat:
        return "proved", {}
    if answer == z3.sat:
        model = solver.model()
        values = {decl.name(): _readable(model[decl]) for decl in model.decls()
                  if decl.arity() == 0}
        return "violated", dict(sorted(values.items()))
    return "unknown", {}


def _readable(value: z3.ExprRef) -> str:
    if z3.is_rational_value(value):
        return f"{float(value.as_fraction()):.6g}"
    if z3.is_algebraic_value(value):
        return value.approx(6).as_decimal(6)
    return str(value)


# ---------------------------------------------------------------------------------------
# The claims: (premises, goal) plus, where direct search gives up, a lemma chain.


@dataclass
class Claim:
    goal: z3.BoolRef
    premises: list[z3.BoolRef]
    described: list[str]
    lemmas: Callable[[], list[tuple[str, list[z3.BoolRef], z3.BoolRef]]] | None = None


def per_subflow(n: int, variant: str = "rfc6356") -> Claim:
    lia = LiaModel(n, variant, equal_mss=False)
    goal = z3.And(*(lia.inc[i] <= lia.reno[i] for i in range(n)))

    def lemmas() -> list[tuple[str, list[z3.BoolRef], z3.BoolRef]]:
        # The cap alone carries the claim: fewer premises, the same goal, so proving it
        # from the increase's definition proves it from all of them.
        caps = [definition for definition in lia.definitions
                if any(z3.eq(definition.arg(0), inc) for inc in lia.inc)
                if z3.is_eq(definition)]
        return [("inc_i <= reno_i from the min cap", caps, goal)]

    return Claim(goal, lia.definitions,
                 ["cwnd_i > 0, rtt_i > 0, MSS_i > 0, acked > 0 (nothing else)"],
                 lemmas if variant != "no_cap" else None)


def aggregate_increase(n: int, variant: str = "rfc6356", equal_mss: bool = True) -> Claim:
    lia = LiaModel(n, variant, equal_mss=equal_mss)
    growth = [z3.Real(f"growth_{i}") for i in range(n)]  # d(cwnd_i/rtt_i)/dt
    reno_growth = [z3.Real(f"reno_growth_{i}") for i in range(n)]  # Reno alone on path i
    best = z3.Real("reno_best")
    premises = list(lia.definitions)
    for i in range(n):
        # cwnd_i/(acked_i*rtt_i) ACKs per second, inc_i each, throughput = cwnd/rtt:
        # growth_i = cwnd_i * inc_i / (acked_i * rtt_i^2) = y_i * inc_i / acked_i
        premises.append(growth[i] * lia.acked[i] == lia.y[i] * lia.inc[i])
        premises.append(reno_growth[i] * lia.rtt[i] * lia.rtt[i] == lia.mss[i])
    premises += _is_max(best, reno_growth)
    total_growth = z3.Sum(*growth)
    described = ["cwnd_i > 0, rtt_i > 0, MSS_i > 0, acked_i > 0",
                 "ACK clocking: subflow i is acked cwnd_i bytes per rtt_i (fluid model)"]
    described.append("MSS_i equal on every subflow" if equal_mss
                     else "(MSS_i may differ: not the RFC's premise)")

    def lemmas() -> list[tuple[str, list[z3.BoolRef], z3.BoolRef]]:
        # Each step: (name, premises, goal); "premises" are the definitions or earlier
        # lemmas only, so the chain proves the claim if every step is unsat-checked.
        y_sum = z3.Sum(*lia.y)
        mss = lia.mss[0]
        steps: list[tuple[str, list[z3.BoolRef], z3.BoolRef]] = []
        facts: dict[str, z3.BoolRef] = {}

        def step(name: str, using: list[z3.BoolRef], goal: z3.BoolRef) -> z3.BoolRef:
            steps.append((name, using, goal))
            facts[name] = goal
            return goal

        alpha_times = lia.alpha * mss
        positive = step("positive", premises,
                        z3.And(lia.rate_sum > 0, lia.total > 0, mss > 0, lia.max_u > 0,
                               lia.peak > 0, y_sum > 0, *(x > 0 for x in lia.x)))
        per_path, y_bounds = [], []
        for i in range(n):
            per_path.append(step(f"growth_{i}*cwnd_total <= y_{i}*alpha*MSS", premises,
                                 growth[i] * lia.total <= lia.y[i] * alpha_times))
            y_bounds.append(step(f"y_{i} <= max_u*x_{i}", premises,
                                 lia.y[i] <= lia.max_u * lia.x[i]))
        reno_best = step("reno_best >= MSS*max_u^2", premises,
                         best >= mss * lia.max_u * lia.max_u)
        rate_sum_def = lia.rate_sum == z3.Sum(*lia.x)
        peak_bound = step("max_y <= max_u*S",
                          [positive, rate_sum_def, *y_bounds, *_is_max(lia.peak, lia.y)],
                          lia.peak <= lia.max_u * lia.rate_sum)
        sum_bound = step("sum_y <= max_u*S", [positive, rate_sum_def, *y_bounds],
                         y_sum <= lia.max_u * lia.rate_sum)
        product = step("max_y*sum_y <= (max_u*S)^2", [positive, peak_bound, sum_bound],
                       lia.peak * y_sum
                       <= lia.max_u * lia.max_u * lia.rate_sum * lia.rate_sum)
        summed = step("sum_growth*cwnd_total <= alpha*MSS*sum_y", [positive, *per_path],
                      total_growth * lia.total <= alpha_times * y_sum)
        alpha_def = lia.alpha * lia.rate_sum * lia.rate_sum == lia.total * lia.peak
        squared = lia.rate_sum * lia.rate_sum
        scaled = step("times S^2", [positive, summed, alpha_def],
                      total_growth * lia.total * squared <= lia.total * mss * lia.peak * y_sum)
        bounded = step("bound by max_u", [positive, scaled, product],
                       total_growth * lia.total * squared
                       <= lia.total * mss * lia.max_u * lia.max_u * squared)
        step("claim", [positive, bounded, reno_best], total_growth <= best)
        return steps

    return Claim(total_growth <= best, premises, described,
                 lemmas if variant == "rfc6356" and equal_mss else None)


def equilibrium(n: int, variant: str = "rfc6356") -> Claim:
    lia = LiaModel(n, variant, packets=True)
    tcp_window_sq = [z3.Real(f"tcp_window_sq_{i}") for i in range(n)]  # 2/p_i
    premises = list(lia.definitions)
    # balance p_i*cwnd_i/2 = inc_i  =>  2/p_i = cwnd_i/inc_i
    premises += [tcp_window_sq[i] * lia.inc[i] == lia.cwnd[i] for i in range(n)]
    # sum x_i <= max_i sqrt(2/p_i)/rtt_i  <=>  some i: (sum x_i)^2 * rtt_i^2 <= 2/p_i
    goal = z3.Or(*(lia.rate_sum * lia.rate_sum * lia.rtt[i] * lia.rtt[i] <= tcp_window_sq[i]
                   for i in range(n)))
    return Claim(goal, premises, [
        "cwnd_i > 0, rtt_i > 0",
        "windows in packets of one size (equal MSS), one packet per ACK",
        "fluid equilibrium: p_i * cwnd_i / 2 = increase per packet (1 - p_i ~ 1)",
    ])


CLAIMS: dict[str, Callable[..., Claim]] = {
    "per_subflow": per_subflow,
    "aggregate_increase": aggregate_increase,
    "equilibrium": equilibrium,
}


def prove(claim: str, n: int, variant: str = "rfc6356", *, direct_timeout_ms: int = 10_000,
          lemma_timeout_ms: int = 20_000, **options) -> ProofResult:
    start = time.monotonic()
    built = CLAIMS[claim](n, variant, **options)
    result, counterexample, method = "unknown", {}, ""
    if built.lemmas is not None:
        # The chain first: every step is a small query, fast where the whole is hard.
        steps = built.lemmas()
        answers = [_solve(using, goal, lemma_timeout_ms)[0] for _, using, goal in steps]
        if all(answer == "proved" for answer in answers):
            result = "proved"
            method = f"Z3, chain of {len(steps)} lemma(s)"
        else:
            failed = [name for (name, _, _), answer in zip(steps, answers, strict=True)
                      if answer != "proved"]
            method = f"lemma chain failed at: {', '.join(failed)}; "
    if result != "proved":
        result, counterexample = _solve(built.premises, built.goal, direct_timeout_ms)
        method += "Z3 (nonlinear reals)"
    return ProofResult(claim, n, variant, result, method, time.monotonic() - start,
                       built.described, counterexample)


def prove_all(subflows: Sequence[int] = (2, 3)) -> list[ProofResult]:
    """Every claim for every n, on the RFC 6356 formula."""
    return [prove(claim, n) for claim in CLAIMS for n in subflows]
