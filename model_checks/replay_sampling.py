"""Traces drawn from the spec by Hypothesis, for the conformance replay.

Each trace is a walk from the initial state: at every step Hypothesis draws one of the
events the spec enables there (`model_checks.explore.enabled_steps`, preferring events
that move the state, as the exploration does) and the walk takes it. The steps become
spec events (`spec.events.from_step`), the same vocabulary as the coverage witnesses.
`derandomize` makes the draw repeatable: the same count and seed give the same traces.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_checks.explore import enabled_steps
from model_checks.sampling import label_sources
from spec import events as ev
from spec.core import SystemSpec
from spec.system import SYSTEM

__all__ = ["sample_traces"]


def sample_traces(count: int, *, seed: int = 0, steps: int = 12,
                  system: SystemSpec = SYSTEM) -> list[list[ev.Event]]:
    """`count` distinct walks of at most `steps` events (fewer if the walk ends)."""
    if count <= 0:
        return []
    sources = label_sources(system)
    found: dict[tuple, list[ev.Event]] = {}

    @settings(max_examples=max(count * 2, 10), derandomize=True, database=None,
              deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data(), st.just(seed))
    def walk(data: st.DataObject, _seed: int) -> None:
        values = dict(system.initial_values())
        events: list[ev.Event] = []
        for _ in range(steps):
            enabled = enabled_steps(system, values, sources)
            # Path events (addresses and links coming and going) would take most draws;
            # the replay does not drive links yet, so walks keep to the other origins.
            moving = [step for step in enabled
                      if system.labels[step.label].origin != "path"
                      and any(after != values for _, after in system.successors(values, step))]
            if not moving:
                break
            step = data.draw(st.sampled_from(moving))
            following = [after for _, after in system.successors(values, step)]
            values = data.draw(st.sampled_from(following))
            events.append(ev.from_step(step))
        key = tuple(repr(event) for event in events)
        if events and key not in found:
            found[key] = events

    walk()
    return list(found.values())[:count]
