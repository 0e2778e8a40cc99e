"""Benchmark of `mptcp-ref check --mutants` on this machine: the seconds each part takes
and the total (not a timed test: it prints, it does not assert).

    .venv/bin/python -m bench.bench_check [--depth N] [--runs K] [--warm] [--json FILE]

Cold by default: no proof certificates from earlier runs, so Spacer proves everything
afresh. `--warm` keeps them between runs (in a temporary file), as `mptcp-ref check` does
in out/: the second and later runs re-check Spacer's lemmas instead of searching again.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

PARTS = {
    "encode": "Z3 encoding from the tables",
    "induction": "k-induction of the invariants",
    "coverage+spacer": "worker 1: coverage BMC (shortest witnesses), then Spacer",
    "spacer": "worker 2: Spacer (CHC) proofs, lemmas shared",
    "cc_proofs": "LIA proofs over the reals (main, meanwhile)",
    "hypothesis": "Hypothesis exploration (main, meanwhile)",
    "relative": "determinism and deadlock from the proved invariants",
    "closable": "CLOSED stays reachable (covering)",
    "bmc2": "BMC of what the proofs left open",
    "mutants": "mutants: replay, divergence BMC, follow-ups",
    "total": "whole check, wall clock",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--warm", action="store_true",
                        help="keep proof certificates between runs")
    arguments = parser.parse_args()

    import tempfile

    from model_checks.checks import CheckOptions
    from model_checks.pipeline import run_checks
    from spec.system import SYSTEM

    print(f"mptcp-ref check --mutants on {os.cpu_count()} CPUs, depth {arguments.depth}, "
          f"{'warm' if arguments.warm else 'cold'}")
    runs = []
    scratch = Path(tempfile.mkdtemp(prefix="bench-check-"))
    for run in range(arguments.runs):
        started = time.monotonic()
        certificates = scratch / "certificates.json" if arguments.warm else None
        report = run_checks(SYSTEM, CheckOptions(depth=arguments.depth, witness_dir=None,
                                                 counterexample_dir=None,
                                                 certificates=certificates), mutants=True)
        wall = time.monotonic() - started
        timings = dict(report.timings)
        timings["total"] = wall
        runs.append(timings)
        results: dict[str, int] = {}
        for row in report.properties:
            results[row.shown.split("(")[0]] = results.get(row.shown.split("(")[0], 0) + 1
        killed = sum(1 for m in report.mutants or [] if m.status == "killed")
        print(f"\nrun {run + 1}: {results}; mutants killed {killed}/{len(report.mutants or [])}"
              f" ({len(report.survivors)} surviving)")
        for part, seconds in timings.items():
            print(f"  {part:<16} {seconds:7.1f} s  {PARTS.get(part, '')}")
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
