"""The `mptcp-ref` command line: one subcommand for each thing DESIGN.md says users do.

Subcommands that are not built yet say so plainly and exit with status 2, so that a script
calling them can never mistake a placeholder for a result.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

app = typer.Typer(
    name="mptcp-ref",
    help="A formal-model-driven reference implementation of Multipath TCP (RFC 8684).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
lab_app = typer.Typer(help="Network-namespace labs against the Linux kernel.", no_args_is_help=True)
app.add_typer(lab_app, name="lab")

console = Console()
error_console = Console(stderr=True)

NOT_BUILT_EXIT_CODE = 2


def _not_built(command: str, issue: str) -> NoReturn:
    error_console.print(
        f"[bold red]mptcp-ref {command}: not built yet[/] ({issue}). Nothing was run."
    )
    raise typer.Exit(NOT_BUILT_EXIT_CODE)


@app.command()
def diagrams(
    out: Path = typer.Option(Path("diagrams"), "--out", help="Folder for the .dot and .svg files."),
) -> None:
    """Write connection.dot/.svg and subflow.dot/.svg, drawn from the spec tables."""
    from spec.diagrams import write_diagrams

    for written in write_diagrams(out):
        console.print(f"wrote {written}")


@app.command()
def check(
    depth: int = typer.Option(30, "--depth", help="Bound for bounded model checking."),
    json_report: Path | None = typer.Option(None, "--json", help="Write the JSON report here."),
    mutants: bool = typer.Option(False, "--mutants", help="Also run the seeded mutants."),
) -> None:
    """Prove or bounded-check every invariant of the spec, report coverage and mutants."""
    try:
        from model_checks.runner import run_check_command
    except ModuleNotFoundError as missing:
        if missing.name and missing.name.startswith("model_checks"):
            _not_built("check", "issue: model checks")
        raise
    raise typer.Exit(run_check_command(depth=depth, json_report=json_report, mutants=mutants))


@app.command()
def serve() -> None:
    """Run the userspace MPTCP endpoint as a listener on TUN devices."""
    _not_built("serve", "issue: the MPTCP endpoint")


@app.command()
def connect() -> None:
    """Run the userspace MPTCP endpoint as a client on TUN devices."""
    _not_built("connect", "issue: the MPTCP endpoint")


@lab_app.command("handshake")
def lab_handshake(
    port: int = typer.Option(8080, "--port", help="Port of the kernel's MPTCP listener."),
    pcap: Path | None = typer.Option(None, "--pcap", help="Write the exchanged packets here."),
) -> None:
    """Complete an MP_CAPABLE handshake (with one data byte) with the Linux kernel over TUN."""
    from impl.lab.handshake import run_handshake_demo

    raise typer.Exit(run_handshake_demo(port=port, pcap_path=pcap, console=console))


@lab_app.command("run")
def lab_run() -> None:
    """Run one transfer in a fresh lab and print JSON."""
    _not_built("lab run", "issue: userspace TCP subflows and the namespace lab")


@app.command()
def bench() -> None:
    """Benchmarks of this endpoint against the kernel, side by side."""
    _not_built("bench", "issues: TCP subflows / the MPTCP endpoint")


@app.command()
def replay() -> None:
    """Replay generated traces over real sockets and check them with the spec monitor."""
    _not_built("replay", "issue: conformance")


@app.command()
def monitor(pcap: Path = typer.Argument(..., help="Capture to check against the spec.")) -> None:
    """Check a pcap against the spec from one endpoint's point of view."""
    _not_built("monitor", "issue: conformance")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
