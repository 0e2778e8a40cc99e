"""The whole spec, assembled: one connection machine, `Config.max_subflows` subflow slots,
the label alphabet and the named invariants (`build_system`), and the default `SYSTEM`.

Everything downstream (monitor, `transitions` machines, diagrams, Z3 model checks) starts
from a `SystemSpec` built here and steps it only through `SystemSpec.step_candidates`.
"""

from __future__ import annotations

from functools import lru_cache

from spec.connection import build_connection
from spec.core import Config, SystemSpec
from spec.labels import build_labels
from spec.subflow import build_subflow


def build_system(config: Config | None = None) -> SystemSpec:
    """The spec for `config` (default `Config()`); cached, a SystemSpec is immutable."""
    return _build_system(config if config is not None else Config())


@lru_cache(maxsize=16)
def _build_system(config: Config) -> SystemSpec:
    from spec.invariants import build_invariants

    return SystemSpec(
        connection=build_connection(config),
        subflow=build_subflow(config),
        labels=build_labels(config),
        invariants=build_invariants(config),
        config=config,
    )


SYSTEM = build_system()
