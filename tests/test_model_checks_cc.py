"""The LIA proofs (RFC 6356) hold for 2 and 3 subflows, and fail, with a counterexample,
when the formula is broken (no min cap, a wrong alpha) or a premise is dropped."""

from __future__ import annotations

import pytest

from model_checks.cc_proofs import prove, prove_all


def test_every_claim_is_proved_for_two_and_three_subflows():
    results = prove_all((2, 3))
    assert {(r.claim, r.subflows) for r in results} == {
        (claim, n) for claim in ("per_subflow", "aggregate_increase", "equilibrium")
        for n in (2, 3)}
    for result in results:
        assert result.result == "proved", result
        assert result.premises


@pytest.mark.parametrize("n", [2, 3])
def test_without_the_min_cap_a_subflow_outgrows_reno(n):
    result = prove("per_subflow", n, "no_cap")
    assert result.result == "violated"
    model = {name: float(value) for name, value in result.counterexample.items()}
    # the counterexample really breaks the claim: LIA's coupled increase beats Reno's
    assert any(model[f"coupled_{i}"] > model[f"reno_{i}"] for i in range(n))


@pytest.mark.parametrize("claim,variant", [
    ("aggregate_increase", "alpha_not_squared"),
    ("aggregate_increase", "alpha_max_by_rtt"),
    ("equilibrium", "alpha_not_squared"),
    ("equilibrium", "alpha_max_by_rtt"),
])
def test_a_wrong_alpha_breaks_do_no_harm(claim, variant):
    result = prove(claim, 2, variant)
    assert result.result == "violated"
    assert result.counterexample


def test_the_aggregate_claim_needs_equal_mss():
    result = prove("aggregate_increase", 2, equal_mss=False)
    assert result.result == "violated"
    values = result.counterexample
    assert values["mss0"] != values["mss1"]
