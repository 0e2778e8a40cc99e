"""From a spec trace to a script of real actions: who does what, over real sockets.

A trace (a coverage witness of `mptcp-ref check`, or one Hypothesis drew from the spec)
is a list of spec events seen from our endpoint. Its controllable events become actions:

- our application's calls (`AppConnect`, `AppSend`, `AppClose`, `AppAbort`, ...) are
  calls on our endpoint (`impl.mptcp`, on TUN devices);
- what the peer does (segments we receive: data, DATA_FIN, MP_FASTCLOSE, ADD_ADDR,
  REMOVE_ADDR, MP_PRIO, a plain SYN, an MP_JOIN) is made to happen by driving the Linux
  kernel: its socket (send, shutdown, close with SO_LINGER {1, 0}), its `ip mptcp`
  endpoints (signal, subflow, backup, delete), or a plain TCP socket instead of MPTCP;
- our own path-manager moves (MP_JOIN, ADD_ADDR, REMOVE_ADDR, MP_PRIO we send) are calls
  on our connection;
- what our endpoint sends otherwise is its own choice: the script leaves it to it.

Some events no Linux peer can be made to show (a wrong HMAC, a join to a client, a
checksum failure it would have to invent). Such a trace becomes a plan with
`peer="scripted"`: the peer is `impl.lab.packet_peer.PacketPeer` (our own stack plus
scripted odd segments), and the `peer_*` actions tell it what odd thing to send. Link
events are lab actions (`link_down`, `link_up`; `unanswered` sends a handshake where
nobody answers, then `wait_connect_timeout`). What no peer can play stays
`unexercisable` with the reason; the replay report lists it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spec import events as ev

__all__ = ["Action", "Plan", "plan_for"]

MAX_PATHS = 3  # the spec's subflow slots


@dataclass(frozen=True)
class Action:
    """One real step: `kind` names what `replay.ReplayRunner` does, `arg` its size/slot."""

    kind: str
    arg: int = 0
    because: str = ""  # the trace event it comes from


@dataclass
class Plan:
    our_role: str = "client"  # "client": we connect; "server": the kernel connects
    paths: int = 1
    kernel_mptcp: bool = True  # False: a plain TCP kernel socket (fallback, RFC 8684 3.7)
    checksums: bool = False  # our endpoint asks for DSS checksums
    signal: bool = False  # the kernel announces its path-2 address (ADD_ADDR)
    kernel_joins: bool = False  # the kernel (client) has subflow endpoints: it joins us
    peer: str = "kernel"  # "kernel": Linux; "scripted": impl.lab.packet_peer.PacketPeer
    actions: list[Action] = field(default_factory=list)
    unexercisable: str | None = None  # why no Linux peer can play this trace

    def key(self) -> tuple:
        """Plans with the same key are the same real run."""
        return (self.our_role, self.paths, self.kernel_mptcp, self.checksums, self.signal,
                self.kernel_joins, self.peer, tuple(self.actions))

    def describe(self) -> str:
        setup = [f"we are {self.our_role}", f"{self.paths} path(s)"]
        if self.peer == "scripted":
            setup.append("scripted packet peer")
        if not self.kernel_mptcp:
            setup.append("plain TCP peer" if self.peer == "scripted" else "plain TCP kernel")
        if self.checksums:
            setup.append("DSS checksums")
        if self.signal:
            setup.append("kernel signals ADD_ADDR")
        if self.kernel_joins:
            setup.append("kernel joins us")
        steps = ", ".join(f"{a.kind}({a.arg})" if a.arg else a.kind for a in self.actions)
        return f"{'; '.join(setup)}: {steps}"


def _refuse(plan: Plan, why: str) -> Plan:
    if plan.unexercisable is None:
        plan.unexercisable = why
    return plan


ROLE_LIMITS = ("from our server", "to our client")


def plan_for(events: list[ev.Event]) -> Plan:
    """The script that plays `events` against the Linux kernel (or why none can).

    Linux opens subflows only as a client and takes joins only as a server, so a trace
    that has our server open a join (or a join reach our client) is played with the roles
    swapped when that makes it playable: the rules the trace is about are the same."""
    plan = _plan(events)
    if plan.unexercisable is None:
        return _with_repeats(events, plan)
    if plan.unexercisable and any(limit in plan.unexercisable for limit in ROLE_LIMITS):
        swapped = _plan(_swap_roles(events))
        if swapped.unexercisable is None:
            return swapped
    if plan.unexercisable:
        # What Linux will not send, the scripted packet peer can: the same trace with
        # the peer's odd segments as `peer_*` actions (roles as the trace has them).
        scripted = _plan(events, scripted=True)
        if scripted.unexercisable is None:
            return scripted
        plan.unexercisable = scripted.unexercisable
    return plan


# Segments the scripted packet peer can send twice (`impl.lab.packet_peer.REPEATABLE`);
# a `peer_repeat` action's arg is an index into this tuple.
REPEAT_KINDS = ("SYN", "SYN/ACK", "MP_JOIN SYN", "MP_JOIN SYN/ACK", "MP_JOIN ACK", "FIN",
                "DATA_FIN")


def _repeat_kind(event: ev.SegmentReceived) -> str | None:
    options = {option.kind: option for option in event.options}
    join = "MP_JOIN" in options
    if "S" in event.flags:  # with MP_CAPABLE, MP_JOIN or none (a plain TCP peer)
        kind = "SYN/ACK" if "A" in event.flags else "SYN"
        return f"MP_JOIN {kind}" if join else kind
    if "F" in event.flags:
        return "FIN"
    if join:
        return "MP_JOIN ACK"
    dss = options.get("DSS")
    if dss is not None and getattr(dss, "data_fin", False):
        return "DATA_FIN"
    return None


def repeated_segments(events: list[ev.Event]) -> list[str]:
    """Kinds of segment the trace receives twice in a row on one subflow (the same
    flags and options): the spec's *_repeated rules, which a duplicate makes fire."""
    last: dict[int, ev.SegmentReceived] = {}
    kinds: list[str] = []
    for event in events:
        if not isinstance(event, ev.SegmentReceived):
            continue
        before = last.get(event.subflow)
        last[event.subflow] = event
        kind = _repeat_kind(event)
        if before is not None and kind is not None and kind not in kinds \
                and (before.flags, before.options) == (event.flags, event.options):
            kinds.append(kind)
    return kinds


def _with_repeats(events: list[ev.Event], plan: Plan) -> Plan:
    """A trace that receives a segment twice is played against the scripted packet peer,
    armed from the start to send the next segment of that kind twice (Linux never
    repeats one unprompted); when that cannot be played, `plan` as it was."""
    kinds = repeated_segments(events)
    if not kinds:
        return plan
    scripted = _plan(events, scripted=True)
    if scripted.unexercisable is not None:
        return plan
    scripted.actions[:0] = [Action("peer_repeat", REPEAT_KINDS.index(kind),
                                   f"{kind} received twice") for kind in kinds]
    return scripted


def supplementary_traces() -> dict[str, list[ev.Event]]:
    """Spec traces the replay plays besides the coverage witnesses: duplicates where our
    endpoint can take them (its client a SYN/ACK, its server a SYN, with MP_CAPABLE or
    from a plain TCP client, its join an MP_JOIN SYN/ACK). The shortest witnesses of those
    *_repeated rules receive the duplicate in a state no peer brings about (our server
    given a SYN/ACK, say). And our client's connect timeout, as the witness of those
    rules may time out our server's handshake instead, and the peer's MP_FASTCLOSE on a
    connection with two subflows."""
    syn = ev.SegmentReceived(0, "S", options=(ev.MpCapable(0),))
    synack = ev.SegmentReceived(0, "SA", options=(ev.MpCapable(1),))
    opening = [ev.AppConnect(), ev.SegmentSent(0, "S", options=(ev.MpCapable(0),)), synack,
               ev.SegmentSent(0, "A", options=(ev.MpCapable(2),))]
    join_synack = ev.SegmentReceived(1, "SA", options=(ev.MpJoin(),))
    return {
        "supplement_synack_repeated": opening[:3] + [synack],
        "supplement_syn_mpc_repeated": [ev.AppListen(), syn, syn],
        # the same from a plain TCP client (3.7: fallback)
        "supplement_syn_plain_repeated": [ev.AppListen(), ev.SegmentReceived(0, "S"),
                                          ev.SegmentReceived(0, "S")],
        # our client's handshake timing out (a witness may have our server's instead,
        # which no peer plays: `_connect_timeout`)
        "supplement_connect_timeout": opening[:2] + [ev.ConnectTimedOut(0)],
        # the peer's MP_FASTCLOSE with two subflows up (3.5): the connection is
        # ABORTING while the second subflow still takes segments
        "supplement_fastclose_two_subflows": _joined_prefix() + [
            ev.SegmentReceived(0, "A", options=(ev.MpFastclose(key_ok=True),))],
        "supplement_join_synack_repeated": opening + [
            ev.SegmentSent(1, "S", options=(ev.MpJoin(),)), join_synack, join_synack],
    }


def _joined_prefix() -> list[ev.Event]:
    """The JOIN scenario up to our join's third ACK."""
    from spec.scenarios import JOIN

    events = list(JOIN.events)
    end = max(index for index, event in enumerate(events)
              if isinstance(event, ev.SegmentSent) and event.subflow == 1
              and event.flags == "A" and any(o.kind == "MP_JOIN" for o in event.options))
    return events[:end + 1]


def _swap_roles(events: list[ev.Event]) -> list[ev.Event]:
    """The same trace with our endpoint on the other side of the initial handshake."""
    server = any(isinstance(event, ev.AppListen) for event in events)
    swapped: list[ev.Event] = []
    for event in events:
        if server and isinstance(event, ev.AppListen):
            swapped.append(ev.AppConnect())
        elif not server and isinstance(event, ev.AppConnect):
            swapped.append(ev.AppListen())
        elif isinstance(event, ev.SegmentReceived | ev.SegmentSent) and event.subflow == 0 \
                and "S" in event.flags:
            continue  # the initial handshake: the runner makes it, in the new direction
        else:
            swapped.append(event)
    return swapped


def _plan(events: list[ev.Event], scripted: bool = False) -> Plan:
    plan = Plan(peer="scripted" if scripted else "kernel")
    if any(isinstance(event, ev.AppListen) for event in events):
        plan.our_role = "server"
    slots = {event.subflow for event in events if hasattr(event, "subflow")}
    plan.paths = min(MAX_PATHS, max(slots, default=0) + 1)
    opened = app_opened = False
    for event in events:
        match event:
            case ev.AppListen():
                plan.actions.append(Action("listen", because="AppListen"))
                app_opened = True
            case ev.AppConnect():
                plan.actions.append(Action("connect", because="AppConnect"))
                opened = app_opened = True
            case ev.AppAccept() | ev.AppRecv():
                pass  # the runner reads whatever arrives
            case ev.AppSend(bytes=count):
                plan.actions.append(Action("send", count, "AppSend"))
            case ev.AppShutdown() | ev.AppClose() | ev.AppAbort():
                kind = {ev.AppShutdown: "shutdown", ev.AppClose: "close",
                        ev.AppAbort: "abort"}[type(event)]
                if not app_opened:
                    # A call on a connection that is over (the spec's CLOSED): ours is
                    # opened for the capture, so it is first shut down (aborted), and
                    # the call then finds it over, as the trace's does.
                    first = "abort" if kind == "abort" else "shutdown"
                    plan.actions.append(Action(first, because="a connection that is over"))
                plan.actions.append(Action(kind, because=type(event).__name__))
            case ev.SegmentReceived():
                if scripted:
                    _scripted_peer_segment(plan, event, opened)
                else:
                    _peer_segment(plan, event, opened)
                opened = opened or "S" in event.flags
            case ev.SegmentSent():
                if scripted:
                    _scripted_our_segment(plan, event)
                else:
                    _our_segment(plan, event)
            case ev.TimeWaitExpired():
                plan.actions.append(Action("wait_time_wait", event.subflow, "TimeWaitExpired"))
            case ev.AddressAdded() | ev.AddressRemoved():
                if isinstance(event, ev.AddressRemoved):
                    plan.paths = max(plan.paths, 2)  # our second address is the one removed
                    plan.actions.append(Action("remove_address", event.address_id,
                                               "AddressRemoved"))
            case ev.RtoExpired() | ev.CloseTimerExpired() | ev.AddAddrTimerExpired():
                pass  # our endpoint's own timers: left to it (it fires them when due)
            case ev.ConnectTimedOut():
                _connect_timeout(plan, event)
            case ev.LinkDown() | ev.LinkUp():
                if scripted:
                    _refuse(plan, f"{type(event).__name__}: link events are played in the "
                                  "kernel runs only")
                kind = "link_down" if isinstance(event, ev.LinkDown) else "link_up"
                plan.actions.append(Action(kind, because=type(event).__name__))
    if plan.our_role == "server" and not any(a.kind == "kernel_connect" for a in plan.actions):
        # A listener with no client shows nothing in a capture: the kernel connects.
        plan.actions.append(Action("kernel_connect", because="a connection to observe"))
    if plan.our_role == "client" and not any(a.kind == "connect" for a in plan.actions):
        plan.actions.insert(0, Action("connect", because="a connection to observe"))
    return plan


def _connect_timeout(plan: Plan, event: ev.ConnectTimedOut) -> None:
    """Our handshake gives up (RFC 9293 3.10.8): its SYN goes to an address on the
    lab path (the initial subflow's path 1, a join's path 2) that nobody owns, which the
    kernel's namespace (not a router) drops without a word; the replay waits for our
    endpoint to drop the subflow. (Holding our link down instead would drop the SYNs
    before the capture, which is taken after our outbound link.)"""
    if plan.peer == "scripted":
        _refuse(plan, "ConnectTimedOut: link events are played in the kernel runs only")
        return
    opener = "connect" if event.subflow == 0 else "join"
    if event.subflow == 0 and plan.our_role == "server":
        _refuse(plan, "ConnectTimedOut of our server's handshake: the kernel would have to "
                      "leave our SYN/ACK unanswered, which its socket cannot be told to do")
        return
    openings = [index for index, action in enumerate(plan.actions) if action.kind == opener]
    if not openings:
        _refuse(plan, "ConnectTimedOut of a subflow the trace never opens")
        return
    path = 0 if event.subflow == 0 else 1
    plan.actions.insert(openings[-1], Action("unanswered", path, "ConnectTimedOut"))
    plan.actions.append(Action("wait_connect_timeout", event.subflow, "ConnectTimedOut"))


def _peer_segment(plan: Plan, event: ev.SegmentReceived, opened: bool) -> None:
    options = {option.kind: option for option in event.options}
    if "S" in event.flags and "A" not in event.flags:  # a SYN from the kernel
        join = options.get("MP_JOIN")
        if join is not None:
            if plan.our_role == "client":
                _refuse(plan, "an MP_JOIN SYN to our client: Linux's path manager opens "
                              "subflows only from the client side")
            plan.kernel_joins = True
            plan.paths = max(plan.paths, 2)
            if not join.hmac_ok:
                _refuse(plan, "an MP_JOIN with a wrong HMAC: Linux never sends one")
            return
        if "MP_CAPABLE" not in options:
            plan.kernel_mptcp = False
        plan.actions.append(Action("kernel_connect", because="SYN received"))
        return
    if "S" in event.flags:  # a SYN/ACK: the kernel listener answers our SYN
        if "MP_CAPABLE" not in options and "MP_JOIN" not in options:
            plan.kernel_mptcp = False
        join = options.get("MP_JOIN")
        if join is not None and not join.hmac_ok:
            _refuse(plan, "an MP_JOIN SYN/ACK with a wrong HMAC: Linux never sends one")
        return
    capable = options.get("MP_CAPABLE")
    if capable is not None and capable.checksum:
        plan.checksums = True
    join = options.get("MP_JOIN")
    if join is not None and not join.hmac_ok:
        _refuse(plan, "an MP_JOIN third ACK with a wrong HMAC: Linux never sends one")
    if "R" in event.flags:
        plan.actions.append(Action("kernel_abort", because="RST received"))
        return
    if "MP_FASTCLOSE" in options:
        if not options["MP_FASTCLOSE"].key_ok:
            _refuse(plan, "an MP_FASTCLOSE with the wrong key: Linux never sends one")
        plan.actions.append(Action("kernel_abort", because="MP_FASTCLOSE received"))
        return
    if "MP_FAIL" in options:
        _refuse(plan, "an MP_FAIL: the kernel sends one only on a DSS checksum failure, "
                      "which needs a corrupting middlebox in the replay lab")
    dss = options.get("DSS")
    if dss is not None and dss.length == 0 and dss.dsn is not None:
        _refuse(plan, "an infinite mapping from the kernel: sent only after MP_FAIL")
    if "ADD_ADDR" in options:
        add = options["ADD_ADDR"]
        if not add.echo:
            if not add.hmac_ok:
                _refuse(plan, "an ADD_ADDR with a wrong HMAC: Linux never sends one")
            plan.signal = True
            plan.paths = max(plan.paths, 2)
    if "REMOVE_ADDR" in options:
        plan.signal = True
        plan.paths = max(plan.paths, 2)
        plan.actions.append(Action("kernel_remove_address", because="REMOVE_ADDR received"))
    if "MP_PRIO" in options:
        plan.paths = max(plan.paths, 2)
        if plan.our_role == "client":
            plan.signal = True
        else:
            plan.kernel_joins = True
        plan.actions.append(Action("kernel_backup", because="MP_PRIO received"))
    if event.payload:
        plan.actions.append(Action("kernel_send", event.payload, "data received"))
    if "F" in event.flags or (dss is not None and dss.data_fin):
        if not any(a.kind == "kernel_close" for a in plan.actions):
            plan.actions.append(Action("kernel_close", because="DATA_FIN/FIN received"))


def _our_segment(plan: Plan, event: ev.SegmentSent) -> None:
    """What our endpoint sends is its choice, except the path manager's moves."""
    options = {option.kind: option for option in event.options}
    if "S" in event.flags and "A" not in event.flags and "MP_JOIN" in options:
        if plan.our_role == "server":
            _refuse(plan, "an MP_JOIN from our server to a Linux client: the client has "
                          "no listener for joins")
        plan.paths = max(plan.paths, 2)
        plan.actions.append(Action("join", event.subflow, "MP_JOIN sent"))
    add = options.get("ADD_ADDR")
    if add is not None and not add.echo:
        plan.paths = max(plan.paths, 2)
        plan.actions.append(Action("announce", because="ADD_ADDR sent"))
    if "REMOVE_ADDR" in options:
        plan.paths = max(plan.paths, 2)
        plan.actions.append(Action("remove_address", 1, "REMOVE_ADDR sent"))
    if "MP_PRIO" in options:
        plan.paths = max(plan.paths, 2)
        plan.actions.append(Action("backup", event.subflow, "MP_PRIO sent"))
    if "MP_FAIL" in options or ("DSS" in options and options["DSS"].length == 0
                                and options["DSS"].dsn is not None):
        _refuse(plan, "our MP_FAIL / infinite mapping: needs a DSS checksum failure, i.e. "
                      "a corrupting middlebox in the replay lab")
    if "MP_FASTCLOSE" in options and not any(a.kind == "abort" for a in plan.actions):
        plan.actions.append(Action("abort", because="MP_FASTCLOSE sent"))
    if "R" in event.flags and "MP_FASTCLOSE" not in options \
            and not any(a.kind == "abort" for a in plan.actions):
        plan.actions.append(Action("abort", because="RST sent"))


# ---------------------------------------------------------------------------------------
# The scripted packet peer (impl.lab.packet_peer): what Linux will not send, it can.


def _scripted_peer_segment(plan: Plan, event: ev.SegmentReceived, opened: bool) -> None:
    """A segment from the packet peer: its own stack's behaviour (`kernel_*` actions, as
    with Linux) or a scripted odd segment (`peer_*`)."""
    options = {option.kind: option for option in event.options}
    join = options.get("MP_JOIN")
    if "S" in event.flags and "A" not in event.flags:
        if join is not None:
            plan.paths = max(plan.paths, 2)
            if not opened:
                # A join the trace's connection never had a say in: our endpoint
                # refuses one only after fallback (3.7), so the peer makes us fall back.
                kind = "peer_join_refused"
            elif plan.our_role == "client":
                kind = "peer_join_to_client"
            else:
                kind = "peer_join"
            plan.actions.append(Action(kind, because="MP_JOIN SYN received"))
            return
        if "MP_CAPABLE" not in options:
            plan.kernel_mptcp = False
        plan.actions.append(Action("kernel_connect", because="SYN received"))
        return
    if "S" in event.flags:
        if "MP_CAPABLE" not in options and join is None:
            plan.kernel_mptcp = False
        if join is not None and not join.hmac_ok:
            joins = [i for i, a in enumerate(plan.actions) if a.kind == "join"]
            arm = Action("peer_join_synack_bad_hmac", because="MP_JOIN SYN/ACK, wrong HMAC")
            plan.actions.insert(joins[-1] if joins else len(plan.actions), arm)
        return
    capable = options.get("MP_CAPABLE")
    if capable is not None and capable.checksum:
        plan.checksums = True
    if join is not None and not join.hmac_ok:
        for index in range(len(plan.actions) - 1, -1, -1):
            if plan.actions[index].kind == "peer_join":
                plan.actions[index] = Action("peer_join_bad_hmac",
                                             because="MP_JOIN third ACK, wrong HMAC")
                break
        else:
            _refuse(plan, "an MP_JOIN third ACK with a wrong HMAC on a join the trace "
                          "does not open")
    if "R" in event.flags:
        plan.actions.append(Action("kernel_abort", because="RST received"))
        return
    if "MP_FASTCLOSE" in options:
        kind = "peer_fastclose" if options["MP_FASTCLOSE"].key_ok else "peer_fastclose_bad_key"
        plan.actions.append(Action(kind, because="MP_FASTCLOSE received"))
        return
    if "MP_FAIL" in options:
        plan.actions.append(Action("peer_mp_fail", because="MP_FAIL received"))
    dss = options.get("DSS")
    if dss is not None and dss.length == 0 and dss.dsn is not None:
        plan.actions.append(Action("peer_infinite_mapping", because="infinite mapping"))
    add = options.get("ADD_ADDR")
    if add is not None and not add.echo:
        plan.paths = max(plan.paths, 2)
        if plan.actions and plan.actions[-1].kind == "join" and "A" in event.flags:
            # On the peer's fourth ACK of our join (3.2): armed before the join starts.
            plan.actions.insert(len(plan.actions) - 1, Action(
                "peer_add_addr_on_join_ack", int(add.hmac_ok), "ADD_ADDR on the 4th ACK"))
        else:
            plan.actions.append(Action("peer_announce" if add.hmac_ok
                                       else "peer_add_addr_bad_hmac",
                                       because="ADD_ADDR received"))
    if "REMOVE_ADDR" in options or "MP_PRIO" in options:
        _refuse(plan, "REMOVE_ADDR / MP_PRIO from the peer together with a segment Linux "
                      "never sends: the packet peer does not script those yet")
    if event.payload:
        plan.actions.append(Action("kernel_send", event.payload, "data received"))
    if "F" in event.flags or (dss is not None and dss.data_fin):
        if not any(a.kind == "kernel_close" for a in plan.actions):
            plan.actions.append(Action("kernel_close", because="DATA_FIN/FIN received"))


def _scripted_our_segment(plan: Plan, event: ev.SegmentSent) -> None:
    """Our path manager's moves against the packet peer, which takes joins in either
    role; our MP_FAIL comes from a payload the peer corrupts under its DSS checksum."""
    options = {option.kind: option for option in event.options}
    if "S" in event.flags and "A" not in event.flags and "MP_JOIN" in options:
        plan.paths = max(plan.paths, 2)
        plan.actions.append(Action("join", event.subflow, "MP_JOIN sent"))
    add = options.get("ADD_ADDR")
    if add is not None and not add.echo:
        plan.paths = max(plan.paths, 2)
        plan.actions.append(Action("announce", because="ADD_ADDR sent"))
    if "REMOVE_ADDR" in options:
        plan.paths = max(plan.paths, 2)
        plan.actions.append(Action("remove_address", 1, "REMOVE_ADDR sent"))
    if "MP_PRIO" in options:
        plan.paths = max(plan.paths, 2)
        plan.actions.append(Action("backup", event.subflow, "MP_PRIO sent"))
    if "MP_FAIL" in options:
        plan.checksums = True
        plan.actions.append(Action("peer_corrupt_data", because="MP_FAIL sent"))
    elif "DSS" in options and options["DSS"].length == 0 and options["DSS"].dsn is not None:
        plan.actions.append(Action("send", 100, "infinite mapping sent"))
    if "MP_FASTCLOSE" in options and not any(a.kind == "abort" for a in plan.actions):
        plan.actions.append(Action("abort", because="MP_FASTCLOSE sent"))
    # A RST with MP_TCPRST resets one subflow for a reason of our endpoint's own (3.6:
    # a bad join HMAC, ...): its reaction, not our application's abort.
    if "R" in event.flags and "MP_FASTCLOSE" not in options and "MP_TCPRST" not in options \
            and not any(a.kind == "abort" for a in plan.actions):
        plan.actions.append(Action("abort", because="RST sent"))
