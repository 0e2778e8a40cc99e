"""The `transitions` machines built from the tables agree with the monitor on every
scenario, and are plain machines made of the table's rules only."""

from __future__ import annotations

import pytest

from spec.events import to_steps
from spec.machines import SystemRunner
from spec.monitor import Monitor, freeze
from spec.scenarios import SCENARIOS
from spec.system import SYSTEM

IDS = [scenario.name for scenario in SCENARIOS]


def _run(events):
    """Feed events to the runner and the monitor side by side; the runner's state must be
    one the monitor allows. Returns the index where both refused, or None."""
    runner, monitor = SystemRunner(), Monitor()
    for index, event in enumerate(events):
        ran = runner.feed(event)
        watched = monitor.feed(event)
        assert ran == watched, (index, event)
        if not ran:
            return index, runner
        assert freeze(runner.values) in monitor.states, index
        assert runner.states() == {key.split(".")[0]: value for key, value
                                   in runner.values.items() if key.endswith(".state")}
    return None, runner


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_machines_agree_with_the_monitor(scenario):
    refused, runner = _run(scenario.events)
    assert refused is None
    assert len(runner.fired) >= sum(len(to_steps(event)) for event in scenario.events)
    refused, _ = _run(scenario.broken)
    assert refused == scenario.broken_at


def test_machines_have_only_the_table_rules():
    runner = SystemRunner()
    for machine, spec in ((runner.connection_machine, SYSTEM.connection),
                          (runner.subflow_machine, SYSTEM.subflow)):
        assert set(machine.events) == {rule.name for rule in spec.rules}
        assert set(machine.states) == set(spec.states)
        assert not any(name.startswith("to_") for name in machine.events)


def test_runner_fires_rules_in_step_order():
    scenario = SCENARIOS[0]
    runner = SystemRunner()
    for event in scenario.events[:3]:
        assert runner.feed(event)
    assert runner.fired == ["conn_connect", "sf_connect_mpc", "conn_synack_mpc",
                            "sf_synack_mpc"]
    assert runner.states()["conn"] == "ESTABLISHED"
    assert runner.values["conn.peer_key"] is True
    # a refused step changes nothing
    before = dict(runner.values)
    assert not runner.step(to_steps(scenario.events[0])[0])
    assert runner.values == before
