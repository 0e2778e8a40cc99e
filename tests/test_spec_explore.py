"""Explicit-state sanity checks of the tables (before the Z3 model checks): every
invariant holds on every state reachable in 5 steps and on every transition there, no two
rules of a machine are enabled together without a shared `choice` tag, and every rule
fires somewhere (breadth-first search, the textbook scenarios, and seeded
coverage-guided random walks from the scenarios' states)."""

from __future__ import annotations

import pytest

from spec.core import Config, SystemView
from spec.explore import Exploration, explore, random_walks
from spec.machines import SystemRunner
from spec.scenarios import SCENARIOS
from spec.system import SYSTEM, build_system

# 3 slots under a limit of 2, so the subflow limit can bite; 2 data units, 2 address IDs.
SMALL = build_system(Config(max_subflows=3, subflow_limit=2, max_bytes=2, max_address_ids=2))


@pytest.fixture(scope="module")
def breadth_first() -> Exploration:
    return explore(SMALL, depth=5)


def test_invariants_hold_on_every_state_within_five_steps(breadth_first):
    assert not breadth_first.truncated
    assert len(breadth_first.states) > 1000
    assert breadth_first.violations == []


def test_nondeterminism_is_always_a_declared_choice(breadth_first):
    assert breadth_first.nondeterminism == set()


def test_every_rule_fires_somewhere(breadth_first):
    fired = set(breadth_first.fired)
    starts = []
    for scenario in SCENARIOS:
        runner = SystemRunner()
        for event in scenario.events:
            assert runner.feed(event)
            starts.append(dict(runner.values))
        fired |= set(runner.fired)
    every_rule = {rule.name for _, rule in SYSTEM.all_rules()}
    walks = Exploration(fired=fired)
    for seed in range(10):  # batches of seeded walks until every rule fired (or give up)
        walks = random_walks(SYSTEM, walks=20, depth=25, seed=seed, result=walks,
                             start=starts)
        if walks.fired >= every_rule:
            break
    assert walks.violations == []
    assert sorted(every_rule - walks.fired) == []


def _state(**changes):
    values = SMALL.initial_values()
    values.update(changes)
    return SystemView(SMALL, values)


@pytest.mark.parametrize("name,changes", [
    ("closed_connection_has_no_live_subflow",
     {"conn.state": "CLOSED", "sf0.state": "ESTABLISHED"}),
    ("fallback_single_subflow",
     {"conn.state": "ESTABLISHED", "conn.fallback": True, "sf0.state": "ESTABLISHED",
      "sf1.state": "ESTABLISHED"}),
    ("keys_before_join", {"conn.state": "ESTABLISHED", "sf1.state": "ESTABLISHED"}),
    ("data_acked_within_sent", {"conn.snd_una": 2, "conn.snd_nxt": 1, "conn.written": 2}),
    ("delivered_prefix_of_received", {"conn.delivered": 1}),
    ("subflows_within_limit", {"conn.state": "ESTABLISHED", "sf0.state": "ESTABLISHED",
                               "sf1.state": "ESTABLISHED", "sf2.state": "SYN_SENT"}),
    ("mptcp_established_has_keys", {"conn.state": "ESTABLISHED"}),
])
def test_state_invariants_are_not_vacuous(name, changes):
    invariant = next(inv for inv in SMALL.invariants if inv.name == name)
    assert invariant.predicate(_state()) is True
    assert not invariant.predicate(_state(**changes))
