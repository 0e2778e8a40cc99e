"""The `mptcp-ref` command line: one subcommand for each thing DESIGN.md says users do.

Subcommands that are not built yet say so plainly and exit with status 2, so that a script
calling them can never mistake a placeholder for a result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

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


AddressOption = Annotated[list[str], typer.Option(
    "--address", help="Our address and prefix, e.g. 198.18.1.2/24 (repeat: one TUN each).")]
ModeOption = Annotated[str, typer.Option("--mode", help="sink, source, echo or file.")]
FileOption = Annotated[Path | None, typer.Option("--file", help="--mode file: bytes to send.")]
OutputOption = Annotated[Path | None, typer.Option(
    "--output", help="--mode sink: write the bytes received here.")]
SizeOption = Annotated[int, typer.Option("--size", help="--mode source: bytes to send.")]
SeedOption = Annotated[int, typer.Option("--seed", help="--mode source: payload seed.")]
TimeoutOption = Annotated[float | None, typer.Option(
    "--timeout", help="Seconds any one socket call may wait (default: forever).")]
ChecksumsOption = Annotated[bool, typer.Option("--checksums", help="Ask for DSS checksums.")]
SubflowsOption = Annotated[int, typer.Option("--max-subflows", help="Subflows per connection.")]
PcapOption = Annotated[Path | None, typer.Option("--pcap", help="Capture our TUN packets.")]
EventsOption = Annotated[Path | None, typer.Option("--events", help="JSON-lines event log.")]
JsonOption = Annotated[Path | None, typer.Option("--json", help="Write the summary here.")]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No live display.")]


def _run_endpoint(options: object, command: str) -> None:
    """Shared by serve and connect: usage errors exit 2, a failed transfer 1, Ctrl-C or
    SIGTERM 130 (the TUN devices are gone by then)."""
    import signal

    from impl.endpoint import EndpointSetupError, EndpointUsageError, run_endpoint

    def terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        summary = run_endpoint(options, console)
    except EndpointUsageError as error:
        error_console.print(f"[bold red]mptcp-ref {command}:[/] {error}")
        raise typer.Exit(2) from None
    except EndpointSetupError as error:
        error_console.print(f"[bold red]mptcp-ref {command}:[/] {error}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        error_console.print(f"mptcp-ref {command}: interrupted; the TUN devices were removed")
        raise typer.Exit(130) from None
    for entry in summary["connections"]:
        console.print(f"{entry['peer']}: sent {entry['bytes_sent']:,} B, received "
                      f"{entry['bytes_received']:,} B in {entry['seconds']:.2f} s over "
                      f"{len(entry['subflows'])} subflow(s)"
                      + (f"; error: {entry['error']}" if entry["error"] else ""),
                      highlight=False)
    if not summary["ok"]:
        error_console.print(f"mptcp-ref {command}: failed: {summary['error']}")
    raise typer.Exit(0 if summary["ok"] else 1)


@app.command()
def serve(
    address: AddressOption,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    mode: ModeOption = "sink",
    file: FileOption = None,
    output: OutputOption = None,
    size: SizeOption = 1 << 20,
    seed: SeedOption = 0,
    count: Annotated[int, typer.Option(
        "--count", help="Connections to serve before exiting (0: until Ctrl-C).")] = 1,
    timeout: TimeoutOption = None,
    checksums: ChecksumsOption = False,
    max_subflows: SubflowsOption = 8,
    pcap: PcapOption = None,
    events: EventsOption = None,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run the userspace MPTCP endpoint as a listener on TUN devices (docs/api.md)."""
    from impl.endpoint import EndpointOptions

    _run_endpoint(EndpointOptions(
        command="serve", addresses=address, port=port, mode=mode, file=file, output=output,
        size=size, seed=seed, count=count, timeout=timeout, checksums=checksums,
        max_subflows=max_subflows, pcap=pcap, events=events, json_path=json_path,
        quiet=quiet), "serve")


@app.command()
def connect(
    host: Annotated[str, typer.Argument(help="The peer's address (a lab address).")],
    port: Annotated[int, typer.Argument(help="The peer's port.")],
    address: AddressOption,
    mode: ModeOption = "source",
    file: FileOption = None,
    output: OutputOption = None,
    size: SizeOption = 1 << 20,
    seed: SeedOption = 0,
    timeout: TimeoutOption = None,
    checksums: ChecksumsOption = False,
    max_subflows: SubflowsOption = 8,
    pcap: PcapOption = None,
    events: EventsOption = None,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run the userspace MPTCP endpoint as a client on TUN devices (docs/api.md)."""
    from impl.endpoint import EndpointOptions

    _run_endpoint(EndpointOptions(
        command="connect", addresses=address, port=port, mode=mode, host=host, file=file,
        output=output, size=size, seed=seed, timeout=timeout, checksums=checksums,
        max_subflows=max_subflows, pcap=pcap, events=events, json_path=json_path,
        quiet=quiet), "connect")


@lab_app.command("handshake")
def lab_handshake(
    port: int = typer.Option(8080, "--port", help="Port of the kernel's MPTCP listener."),
    pcap: Path | None = typer.Option(None, "--pcap", help="Write the exchanged packets here."),
) -> None:
    """Complete an MP_CAPABLE handshake (with one data byte) with the Linux kernel over TUN."""
    from impl.lab.handshake import run_handshake_demo

    raise typer.Exit(run_handshake_demo(port=port, pcap_path=pcap, console=console))


@lab_app.command("run")
def lab_run(
    size: Annotated[int, typer.Option("--size", min=0, help="Bytes to transfer.")],
    direction: Annotated[str, typer.Option("--direction",
                                           help="up: our endpoint sends; down: it receives.")],
    peer: Annotated[str, typer.Option("--peer", help="The other end: kernel or ref.")]
    = "kernel",
    paths: Annotated[int, typer.Option("--paths", min=1, max=8, help="Number of paths.")] = 1,
    proto: Annotated[str, typer.Option("--proto", help="tcp or mptcp.")] = "tcp",
    delay: Annotated[str | None, typer.Option("--delay", help="One-way delay, ms[,ms..].")]
    = None,
    loss: Annotated[str | None, typer.Option("--loss", help="Loss each way, %[,%..].")]
    = None,
    rate: Annotated[str | None, typer.Option("--rate", help="Rate each way, Mbit/s[,..].")]
    = None,
    ipv6: Annotated[bool, typer.Option("--ipv6", help="fd00::/8, not 198.18.0.0/15.")]
    = False,
    pcap: Annotated[Path | None, typer.Option("--pcap", help="Capture our TUN packets.")]
    = None,
    eventlog: Annotated[Path | None, typer.Option("--eventlog", help="JSON-lines log.")]
    = None,
    initiator: Annotated[str, typer.Option("--initiator", help="Who connects: ref or peer.")]
    = "ref",
    close: Annotated[str, typer.Option("--close", help="graceful, abort-ref, abort-peer.")]
    = "graceful",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the payload and links.")] = 0,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds to give up.")]
    = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report here.")]
    = None,
    kernel_endpoints: Annotated[str, typer.Option(
        "--kernel-endpoints", help="MPTCP: kernel endpoints subflow|signal|fullmesh|backup.")]
    = "subflow",
    kernel_limits: Annotated[int | None, typer.Option(
        "--kernel-limits", min=0, max=8, help="MPTCP: ip mptcp limits (default paths-1).")]
    = None,
    checksums: Annotated[bool, typer.Option(
        "--checksums", help="MPTCP: our endpoint asks for DSS checksums.")] = False,
    sysctl: Annotated[list[str] | None, typer.Option(
        "--sysctl", help="Kernel host sysctl NAME=VALUE (repeatable).")] = None,
) -> None:
    """Run one transfer in a fresh lab and print JSON (exit 0 ok, 1 failed)."""
    import json
    import signal

    from impl.lab.run import LabRunSpec, NotBuiltYet, per_path, run_lab
    from impl.lab.topology import PathSpec

    try:
        sysctls = dict(item.split("=", 1) for item in sysctl or [])
        delays = per_path(delay, paths, "delay", scale=1e-3)
        losses = per_path(loss, paths, "loss", scale=1e-2)
        rates = per_path(rate, paths, "rate", scale=1e6)
        specs = [PathSpec(delay=d or 0.0, loss=p or 0.0, rate=r or None)
                 for d, p, r in zip(delays, losses, rates, strict=True)]
        spec = LabRunSpec(peer=peer, paths=specs, size=size, direction=direction,
                          proto=proto, ipv6=ipv6, pcap=pcap, eventlog=eventlog, seed=seed,
                          timeout=timeout, initiator=initiator, close=close,
                          sysctls=sysctls, checksums=checksums,
                          kernel_endpoints=kernel_endpoints, kernel_limits=kernel_limits)
    except ValueError as error:
        error_console.print(f"[bold red]mptcp-ref lab run:[/] {error}")
        raise typer.Exit(2) from None
    # Output folders are made before the lab is built, so a bad path costs no transfer.
    for output in (json_path, pcap, eventlog):
        if output is None:
            continue
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            error_console.print(f"[bold red]mptcp-ref lab run:[/] cannot write {output}: {error}")
            raise typer.Exit(2) from None

    def terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwinds the lab like Ctrl-C: nothing is left behind

    signal.signal(signal.SIGTERM, terminate)
    try:
        report = run_lab(spec)
    except NotBuiltYet as error:
        _not_built("lab run", str(error))
    except KeyboardInterrupt:
        error_console.print("mptcp-ref lab run: interrupted; the lab was removed")
        raise typer.Exit(130) from None
    except Exception as error:
        # The lab could not be built (not root, no TUN, ...): still one JSON answer.
        report = {"ok": False, "reason": f"{type(error).__name__}: {error}", "bytes": 0,
                  "sha256_match": False, "seconds": None, "goodput_mbit": None,
                  "subflows": [], "kernel_mib_delta": {}}
    text = json.dumps(report, indent=2, default=str)
    if json_path is not None:
        json_path.write_text(text + "\n")
    print(text)
    raise typer.Exit(0 if report["ok"] else 1)


@app.command()
def bench() -> None:
    """Benchmarks of this endpoint against the kernel, side by side."""
    _not_built("bench", "issues: TCP subflows / the MPTCP endpoint")


@app.command()
def replay(
    traces: Path = typer.Option(Path("out/witnesses"), "--traces",
                                help="Folder of spec trace files (coverage witnesses)."),
    hypothesis: int = typer.Option(0, "--hypothesis", min=0,
                                   help="Also replay N traces Hypothesis draws from the spec."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the report here."),
    out: Path = typer.Option(Path("out/replay"), "--out", help="Folder for the captures."),
    only: str | None = typer.Option(None, "--only",
                                    help="Only trace files whose name contains this."),
    seed: int = typer.Option(0, "--seed", help="Seed of the Hypothesis traces."),
) -> None:
    """Replay spec traces over real sockets against Linux and judge every run with the
    spec monitor (exit 0 all conformant, 1 not, 2 bad input)."""
    from model_checks.replay import run_replay_command

    raise typer.Exit(run_replay_command(traces, hypothesis, json_path, out, only, seed))


@app.command()
def monitor(
    pcap: Path = typer.Argument(..., help="Capture to check against the spec."),
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="An address of the endpoint to judge (default: the client "
                                 "of the first connection)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the report here."),
    at_endpoint: bool = typer.Option(
        False, "--at-endpoint", help="The capture was taken at the judged endpoint: judge "
                                     "in capture order (no far-side reordering)."),
) -> None:
    """Check a pcap against the spec from one endpoint's point of view (exit 0 accepted,
    1 divergence, 2 bad input)."""
    from model_checks.conformance.capture import CaptureError
    from model_checks.conformance.judge import monitor_capture, write_json

    try:
        report = monitor_capture(pcap, endpoint, taken_at_endpoint=at_endpoint)
    except (CaptureError, ValueError) as error:
        from rich.markup import escape

        error_console.print(f"[bold red]mptcp-ref monitor:[/] {escape(str(error))}",
                            soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    print(report.text())
    if json_path is not None:
        write_json(report, json_path)
    raise typer.Exit(report.exit_code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
