"""`mptcp-ref check`: run every check of the spec with a progress display, print the
table (property, method, depth or proof, seconds, result) and the counterexamples, write
the JSON report, and return the exit code (non-zero on any violation or surviving
mutant).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from model_checks.checks import CheckOptions
from model_checks.pipeline import run_checks
from model_checks.results import BOUNDED, PROVED, VIOLATED, Report

STYLE = {PROVED: "green", BOUNDED: "yellow", VIOLATED: "bold red"}


def run_check_command(depth: int, json_report: Path | None, mutants: bool,
                      console: Console | None = None, **options) -> int:
    """What `mptcp-ref check` does; returns the exit code."""
    from spec.system import SYSTEM

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=150)  # a log file: do not squeeze the table
    check_options = CheckOptions(depth=depth, **options)
    status: dict[str, str] = {}
    started = time.monotonic()

    def render() -> Table:
        table = Table.grid(padding=(0, 2))
        elapsed = time.monotonic() - started
        table.add_row(Text(f"mptcp-ref check  {elapsed:5.1f}s", style="bold"))
        for part, message in status.items():
            table.add_row(Text(f"  {part:<10} {message}"))
        return table

    with Live(render(), console=console, refresh_per_second=4, transient=True) as live:
        def progress(part: str, message: str) -> None:
            status[part] = message
            live.update(render())

        report = run_checks(SYSTEM, check_options, mutants=mutants, progress=progress)

    print_report(report, console)
    if json_report is not None:
        json_report.parent.mkdir(parents=True, exist_ok=True)
        json_report.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
        console.print(f"JSON report: {json_report}")
    return report.exit_code()


def print_report(report: Report, console: Console) -> None:
    table = Table(title="mptcp-ref check", show_lines=False)
    for column in ("property", "method", "depth / proof", "seconds", "result"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for row in report.properties:
        depth = "proof" if row.result == PROVED and row.depth is None else (
            "-" if row.depth is None else str(row.depth))
        table.add_row(row.name, row.method, depth, f"{row.seconds:.1f}",
                      Text(row.shown, style=STYLE.get(row.result, "")))
    console.print(table)
    coverage = report.coverage
    if coverage is not None:
        dead = ", ".join(f"{w.machine}:{w.rule}" for w in coverage.dead) or "none"
        console.print(f"coverage: {len(coverage.witnesses) - len(coverage.dead)}/"
                      f"{len(coverage.witnesses)} rules witnessed "
                      f"(witness traces in {coverage.folder}); dead: {dead}")
    if report.mutants is not None:
        killed = sum(1 for m in report.mutants if m.status == "killed")
        equivalent = [m for m in report.mutants if m.status == "equivalent"]
        scored = len(report.mutants) - len(equivalent)
        console.print(f"mutants: {killed}/{scored} killed"
                      + (f", {len(equivalent)} equivalent (proved, not scored)"
                         if equivalent else ""))
        mutants_table = Table(show_header=True)
        for column in ("mutant", "status", "caught by", "how"):
            mutants_table.add_column(column)
        for mutant in report.mutants:
            style = {"killed": "green", "equivalent": "cyan"}.get(mutant.status, "bold red")
            mutants_table.add_row(mutant.name, Text(mutant.status, style=style),
                                  mutant.killed_by, mutant.detail)
        console.print(mutants_table)
    for row in report.properties:
        if row.result != VIOLATED:
            continue
        console.print(f"\n[bold red]{row.name} violated[/]"
                      + (f" after {row.depth} steps" if row.depth is not None else ""))
        for note in row.notes:
            console.print(f"  {note}")
        if row.counterexample is not None:
            for line in row.counterexample.lines():
                console.print(f"  {line}")
            last = row.counterexample.states[-1] if row.counterexample.states else {}
            if last:
                console.print("  final state: " + _changed(last, row.counterexample.states[0]))
        if row.trace_file:
            console.print(f"  trace file: {row.trace_file}")
    timings = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in report.timings.items())
    console.print(f"\ntimings: {timings}")


def _changed(state: dict, initial: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in state.items()
                     if key.endswith(".state") or value != initial.get(key))
