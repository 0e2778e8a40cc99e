"""A small toy SystemSpec for the model-check tests: a connection and subflow lifecycle
shaped like MPTCP's (open, join, data, close, abort) but small enough to check in a second,
plus deliberately broken variants (a violated invariant, a nondeterministic pair, a
deadlock, a dead rule) so each check can be shown to fail.

Built only from `spec.core` and `spec.logic`, so the checks exercise the same vocabulary
and step semantics as the real tables.
"""

from __future__ import annotations

from dataclasses import replace

from spec.core import Config, Invariant, Label, MachineSpec, Rule, Step, SystemSpec, Variable
from spec.logic import And, Count, Implies, In, Not, Or

# ---------------------------------------------------------------------------------------
# Connection machine: INIT -> ESTABLISHED -> CLOSING -> CLOSED, with an abort from anywhere.


def _established_subflows(view):
    return Count(*(subflow.in_("ESTABLISHED") for subflow in view.subflows))


CONNECTION = MachineSpec(
    name="connection",
    states=("INIT", "ESTABLISHED", "CLOSING", "CLOSED"),
    initial="INIT",
    variables=(
        Variable("subflows", "int", 0, 0, 3, doc="established subflows"),
        Variable("sent", "int", 0, 0, 2, doc="data units sent"),
        Variable("fin_sent", "bool", False),
    ),
    rules=(
        Rule("conn_open", ("INIT",), "open", "ESTABLISHED",
             guard=lambda v: v.index == 0,
             effect=lambda v: {"subflows": v.conn.subflows + 1}),
        Rule("conn_join", ("ESTABLISHED",), "open", None,
             guard=lambda v: And(v.index != 0, v.subflows[0].in_("ESTABLISHED")),
             effect=lambda v: {"subflows": v.conn.subflows + 1}),
        Rule("conn_send", ("ESTABLISHED",), "send", None,
             guard=lambda v: Not(v.conn.fin_sent),
             effect=lambda v: {"sent": v.conn.sent + v.p.units}),
        Rule("conn_sf_reset", ("ESTABLISHED", "CLOSING"), "reset", None,
             effect=lambda v: {"subflows": v.conn.subflows - 1}),
        Rule("conn_close", ("ESTABLISHED",), "close", "CLOSING",
             effect=lambda v: {"fin_sent": True}),
        Rule("conn_closed", ("CLOSING",), "all_closed", "CLOSED",
             guard=lambda v: v.conn.subflows == 0),
        Rule("conn_abort", ("INIT", "ESTABLISHED", "CLOSING"), "abort", "CLOSED",
             effect=lambda v: {"subflows": 0}),
    ),
)

# ---------------------------------------------------------------------------------------
# Subflow machine: NONE -> ESTABLISHED -> CLOSED (reset), or torn down by abort.

SUBFLOW = MachineSpec(
    name="subflow",
    states=("NONE", "ESTABLISHED", "CLOSED"),
    initial="NONE",
    variables=(Variable("backup", "bool", False),),
    rules=(
        Rule("sf_open", ("NONE",), "open", "ESTABLISHED",
             effect=lambda v: {"backup": v.p.backup}),
        Rule("sf_send", ("ESTABLISHED",), "send", None),
        Rule("sf_prio", ("ESTABLISHED",), "prio", None,
             effect=lambda v: {"backup": v.p.backup}),
        Rule("sf_reset", ("ESTABLISHED",), "reset", "CLOSED"),
    ),
)

LABELS = {
    "open": Label("open", "peer", params=(Variable("backup", "bool"),)),
    "send": Label("send", "app", params=(Variable("units", "int", 1, 1, 2),)),
    "prio": Label("prio", "peer", params=(Variable("backup", "bool"),)),
    "reset": Label("reset", "peer"),
    "close": Label("close", "app", addressed=False),
    "all_closed": Label("all_closed", "internal", addressed=False),
    "abort": Label("abort", "app", addressed=False),
}


def _subflow_count_matches(view):
    return Implies(Not(view.conn.in_("CLOSED")), view.conn.subflows == _established_subflows(view))


def _no_data_after_fin(pre, step, post):
    return Implies(pre.conn.fin_sent, post.conn.sent == pre.conn.sent)


def _closed_means_no_subflow_counted(view):
    return Implies(view.conn.in_("CLOSED"), view.conn.subflows == 0)


def _slot_zero_first(view):
    return Implies(
        Or(*(subflow.in_("ESTABLISHED", "CLOSED") for subflow in view.subflows[1:])),
        Not(view.subflows[0].in_("NONE")),
    )


INVARIANTS = (
    Invariant("subflow_count_matches", "toy", "conn.subflows counts established subflows",
              _subflow_count_matches),
    Invariant("closed_counts_zero", "toy", "a closed connection counts no subflow",
              _closed_means_no_subflow_counted),
    Invariant("initial_subflow_first", "toy", "no join before the initial subflow",
              _slot_zero_first),
    Invariant("no_data_after_fin", "toy", "nothing is sent after the FIN",
              _no_data_after_fin, kind="step"),
)


def build_toy(config: Config | None = None) -> SystemSpec:
    return SystemSpec(
        connection=CONNECTION,
        subflow=SUBFLOW,
        labels=LABELS,
        invariants=INVARIANTS,
        config=config or Config(max_subflows=3, subflow_limit=3, max_bytes=2),
    )


TOY = build_toy()


def _replace_rule(system: SystemSpec, machine: str, name: str, **changes) -> SystemSpec:
    target = system.connection if machine == "connection" else system.subflow
    rules = tuple(replace(rule, **changes) if rule.name == name else rule for rule in target.rules)
    mutated = replace(target, rules=rules)
    if machine == "connection":
        return replace(system, connection=mutated)
    return replace(system, subflow=mutated)


def buggy_reset_keeps_count() -> SystemSpec:
    """A subflow reset that forgets to decrement the count: violates
    subflow_count_matches after open + reset (two steps)."""
    return _replace_rule(TOY, "connection", "conn_sf_reset", effect=lambda v: {})


def buggy_send_after_fin() -> SystemSpec:
    """Sending is allowed while CLOSING: violates the step invariant no_data_after_fin."""
    return _replace_rule(TOY, "connection", "conn_send", source=("ESTABLISHED", "CLOSING"),
                         guard=lambda v: True)


def nondeterministic_toy() -> SystemSpec:
    """A second, untagged rule for `close` overlapping conn_close."""
    extra = Rule("conn_close_abort", ("ESTABLISHED",), "close", "CLOSED",
                 guard=lambda v: v.conn.subflows == 1, effect=lambda v: {"subflows": 0})
    return replace(TOY, connection=replace(CONNECTION, rules=CONNECTION.rules + (extra,)))


def deliberately_nondeterministic_toy() -> SystemSpec:
    """The same overlap, but both rules carry the same choice tag: not a finding."""
    extra = Rule("conn_close_abort", ("ESTABLISHED",), "close", "CLOSED",
                 guard=lambda v: v.conn.subflows == 1, effect=lambda v: {"subflows": 0},
                 choice="close_style")
    rules = tuple(
        replace(rule, choice="close_style") if rule.name == "conn_close" else rule
        for rule in CONNECTION.rules
    ) + (extra,)
    return replace(TOY, connection=replace(CONNECTION, rules=rules))


def deadlocking_toy() -> SystemSpec:
    """No abort, no MP_PRIO, and a subflow reset only counts while ESTABLISHED: a
    connection that closes with a live subflow is stuck in CLOSING (open, close)."""
    conn_rules = tuple(
        replace(rule, source=("ESTABLISHED",)) if rule.name == "conn_sf_reset" else rule
        for rule in CONNECTION.rules
        if rule.name != "conn_abort"
    )
    sf_rules = tuple(rule for rule in SUBFLOW.rules if rule.name != "sf_prio")
    labels = {name: label for name, label in LABELS.items() if name not in ("abort", "prio")}
    return replace(
        TOY,
        connection=replace(CONNECTION, rules=conn_rules),
        subflow=replace(SUBFLOW, rules=sf_rules),
        labels=labels,
    )


def dead_rule_toy() -> SystemSpec:
    """A rule whose guard can never hold in a reachable state (more subflows counted than
    slots exist): reported as dead, with no witness."""
    extra = Rule("conn_overflow", ("ESTABLISHED",), "send", None,
                 guard=lambda v: v.conn.subflows > v.config.max_subflows)
    sf_extra = Rule("sf_never", ("CLOSED",), "open", "ESTABLISHED",
                    guard=lambda v: In(v.index, 7))
    return replace(
        TOY,
        connection=replace(CONNECTION, rules=CONNECTION.rules + (extra,)),
        subflow=replace(SUBFLOW, rules=SUBFLOW.rules + (sf_extra,)),
    )


def first_steps() -> list[Step]:
    """A short legal run of the toy: open slot 0, join slot 1, send, close, reset both."""
    return [
        Step("open", 0, {"backup": False}),
        Step("open", 1, {"backup": True}),
        Step("send", 0, {"units": 1}),
        Step("close", None, {}),
        Step("reset", 0, {}),
        Step("reset", 1, {}),
        Step("all_closed", None, {}),
    ]
