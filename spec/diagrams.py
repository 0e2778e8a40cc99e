"""State diagrams of the spec tables: DOT and SVG for the connection and the subflow.

Drawn with the `graphviz` package (SVG through the `dot` binary), from the rules alone,
deterministically (the same tables give byte-identical DOT, which a test compares with
the committed `diagrams/*.dot`). How a rule is drawn:

- a rule that changes state is an edge labelled "event [guard]" over its rule name;
  rules between the same two states share one edge, one line pair per rule;
- a rule from many states (4 or more, e.g. a RST from any live state) is one edge from a
  dashed box naming those states, instead of one edge per state;
- a rule that stays in its state is listed inside the state's box ("event [guard]: rule"),
  or, when it applies to many states, in a note naming those states.

States are ranked top to bottom in the order a connection lives (opening, established,
closing, closed), as in RFC 9293's and RFC 8684 Appendix D's figures.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import graphviz

from spec.core import MachineSpec, Rule
from spec.system import SYSTEM

MANY = 4  # a rule from this many states or more is drawn from a group box

RANKS: dict[str, list[list[str]]] = {
    "subflow": [
        ["CLOSED"], ["SYN_SENT", "SYN_RECEIVED"], ["PRE_ESTABLISHED"], ["ESTABLISHED"],
        ["FIN_WAIT_1", "CLOSE_WAIT"], ["FIN_WAIT_2", "CLOSING", "LAST_ACK"], ["TIME_WAIT"],
    ],
    "connection": [
        ["CLOSED"], ["LISTEN"], ["SYN_SENT", "SYN_RECEIVED"], ["ESTABLISHED"],
        ["FIN_WAIT_1", "CLOSE_WAIT"], ["FIN_WAIT_2", "CLOSING", "LAST_ACK"],
        ["TIME_WAIT", "ABORTING"],
    ],
}

FONT = "Helvetica"


def _event(rule: Rule) -> str:
    return f"{rule.label} [{rule.guard_text}]" if rule.guard_text else rule.label


def _rank(machine: MachineSpec) -> dict[str, int]:
    order = {state: level for level, states in enumerate(RANKS.get(machine.name, []))
             for state in states}
    return {state: order.get(state, len(order)) for state in machine.states}


def _state_label(state: str, stays: list[Rule], initial: bool) -> str:
    rows = [f'<TR><TD BGCOLOR="{"#d9ead3" if initial else "#dde6f5"}"><B>'
            f"{html.escape(state)}</B></TD></TR>"]
    for rules in _merged(stays):
        event, names = _row(rules)
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="9">{_lines(event)}'
                    f'</FONT><FONT POINT-SIZE="8" COLOR="#555555"> : '
                    f"{_lines(names)}</FONT></TD></TR>")
    return ('<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">'
            + "".join(rows) + "</TABLE>>")


def _edge_label(rules: list[Rule]) -> str:
    lines = []
    for rule in rules:
        lines.append(f'<FONT POINT-SIZE="9">{html.escape(_event(rule))}</FONT>')
        lines.append(f'<FONT POINT-SIZE="8" COLOR="#555555">{html.escape(rule.name)}</FONT>')
    return "<" + "<BR/>".join(lines) + ">"


def _group_name(states: tuple[str, ...], machine: MachineSpec) -> str:
    missing = [state for state in machine.states if state not in states]
    if not missing:
        return "any state"
    if len(missing) <= 3:
        return "any state but " + ", ".join(missing)
    return ", ".join(states)


def _merged(rules: list[Rule]) -> list[list[Rule]]:
    """Rules that say the same thing (same doc, source and target) share one row."""
    rows: dict[tuple, list[Rule]] = {}
    for rule in rules:
        rows.setdefault((rule.doc, rule.source, rule.target, rule.guard_text), []).append(rule)
    return list(rows.values())


def _tooltip(where: str, rules: list[Rule]) -> str:
    """Hover text in the SVG: every rule kept in this box, by full name, with its RFC."""
    return "\n".join([where] + [f"{rule.name} (RFC 8684 {rule.rfc}): {rule.doc}"
                                 if not rule.rfc.startswith("RFC") else
                                 f"{rule.name} ({rule.rfc}): {rule.doc}" for rule in rules])


def _lines(text: str) -> str:
    return '<BR ALIGN="LEFT"/>'.join(html.escape(line) for line in text.split("\n"))


def _names(rules: list[Rule]) -> str:
    """'a_b_x' or, for several, their common prefix with the rest in braces."""
    names = [rule.name for rule in rules]
    if len(names) == 1:
        return names[0]
    stem = names[0]
    for name in names[1:]:
        while not name.startswith(stem):
            stem = stem[:-1]
    stem = stem[:stem.rfind("_") + 1]
    rest = [name[len(stem):] for name in names]
    return stem + "{" + ",\n".join(", ".join(rest[i:i + 5]) for i in range(0, len(rest), 5)) + "}"


def _row(rules: list[Rule]) -> tuple[str, str]:
    labels = [rule.label for rule in rules]
    events = ",\n".join(", ".join(labels[i:i + 4]) for i in range(0, len(labels), 4))
    guard = rules[0].guard_text
    return (f"{events} [{guard}]" if guard else events), _names(rules)


def machine_graph(machine: MachineSpec) -> graphviz.Digraph:
    """The diagram of one machine as a graphviz Digraph (deterministic)."""
    graph = graphviz.Digraph(machine.name, format="svg")
    graph.attr(rankdir="TB", fontname=FONT, labelloc="t", nodesep="0.8", ranksep="0.9",
               newrank="true",
               label=f"{machine.name} ({len(machine.rules)} rules). Edges: event [guard] over "
                     "the rule name; rows in a state: rules that keep it; dashed: from several "
                     "states.")
    graph.attr("node", fontname=FONT, shape="plaintext", margin="0")
    graph.attr("edge", fontname=FONT, color="#444444", arrowsize="0.7")

    stays: dict[str, list[Rule]] = defaultdict(list)
    shared_stays: dict[tuple[str, ...], list[Rule]] = defaultdict(list)
    edges: dict[tuple[str, str], list[Rule]] = defaultdict(list)
    grouped: dict[tuple[tuple[str, ...], str], list[Rule]] = defaultdict(list)
    for rule in machine.rules:
        if rule.target is None:
            if len(rule.source) >= MANY:
                shared_stays[rule.source].append(rule)
            else:
                for state in rule.source:
                    stays[state].append(rule)
        elif len(rule.source) >= MANY:
            grouped[(rule.source, rule.target)].append(rule)
        else:
            for state in rule.source:
                edges[(state, rule.target)].append(rule)

    rank = _rank(machine)
    for level in sorted(set(rank.values())):
        with graph.subgraph() as row:
            row.attr(rank="same")
            for state in [s for s in machine.states if rank[s] == level]:
                row.node(state, _state_label(state, stays[state], state == machine.initial),
                         tooltip=_tooltip(state, stays[state]))
    graph.node("start", "", shape="point", width="0.12")
    graph.edge("start", machine.initial)

    for (source, target), rules in edges.items():
        backwards = rank[target] < rank[source]
        graph.edge(source, target, _edge_label(rules),
                   constraint="false" if backwards else "true",
                   color="#aa4444" if target == "CLOSED" else "#444444")
    for number, ((sources, target), rules) in enumerate(grouped.items()):
        box = f"group_{number}"
        graph.node(box, f"from {_group_name(sources, machine)}", shape="box", style="dashed",
                   fontsize="9", margin="0.08")
        graph.edge(box, target, _edge_label(rules), style="dashed",
                   color="#aa4444" if target == "CLOSED" else "#444444")
    with graph.subgraph(name="cluster_shared") as notes:
        notes.attr(label="rules that keep the state, in several states", style="dotted",
                   fontsize="10")
        for number, (sources, rules) in enumerate(shared_stays.items()):
            lines = [f"<B>in {html.escape(_group_name(sources, machine))}:</B>"]
            for merged in _merged(rules):
                event, names = _row(merged)
                lines.append(f'<FONT POINT-SIZE="9">{_lines(event)}</FONT>'
                             f'<FONT POINT-SIZE="8" COLOR="#555555"> : {_lines(names)}'
                             "</FONT>")
            notes.node(f"note_{number}", "<" + '<BR ALIGN="LEFT"/>'.join(lines)
                       + '<BR ALIGN="LEFT"/>>', shape="note", fontsize="9", margin="0.1",
                       tooltip=_tooltip(_group_name(sources, machine), rules))
            if number:  # stack the notes in one column
                notes.edge(f"note_{number - 1}", f"note_{number}", style="invis")
    return graph


def write_diagrams(out: Path) -> list[Path]:
    """Write connection.dot/.svg and subflow.dot/.svg into `out`; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for machine in (SYSTEM.connection, SYSTEM.subflow):
        graph = machine_graph(machine)
        dot_path = out / f"{machine.name}.dot"
        dot_path.write_text(graph.source, encoding="utf-8")
        written.append(dot_path)
        svg_path = out / f"{machine.name}.svg"
        svg_path.write_bytes(render(graph.source, "svg"))
        written.append(svg_path)
    return written


def render(source: str, fmt: str = "svg") -> bytes:
    """Run Graphviz's `dot` on DOT text."""
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("Graphviz's `dot` is not installed (scripts/setup.sh installs it)")
    return subprocess.run([dot, f"-T{fmt}"], input=source.encode("utf-8"),
                          capture_output=True, check=True).stdout
