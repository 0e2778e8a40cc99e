"""Plain result records of the checks (picklable, so worker processes can return them),
and the JSON report built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_checks.bmc import Trace

PROVED, BOUNDED, VIOLATED, UNKNOWN = "proved", "bounded", "violated", "unknown"


@dataclass
class PropertyResult:
    """One row of the report: a named property, how it was checked, what came out."""

    name: str
    group: str  # "invariant" | "structural" | "coverage" | "congestion control" | "exploration"
    method: str
    result: str  # proved | bounded | violated | unknown
    depth: int | None  # BMC depth reached, or the counterexample's length; None for proofs
    seconds: float
    counterexample: Trace | None = None
    notes: list[str] = field(default_factory=list)
    trace_file: str | None = None

    @property
    def shown(self) -> str:
        return f"bounded({self.depth})" if self.result == BOUNDED else self.result

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "group": self.group,
            "method": self.method,
            "result": self.shown,
            "depth": self.depth,
            "seconds": round(self.seconds, 3),
        }
        if self.notes:
            out["notes"] = self.notes
        if self.counterexample is not None:
            out["counterexample"] = self.counterexample.as_json()
        if self.trace_file:
            out["trace_file"] = self.trace_file
        return out


@dataclass
class Witness:
    machine: str
    rule: str
    depth: int | None  # None: dead (no witness)
    trace: Trace | None
    trace_file: str | None = None
    explanation: str = ""


@dataclass
class CoverageResult:
    witnesses: list[Witness]
    depth: int  # every dead rule has no witness up to this depth
    seconds: float
    folder: str | None = None
    unreached_states: list[str] = field(default_factory=list)

    @property
    def dead(self) -> list[Witness]:
        return [witness for witness in self.witnesses if witness.depth is None]

    def as_json(self) -> dict[str, Any]:
        return {
            "rules": len(self.witnesses),
            "witnessed": len(self.witnesses) - len(self.dead),
            "dead": [f"{w.machine}:{w.rule}" for w in self.dead],
            "explained": {f"{w.machine}:{w.rule}": w.explanation for w in self.dead
                          if w.explanation},
            "depth": self.depth,
            "longest_witness": max((w.depth or 0 for w in self.witnesses), default=0),
            "folder": self.folder,
            "witnesses": {f"{w.machine}:{w.rule}": {"length": w.depth, "file": w.trace_file}
                          for w in self.witnesses if w.depth is not None},
            "seconds": round(self.seconds, 3),
        }


@dataclass
class MutantResult:
    name: str
    operator: str
    description: str
    status: str  # "killed" | "survived" | "equivalent"
    killed_by: str = ""
    detail: str = ""
    seconds: float = 0.0
    trace: Trace | None = None

    def as_json(self) -> dict[str, Any]:
        out = {"name": self.name, "operator": self.operator, "description": self.description,
               "status": self.status, "killed_by": self.killed_by, "detail": self.detail,
               "seconds": round(self.seconds, 3)}
        if self.trace is not None:
            out["trace"] = self.trace.as_json()
        return out


@dataclass
class Report:
    properties: list[PropertyResult] = field(default_factory=list)
    coverage: CoverageResult | None = None
    mutants: list[MutantResult] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def violations(self) -> list[PropertyResult]:
        return [p for p in self.properties if p.result == VIOLATED]

    @property
    def survivors(self) -> list[MutantResult]:
        return [m for m in self.mutants or [] if m.status == "survived"]

    def exit_code(self) -> int:
        return 1 if self.violations or self.survivors else 0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "properties": [p.as_json() for p in self.properties],
            "coverage": self.coverage.as_json() if self.coverage else None,
            "mutants": None,
            "timings": {name: round(value, 3) for name, value in self.timings.items()},
            "config": self.config,
        }
        if self.mutants is not None:
            killed = [m for m in self.mutants if m.status == "killed"]
            equivalent = [m for m in self.mutants if m.status == "equivalent"]
            scored = len(self.mutants) - len(equivalent)
            out["mutants"] = {
                "total": len(self.mutants),
                "killed": len(killed),
                "equivalent": [m.name for m in equivalent],
                "survivors": [m.name for m in self.survivors],
                "score": round(len(killed) / scored, 4) if scored else 1.0,
                "details": [m.as_json() for m in self.mutants],
            }
        return out


def relative(path: Path | str | None) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
