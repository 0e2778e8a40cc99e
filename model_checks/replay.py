"""`mptcp-ref replay`: spec traces played over real sockets, and the runs judged by the spec.

For each trace (every coverage witness of `mptcp-ref check` in `out/witnesses/`, a few
supplementary traces of duplicates (`replay_plan.supplementary_traces`), plus
`--hypothesis N` traces drawn from the spec by Hypothesis):

1. `replay_plan.plan_for` turns it into a script of real actions, or says why no peer
   can play it (those are listed, not hidden);
2. the script runs in a fresh lab (`impl.lab.scripted`): our endpoint on TUN devices,
   the Linux kernel's socket and `ip mptcp` endpoints as the peer, every packet of our
   endpoint captured; traces with the same script share one run. What Linux never
   sends (wrong HMACs, a wrong-key MP_FASTCLOSE, MP_FAIL, ...) is played against the
   scripted packet peer instead (`replay_scripted`, `impl.lab.packet_peer`);
3. the capture is judged from our endpoint's point of view by the spec monitor
   (`model_checks.conformance`, the same tables and step semantics as the model checks):
   a run is *conformant* when every connection in it is accepted;
4. the rules the run fired (`spec.monitor.Monitor.fired`) make the per-rule report: a
   rule is *exercised for real* when some conformant run fired it. A witness counts as
   replayed when its run is conformant and fired the rule it witnesses.

The JSON report: `{"runs": N, "conformant": N, "rules": {"total": N, "exercised_real":
N, "unexercisable": [{rule, reason}], "not_exercised": [{rule, group, reason}]},
"witnesses": {...},
"failures": [...]}`.
"""

from __future__ import annotations

import ipaddress
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from impl.lab.scripted import FLAG_SUBFLOW, PORT, ScriptedRun, scripted_lab
from model_checks.replay_plan import Action, Plan, plan_for, supplementary_traces
from model_checks.replay_reasons import not_exercised_reason
from spec import events as ev
from spec.system import SYSTEM
from spec.trace import TraceError, load_trace

__all__ = ["ReplayReport", "RunResult", "replay"]

SIGNAL_ID = 2
STEP_TIMEOUT = 4.0  # seconds one action may take to show its effect
TIME_WAIT_WAIT = 2.0  # our lab TCP waits this long in TIME-WAIT during a replay
SETTLE = 0.3
NOBODY = 98  # .99 / ::99 of a lab path: an address nobody owns (a SYN there is dropped)
SYN_RETRIES, SYN_RTO = 1, 0.2  # our handshake's limits in a run that waits for a timeout


@dataclass
class RunResult:
    plan: str
    pcap: str
    traces: list[str]  # the traces this run plays
    conformant: bool = False
    verdicts: list[str] = field(default_factory=list)  # per connection
    divergence: str = ""
    fired: set[str] = field(default_factory=set)
    stalls: list[str] = field(default_factory=list)  # actions whose effect never showed
    error: str = ""
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"plan": self.plan, "pcap": self.pcap, "traces": self.traces,
                "conformant": self.conformant, "verdicts": self.verdicts,
                "divergence": self.divergence, "fired": sorted(self.fired),
                "stalls": self.stalls, "error": self.error,
                "seconds": round(self.seconds, 3)}


@dataclass
class ReplayReport:
    runs: list[RunResult]
    rules: list[str]  # every rule of the spec, as "machine:rule"
    unexercisable: dict[str, str]  # trace name -> why no peer can play it
    witnesses: dict[str, str]  # trace name -> the rule it witnesses (coverage witnesses)

    @property
    def exercised(self) -> set[str]:
        return {rule for run in self.runs if run.conformant for rule in run.fired}

    def as_json(self) -> dict[str, Any]:
        exercised = self.exercised
        by_rule_reason: dict[str, str] = {}
        for name, reason in self.unexercisable.items():
            rule = self.witnesses.get(name)
            if rule and rule not in exercised:
                by_rule_reason.setdefault(rule, reason)
        missing = sorted(set(self.rules) - exercised - set(by_rule_reason))
        witness_status = {}
        run_of = {trace: run for run in self.runs for trace in run.traces}
        for name, rule in sorted(self.witnesses.items()):
            run = run_of.get(name)
            if name in self.unexercisable:
                status = "unexercisable: " + self.unexercisable[name]
            elif run is None:
                status = "not run"
            elif not run.conformant:
                status = "run not conformant"
            elif rule in run.fired:
                status = "replayed"
            else:
                status = "run conformant, rule not fired"
            witness_status[name] = status
        witness_of = {rule: name for name, rule in self.witnesses.items()}
        not_exercised = []
        for rule in missing:
            name = witness_of.get(rule)
            run = run_of.get(name) if name else None
            group, reason = not_exercised_reason(
                rule, witness_status.get(name) if name else None,
                run.plan if run is not None else None)
            not_exercised.append({"rule": rule, "group": group, "reason": reason})
        return {
            "runs": len(self.runs),
            "conformant": sum(1 for run in self.runs if run.conformant),
            "rules": {"total": len(self.rules), "exercised_real": len(exercised),
                      "unexercisable": [{"rule": rule, "reason": reason}
                                        for rule, reason in sorted(by_rule_reason.items())],
                      "not_exercised": not_exercised,
                      "exercised": sorted(exercised)},
            "witnesses": {"total": len(self.witnesses),
                          "replayed": sum(1 for s in witness_status.values()
                                          if s == "replayed"),
                          "status": witness_status},
            "failures": [run.as_json() for run in self.runs if not run.conformant],
            "run_details": [run.as_json() for run in self.runs],
        }


# ---------------------------------------------------------------------------------------
# Playing one plan


def replay_payload(count: int, salt: int) -> bytes:
    """Bytes of a scripted send: any will do, they differ by `salt` so a mix-up shows."""
    return bytes((salt * 31 + index) % 251 for index in range(count))


class _Player:
    """Executes a plan's actions on a `ScriptedRun`, waiting for each one's effect."""

    def __init__(self, run: ScriptedRun, plan: Plan) -> None:
        self.run = run
        self.plan = plan
        self.stalls: list[str] = []
        self.salt = 0
        # events without a packet the replay caused or saw: (wall-clock time, event)
        self.known: list[tuple[float, ev.Event]] = []
        self.unanswered: dict[int, str] = {}  # path -> the address a SYN goes to unanswered

    def wait(self, until: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout

        def done() -> bool:
            return until() or time.monotonic() >= deadline

        self.run.run(done, timeout=timeout + 2.0, what=what)
        if until():
            return True
        self.stalls.append(what)
        return False

    @property
    def connection(self):
        return self.run.connection

    def _closed(self) -> bool:
        connection = self.connection
        return connection is not None and connection.is_closed

    def setup(self) -> None:
        run, plan = self.run, self.plan
        if any(action.kind == "wait_connect_timeout" for action in plan.actions):
            # Our handshake gives up after one SYN retry from a 0.2 s RTO (RFC 9293
            # 3.10.8 leaves the limit to the host; Linux: tcp_syn_retries), so the
            # replay waits well under a second instead of minutes.
            run.config = replace(run.config, tcp=replace(
                run.config.tcp, syn_retries=SYN_RETRIES, initial_rto=SYN_RTO))
        if any(action.kind == "wait_time_wait" for action in plan.actions):
            # TIME-WAIT (2 MSL, RFC 9293 3.6; 60 s here as in Linux) cut to a few seconds
            # so a replay can wait it out
            run.config = replace(run.config, tcp=replace(run.config.tcp,
                                                         time_wait=TIME_WAIT_WAIT))
        if plan.kernel_joins:
            for index, address in enumerate(run.lab.kernel_addresses[1:], start=2):
                run.lab.mptcp_endpoint(address, FLAG_SUBFLOW, endpoint_id=index,
                                       ifname=f"path{index}")

    def play(self, action: Action) -> None:
        handler = getattr(self, f"_do_{action.kind}")
        handler(action)

    # -- our application ------------------------------------------------------------------

    def _do_listen(self, action: Action) -> None:
        self.run.host.listen(PORT, self.run.config)

    def _do_connect(self, action: Action) -> None:
        run = self.run
        if run.connection is not None:
            return
        wildcard = "::" if run.lab.ipv6 else "0.0.0.0"
        run.kernel.listen(wildcard if self.plan.signal else run.lab.kernel_addresses[0], PORT)
        connection = run.connect(self.unanswered.get(0))
        self.wait(lambda: connection.subflows[0].tcp.state.name != "SYN_SENT"
                  or connection.is_closed, "our connect")

    def _do_send(self, action: Action) -> None:
        if self.connection is None or self._closed():
            return
        self.salt += 1
        wanted = len(self.run.kernel.received) + action.arg
        self.connection.send(replay_payload(action.arg, self.salt))
        self.wait(lambda: len(self.run.kernel.received) >= wanted or self._closed(),
                  "the kernel reading our data")

    def _app_call(self, event: ev.Event) -> None:
        """Log a call of our application for the judge (no capture shows it)."""
        self.known.append((time.time(), event))

    def _do_close(self, action: Action) -> None:
        self._close(ev.AppClose())

    def _do_shutdown(self, action: Action) -> None:
        """shutdown(SHUT_WR): the core's close() queues the DATA_FIN (App. D M_CLOSE) and
        the connection still reads, as `impl.api`'s shutdown does; a later close() of the
        same connection changes nothing on the wire."""
        self._close(ev.AppShutdown())

    def _close(self, call: ev.Event) -> None:
        if self.connection is None:
            return
        self._app_call(call)
        self.connection.close()
        self._kernel_accepted()
        self.wait(lambda: self.run.kernel.eof or self._closed() or self.run.kernel.error,
                  "the kernel seeing our DATA_FIN")

    def _do_abort(self, action: Action) -> None:
        if self.connection is None:
            return
        self._app_call(ev.AppAbort())
        self.connection.abort()
        self.wait(self._closed, "our abort")

    def app_reads(self) -> list[tuple[float, ev.Event]]:
        """accept() and the reads the lab made for our application, as events."""
        run = self.run
        calls: list[tuple[float, ev.Event]] = [(when, ev.AppRecv(count))
                                               for when, count in run.reads]
        if run.accepted_at is not None:
            calls.append((run.accepted_at, ev.AppAccept()))
        # our subflows' TIME-WAIT timers that ran out (TIME_WAIT_WAIT in a replay)
        calls += [(when, ev.TimeWaitExpired(index)) for when, index in run.time_waits_over]
        return calls

    def _do_join(self, action: Action) -> None:
        run, connection = self.run, self.connection
        if connection is None or connection.is_closed or len(run.lab.our_addresses) < 2:
            return
        if self.plan.signal:  # join the address the kernel announced (its endpoint)
            self._join_announced()
            return
        self._ensure_fully_established()
        join = connection.add_subflow(run.lab.our_addresses[1], remote=self.unanswered.get(1),
                                      now=time.monotonic())
        if join is not None:
            self.wait(lambda: join.usable or join.dead, "our MP_JOIN")

    def _ensure_fully_established(self) -> None:
        """Our client joins once the peer showed it has our key (its first DSS, 3.1);
        Linux sends none until it has data, so a byte from the kernel brings one."""
        connection = self.connection
        if connection is None or connection.fully_established or connection.fallback:
            return
        self._do_kernel_send(Action("kernel_send", 1))
        self.wait(lambda: connection.fully_established or connection.is_closed,
                  "the kernel's first DSS")

    def _do_announce(self, action: Action) -> None:
        run, connection = self.run, self.connection
        if connection is None or connection.is_closed or len(run.lab.our_addresses) < 2:
            return
        connection.announce_address(run.lab.our_addresses[1])
        run.run_for(SETTLE)

    def _do_remove_address(self, action: Action) -> None:
        run, connection = self.run, self.connection
        if connection is None or connection.is_closed or len(run.lab.our_addresses) < 2:
            return
        # Our endpoint signals only once the peer showed it has our key (3.1).
        self._ensure_fully_established()
        address = run.lab.our_addresses[1]
        # the address going away leaves no packet (the spec's path_address_removed)
        self.known.append((time.time(), ev.AddressRemoved(run.host.address_id(address))))
        connection.remove_address(address)
        run.run_for(SETTLE)

    def _do_backup(self, action: Action) -> None:
        connection = self.connection
        if connection is None or connection.is_closed:
            return
        if len(connection.subflows) < 2:
            self._do_join(action)
        live = [subflow for subflow in connection.subflows if subflow.usable]
        if live:
            connection.set_backup(live[-1], True)
            self.run.run_for(SETTLE)

    def _do_wait_time_wait(self, action: Action) -> None:
        self.run.run_for(TIME_WAIT_WAIT + SETTLE)

    # -- the lab's links ------------------------------------------------------------------

    def _do_unanswered(self, action: Action) -> None:
        """The next handshake on path `arg` goes to an address there nobody owns."""
        self.unanswered[action.arg] = str(
            ipaddress.ip_address(self.run.lab.kernel_addresses[action.arg]) + NOBODY)

    def _do_wait_connect_timeout(self, action: Action) -> None:
        connection = self.connection
        slot = action.arg
        if connection is None or len(connection.subflows) <= slot:
            self.stalls.append(f"no subflow {slot} to time out")
            return
        subflow = connection.subflows[slot]
        if self.wait(lambda: subflow.tcp.is_closed, f"subflow {slot}'s connect timeout"):
            self.known.append((time.time(), ev.ConnectTimedOut(slot)))

    def _do_link_down(self, action: Action) -> None:
        self.run.set_path_up(action.arg, False)
        self.known.append((time.time(), ev.LinkDown(action.arg)))
        self.run.run_for(SETTLE)

    def _do_link_up(self, action: Action) -> None:
        if not self.known or not isinstance(self.known[-1][1], ev.LinkDown):
            self._do_link_down(action)  # a path comes back only after it went down
        self.run.set_path_up(action.arg, True)
        self.known.append((time.time(), ev.LinkUp(action.arg)))
        self.run.run_for(SETTLE)

    # -- the kernel as the peer -----------------------------------------------------------

    def _do_kernel_connect(self, action: Action) -> None:
        run = self.run
        if run.kernel.sock is not None or run.kernel.listener is not None:
            return
        run.kernel.connect(run.lab.our_addresses[0], PORT, bind=run.lab.kernel_addresses[0])
        self.wait(lambda: run.kernel.connected or run.kernel.error is not None,
                  "the kernel's connect")
        if run.kernel.error is None:
            self.wait(lambda: run.connection is not None, "our accept")

    def _kernel_accepted(self) -> bool:
        """The kernel listener's accept() happens in its pump: wait for it."""
        kernel = self.run.kernel
        if kernel.sock is None and kernel.listener is not None and not self._closed():
            self.wait(lambda: kernel.sock is not None or kernel.error is not None
                      or self._closed(), "the kernel's accept")
        return kernel.sock is not None and kernel.error is None

    def _do_kernel_send(self, action: Action) -> None:
        run = self.run
        if not self._kernel_accepted() or self._closed():
            return
        self.salt += 1
        wanted = len(run.received) + action.arg
        run.kernel.send(replay_payload(action.arg, self.salt))
        self.wait(lambda: len(run.received) >= wanted or self._closed(),
                  "our endpoint reading the kernel's data")

    def _do_kernel_close(self, action: Action) -> None:
        run = self.run
        if not self._kernel_accepted():
            return
        run.kernel.shutdown_write()
        self.wait(lambda: (self.connection is not None and self.connection.peer_closed)
                  or self._closed(), "the kernel's DATA_FIN at our endpoint")

    def _do_kernel_abort(self, action: Action) -> None:
        run = self.run
        if run.kernel.sock is None:
            return
        run.kernel.abort()
        self.wait(self._closed, "the kernel's reset at our endpoint")

    def _do_kernel_remove_address(self, action: Action) -> None:
        run = self.run
        if len(run.lab.kernel_addresses) < 2 or self.connection is None:
            return
        run.lab.delete_mptcp_endpoint(SIGNAL_ID)
        run.run_for(SETTLE)

    def _do_kernel_backup(self, action: Action) -> None:
        run = self.run
        if len(run.lab.kernel_addresses) < 2 or self.connection is None:
            return
        connection = self.connection
        if self.plan.our_role == "client" and len(connection.subflows) < 2:
            self._join_announced()
        # MP_PRIO goes out on the subflows of that endpoint's address: wait for one.
        self.wait(lambda: sum(1 for sf in connection.subflows if sf.usable) >= 2
                  or connection.is_closed, "a subflow on the kernel's second address")
        run.lab.change_mptcp_endpoint(SIGNAL_ID, backup=True)
        run.run_for(SETTLE)

    def _join_announced(self) -> None:
        connection = self.connection
        self._ensure_fully_established()
        self.wait(lambda: bool(connection.signals.remote_addresses) or connection.is_closed,
                  "the kernel's ADD_ADDR")
        announced = [address for address, _ in connection.signals.remote_addresses.values()]
        if announced:
            join = connection.add_subflow(self.run.lab.our_addresses[1], remote=announced[0],
                                          now=time.monotonic())
            if join is not None:
                self.wait(lambda: join.usable or join.dead, "our join to the announced address")


def play(plan: Plan, pcap: Path, *, seed: object = 0,
         known: list[tuple[float, ev.Event]] | None = None
         ) -> tuple[list[str], str, list[str]]:
    """Run `plan` in a fresh lab, capture to `pcap`; (stalls, error, our addresses).
    A `peer="scripted"` plan runs against the packet peer (`replay_scripted`). Events
    without a packet the run caused or saw (a link down or up, a connect timeout) are
    appended to `known` for the judge."""
    if plan.peer == "scripted":
        from model_checks.replay_scripted import play_scripted

        return play_scripted(plan, pcap, seed=seed)
    stalls: list[str] = []
    error = ""
    addresses: list[str] = []
    paths = max(plan.paths, 2 if plan.signal or plan.kernel_joins else 1)
    with scripted_lab(pcap, seed=seed, paths=paths, kernel_mptcp=plan.kernel_mptcp,
                      checksums=plan.checksums, limits=max(paths - 1, 1),
                      signal_endpoint_id=SIGNAL_ID if plan.signal else None) as run:
        addresses = list(run.lab.our_addresses)
        player = _Player(run, plan)
        try:
            player.setup()
            for action in plan.actions:
                player.play(action)
            run.run_for(SETTLE)
        except AssertionError as failure:
            error = str(failure)
        except Exception:  # noqa: BLE001 - a replay failure is reported, not raised
            error = traceback.format_exc(limit=4)
        stalls = player.stalls
        if known is not None:
            known.extend(player.known + player.app_reads())
    return stalls, error, addresses


# ---------------------------------------------------------------------------------------
# The whole replay


def load_traces(folder: Path) -> tuple[dict[str, list[ev.Event]], dict[str, str]]:
    """Trace files of `folder` (name -> events) and, for coverage witnesses, the rule
    each one witnesses (from its header)."""
    traces: dict[str, list[ev.Event]] = {}
    witnesses: dict[str, str] = {}
    for path in sorted(folder.glob("*.jsonl")):
        try:
            traces[path.stem] = load_trace(path)
        except TraceError as error:
            raise TraceError(f"{path}: {error}") from error
        header = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
        if isinstance(header, dict) and header.get("witness"):
            witnesses[path.stem] = str(header["witness"])
    return traces, witnesses


def hypothesis_traces(count: int, seed: int = 0, steps: int = 12) -> dict[str, list[ev.Event]]:
    """`count` traces drawn from the spec: random walks over what it enables."""
    from model_checks.replay_sampling import sample_traces

    return {f"hypothesis_{index:03d}": events
            for index, events in enumerate(sample_traces(count, seed=seed, steps=steps))}


def all_rules() -> list[str]:
    return sorted([f"connection:{rule.name}" for rule in SYSTEM.connection.rules]
                  + [f"subflow:{rule.name}" for rule in SYSTEM.subflow.rules])


def replay(traces: dict[str, list[ev.Event]], witnesses: dict[str, str], out: Path,
           progress: Callable[[str], None] | None = None) -> ReplayReport:
    from model_checks.replay_judge import judge_run

    out.mkdir(parents=True, exist_ok=True)
    plans: dict[tuple, tuple[Plan, list[str]]] = {}
    unexercisable: dict[str, str] = {}
    for name, events in traces.items():
        plan = plan_for(events)
        if plan.unexercisable:
            unexercisable[name] = plan.unexercisable
            continue
        plans.setdefault(plan.key(), (plan, []))[1].append(name)
    runs: list[RunResult] = []
    for index, (plan, names) in enumerate(plans.values()):
        pcap = out / f"run{index:03d}.pcap"
        started = time.monotonic()
        if progress:
            progress(f"run {index + 1}/{len(plans)}: {plan.describe()}")
        result = RunResult(plan.describe(), str(pcap), names)
        known: list[tuple[float, ev.Event]] = []
        stalls, error, addresses = play(plan, pcap, seed=f"replay{index}", known=known)
        result.stalls, result.error = stalls, error
        if addresses:
            # the kernel runs log every call of our application (`_Player`)
            judge_run(result, pcap, addresses[0], known,
                      app_calls_known=plan.peer == "kernel")
        result.seconds = time.monotonic() - started
        runs.append(result)
    return ReplayReport(runs, all_rules(), unexercisable, witnesses)


# ---------------------------------------------------------------------------------------
# The command


def run_replay_command(traces_dir: Path, hypothesis: int, json_path: Path | None,
                       out_dir: Path, only: str | None = None, seed: int = 0) -> int:
    """`mptcp-ref replay`: exit 0 when every run conformed, 1 when one did not, 2 on bad
    input (no trace folder, a malformed trace file)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    errors = Console(stderr=True)
    if not traces_dir.is_dir():
        errors.print(f"[bold red]mptcp-ref replay:[/] no trace folder {traces_dir} (run "
                     "`mptcp-ref check` first: it writes the coverage witnesses there)")
        return 2
    try:
        traces, witnesses = load_traces(traces_dir)
    except (TraceError, ValueError, OSError) as error:
        errors.print(f"[bold red]mptcp-ref replay:[/] {error}", soft_wrap=True)
        return 2
    if traces:  # an empty folder stays an error
        traces.update(supplementary_traces())
    if only:
        traces = {name: events for name, events in traces.items() if only in name}
    traces.update(hypothesis_traces(hypothesis, seed=seed))
    if not traces:
        errors.print(f"[bold red]mptcp-ref replay:[/] no trace to replay in {traces_dir}")
        return 2
    started = time.monotonic()
    with console.status("replaying") as status:
        report = replay(traces, witnesses, out_dir,
                        progress=lambda message: status.update(message))
    data = report.as_json()
    data["seconds"] = round(time.monotonic() - started, 1)
    table = Table(title="mptcp-ref replay")
    for column in ("run", "traces", "script", "result", "rules fired", "seconds"):
        table.add_column(column)
    for index, run in enumerate(report.runs):
        result = "conformant" if run.conformant else f"NOT CONFORMANT: {run.divergence}"
        if run.error:
            result += f" (run error: {run.error.splitlines()[-1][:80]})"
        table.add_row(str(index), str(len(run.traces)), run.plan, result,
                      str(len(run.fired)), f"{run.seconds:.1f}")
    console.print(table)
    rules = data["rules"]
    scripted = sum(1 for run in report.runs if "scripted packet peer" in run.plan)
    console.print(f"runs: {data['runs']} ({scripted} against the scripted packet peer), "
                  f"conformant: {data['conformant']}; traces: {len(traces)} "
                  f"({len(report.unexercisable)} not playable)")
    console.print(f"spec rules exercised by real runs: {rules['exercised_real']}/"
                  f"{rules['total']}; witnesses replayed: {data['witnesses']['replayed']}/"
                  f"{data['witnesses']['total']}")
    for entry in rules["unexercisable"]:
        console.print(f"  unexercisable {entry['rule']}: {entry['reason']}", highlight=False)
    groups: dict[str, int] = {}
    for entry in rules["not_exercised"]:
        groups[entry["group"]] = groups.get(entry["group"], 0) + 1
    console.print(f"not exercised: {len(rules['not_exercised'])} rule(s), by reason:")
    for group, count in sorted(groups.items(), key=lambda pair: -pair[1]):
        console.print(f"  {count:3d}  {group}", highlight=False)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        console.print(f"JSON report: {json_path}")
    return 0 if data["conformant"] == data["runs"] else 1
