"""The concrete events of one MPTCP endpoint, as frozen dataclasses, and their abstraction
onto the spec's labels.

The same types are the implementation's event log and the monitor's input (serialized by
`spec.trace`). Four families:

- application calls: AppListen, AppConnect, AppAccept, AppSend, AppRecv, AppShutdown,
  AppClose, AppAbort;
- segments: SegmentSent / SegmentReceived on a subflow slot, with TCP flags (letters of
  "SAFR"; others such as "P" are ignored), payload length, the data sequence offset of
  the payload (`dsn`, relative to IDSN + 1, when known: from the DSS mapping covering the
  payload, the MP_CAPABLE data rule, or fallback), and a summary of the MPTCP options
  (MpCapable, MpJoin, Dss, AddAddr, RemoveAddr, MpPrio, MpFail, MpFastclose, MpTcpRst);
  a received segment also says whether it acknowledges the FIN we sent (`acks_fin`);
  validity judgements the receiver makes (`hmac_ok`, `key_ok`) are part of the summary;
- timers: RtoExpired, ConnectTimedOut, TimeWaitExpired (per subflow), CloseTimerExpired,
  AddAddrTimerExpired (per connection);
- path events: AddressAdded, AddressRemoved (local address IDs), LinkDown, LinkUp.

Lengths and offsets are in the spec's abstract units; a logger of real bytes maps them
(the monitor runs with a `Config` whose `max_bytes` is large enough).

`to_steps(event)` is the abstraction: one event, one or more `Step`s (the segment rules
are in `spec.labels`). `to_step` is the same for events that make exactly one step, and
`from_step(step)` gives a concrete representative with `to_steps(from_step(s)) == (s,)`,
which turns Z3 witnesses into traces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spec.core import Step
from spec.labels import build_labels


class EventError(ValueError):
    """An event that no label describes (e.g. SYN with FIN, payload without a DSN)."""


# -- MPTCP option summaries (RFC 8684 section 3, option subtypes) -------------------------


@dataclass(frozen=True)
class MpCapable:
    """MP_CAPABLE: keys carried (0 on SYN, 1 on SYN/ACK, 2 on the third ACK)."""

    keys: int = 0
    checksum: bool = False
    kind = "MP_CAPABLE"


@dataclass(frozen=True)
class MpJoin:
    """MP_JOIN; `hmac_ok` is the receiver's verdict on the (truncated) HMAC."""

    address_id: int = 0
    backup: bool = False
    hmac_ok: bool = True
    kind = "MP_JOIN"


@dataclass(frozen=True)
class Dss:
    """DSS: DATA_ACK (or None), mapping (dsn, length; length 0 = infinite), DATA_FIN (the
    last unit of the mapping)."""

    data_ack: int | None = None
    dsn: int | None = None
    length: int | None = None
    data_fin: bool = False
    kind = "DSS"


@dataclass(frozen=True)
class AddAddr:
    address_id: int = 0
    echo: bool = False
    hmac_ok: bool = True
    kind = "ADD_ADDR"


@dataclass(frozen=True)
class RemoveAddr:
    address_ids: tuple[int, ...] = ()
    kind = "REMOVE_ADDR"


@dataclass(frozen=True)
class MpPrio:
    backup: bool = False
    kind = "MP_PRIO"


@dataclass(frozen=True)
class MpFail:
    dsn: int = 0
    kind = "MP_FAIL"


@dataclass(frozen=True)
class MpFastclose:
    """MP_FASTCLOSE; `key_ok`: it carried the receiver's key."""

    key_ok: bool = True
    kind = "MP_FASTCLOSE"


@dataclass(frozen=True)
class MpTcpRst:
    reason: int = 0
    transient: bool = False
    kind = "MP_TCPRST"


Option = MpCapable | MpJoin | Dss | AddAddr | RemoveAddr | MpPrio | MpFail | MpFastclose | MpTcpRst
OPTION_TYPES: dict[str, type] = {
    cls.kind: cls
    for cls in (MpCapable, MpJoin, Dss, AddAddr, RemoveAddr, MpPrio, MpFail, MpFastclose,
                MpTcpRst)
}

# -- application calls ---------------------------------------------------------------------


@dataclass(frozen=True)
class AppListen:
    pass


@dataclass(frozen=True)
class AppConnect:
    pass


@dataclass(frozen=True)
class AppAccept:
    pass


@dataclass(frozen=True)
class AppSend:
    bytes: int


@dataclass(frozen=True)
class AppRecv:
    bytes: int


@dataclass(frozen=True)
class AppShutdown:
    pass


@dataclass(frozen=True)
class AppClose:
    pass


@dataclass(frozen=True)
class AppAbort:
    pass


# -- segments --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentSent:
    subflow: int
    flags: str = "A"
    payload: int = 0
    dsn: int | None = None
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class SegmentReceived:
    subflow: int
    flags: str = "A"
    payload: int = 0
    dsn: int | None = None
    options: tuple[Option, ...] = ()
    acks_fin: bool = False


# -- timers and path events ----------------------------------------------------------------


@dataclass(frozen=True)
class RtoExpired:
    subflow: int


@dataclass(frozen=True)
class ConnectTimedOut:
    subflow: int


@dataclass(frozen=True)
class TimeWaitExpired:
    subflow: int


@dataclass(frozen=True)
class CloseTimerExpired:
    pass


@dataclass(frozen=True)
class AddAddrTimerExpired:
    pass


@dataclass(frozen=True)
class AddressAdded:
    address_id: int


@dataclass(frozen=True)
class AddressRemoved:
    address_id: int


@dataclass(frozen=True)
class LinkDown:
    subflow: int


@dataclass(frozen=True)
class LinkUp:
    subflow: int


Event = (
    AppListen | AppConnect | AppAccept | AppSend | AppRecv | AppShutdown | AppClose | AppAbort
    | SegmentSent | SegmentReceived | RtoExpired | ConnectTimedOut | TimeWaitExpired
    | CloseTimerExpired | AddAddrTimerExpired | AddressAdded | AddressRemoved | LinkDown
    | LinkUp
)
EVENT_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (AppListen, AppConnect, AppAccept, AppSend, AppRecv, AppShutdown, AppClose,
                AppAbort, SegmentSent, SegmentReceived, RtoExpired, ConnectTimedOut,
                TimeWaitExpired, CloseTimerExpired, AddAddrTimerExpired, AddressAdded,
                AddressRemoved, LinkDown, LinkUp)
}

# Events that are one label, with the label's parameters read from the event's fields.
_SIMPLE: dict[type, str] = {
    AppListen: "app_listen", AppConnect: "app_connect", AppAccept: "app_accept",
    AppSend: "app_send", AppRecv: "app_recv", AppShutdown: "app_shutdown",
    AppClose: "app_close", AppAbort: "app_abort", RtoExpired: "timeout_rto",
    ConnectTimedOut: "timeout_connect", TimeWaitExpired: "timeout_time_wait",
    CloseTimerExpired: "timeout_close", AddAddrTimerExpired: "timeout_add_addr",
    AddressAdded: "path_address_added", AddressRemoved: "path_address_removed",
    LinkDown: "path_link_down", LinkUp: "path_link_up",
}
_SIMPLE_BY_LABEL = {label: cls for cls, label in _SIMPLE.items()}
_LABELS = build_labels()


def _step(label: str, index: int | None, **values: Any) -> Step:
    """A step of `label` with exactly the label's parameters, taken from `values`."""
    spec = _LABELS[label]
    params = {param.name: values[param.name] for param in spec.params}
    return Step(label, index if spec.addressed else None, params)


def _options(options: tuple[Option, ...], cls: type) -> list[Any]:
    return [option for option in options if isinstance(option, cls)]


def _one(options: tuple[Option, ...], cls: type) -> Any | None:
    found = _options(options, cls)
    if len(found) > 1:
        raise EventError(f"more than one {cls.kind} option on one segment")
    return found[0] if found else None


def _segment_steps(event: SegmentSent | SegmentReceived) -> tuple[Step, ...]:
    side = "recv" if isinstance(event, SegmentReceived) else "send"
    flags = set(event.flags.upper())
    index = event.subflow
    options = event.options
    if not flags <= set("SAFRPUEC"):
        raise EventError(f"unknown TCP flags {event.flags!r}")
    if event.payload < 0:
        raise EventError("negative payload length")
    mpc, join = _one(options, MpCapable), _one(options, MpJoin)
    dss, fastclose, fail = _one(options, Dss), _one(options, MpFastclose), _one(options, MpFail)
    acks_fin = isinstance(event, SegmentReceived) and event.acks_fin

    if "R" in flags:  # RFC 8684 3.5, 3.6: MP_FASTCLOSE / MP_FAIL may ride on the RST
        if "S" in flags:
            raise EventError("SYN with RST")
        steps = []
        if fastclose is not None:
            steps.append(_step(f"{side}_fastclose", index,
                               key_ok=fastclose.key_ok if side == "recv" else True))
        if fail is not None:
            steps.append(_step(f"{side}_mp_fail", index))
        tcprst = _one(options, MpTcpRst)
        steps.append(_step(f"{side}_rst", index, reason=-1 if tcprst is None else tcprst.reason))
        return tuple(steps)

    if "S" in flags:
        if "F" in flags:
            raise EventError("SYN with FIN")
        shape = "synack" if "A" in flags else "syn"
        if mpc is not None:
            return (_step(f"{side}_{shape}_mpc", index),)
        if join is not None:
            return (_step(f"{side}_{shape}_join", index, address_id=join.address_id,
                          backup=join.backup, hmac_ok=join.hmac_ok),)
        return (_step(f"{side}_{shape}", index),)

    steps: list[Step] = []
    payload_done = False
    if mpc is not None:  # third ACK, maybe with the first data at DSN 0 (3.1)
        steps.append(_step(f"{side}_ack_mpc", index, bytes=event.payload))
        payload_done = True
    elif join is not None:
        steps.append(_step(f"{side}_ack_join", index, hmac_ok=join.hmac_ok))
    for add in _options(options, AddAddr):
        steps.append(_step(f"{side}_add_addr", index, address_id=add.address_id,
                           echo=add.echo, hmac_ok=add.hmac_ok))
    for remove in _options(options, RemoveAddr):
        steps.extend(_step(f"{side}_remove_addr", index, address_id=address_id)
                     for address_id in remove.address_ids)
    for prio in _options(options, MpPrio):
        steps.append(_step(f"{side}_mp_prio", index, backup=prio.backup))
    if fail is not None:
        steps.append(_step(f"{side}_mp_fail", index))
    mapped = False
    if dss is not None:
        if dss.data_ack is not None:
            steps.append(_step(f"{side}_data_ack", index, ack=dss.data_ack))
        if dss.length == 0:
            steps.append(_step(f"{side}_infinite_mapping", index))
        mapped = dss.dsn is not None and bool(dss.length)
        if dss.data_fin and not mapped:
            raise EventError("DATA_FIN without a mapping")
    if fastclose is not None:
        steps.append(_step(f"{side}_fastclose", index,
                           key_ok=fastclose.key_ok if side == "recv" else True))
    if event.payload and not payload_done:
        dsn = event.dsn
        if dsn is None and mapped:
            dsn = dss.dsn
        if dsn is None:
            raise EventError("payload without a data sequence offset (dsn)")
        kind = "data" if mapped else "data_plain"
        steps.append(_step(f"{side}_{kind}", index, dsn=dsn, bytes=event.payload))
    if dss is not None and dss.data_fin:
        steps.append(_step(f"{side}_data_fin", index, dsn=dss.dsn + dss.length - 1))
    if "F" in flags:
        steps.append(_step(f"{side}_fin", index))
    if acks_fin:
        steps.append(_step("recv_ack_of_fin", index))
    if not steps:
        steps.append(_step(f"{side}_ack", index))
    return tuple(steps)


def to_steps(event: Event) -> tuple[Step, ...]:
    """The steps one event makes, in the order the spec processes them."""
    if isinstance(event, SegmentSent | SegmentReceived):
        return _segment_steps(event)
    label = _SIMPLE.get(type(event))
    if label is None:
        raise EventError(f"not an event of the spec: {event!r}")
    return (_step(label, getattr(event, "subflow", None), **vars(event)),)


def to_step(event: Event) -> Step:
    """The one step of an event that makes exactly one (most events do)."""
    steps = to_steps(event)
    if len(steps) != 1:
        raise EventError(f"{event!r} makes {len(steps)} steps: {[s.label for s in steps]}")
    return steps[0]


def from_step(step: Step) -> Event:
    """A concrete event whose abstraction is exactly `step`."""
    label, index, p = step.label, step.index, dict(step.params)
    if label in _SIMPLE_BY_LABEL:
        cls = _SIMPLE_BY_LABEL[label]
        fields = dict(p)
        if index is not None:
            fields["subflow"] = index
        return cls(**fields)
    side, _, what = label.partition("_")
    segment = SegmentReceived if side == "recv" else SegmentSent
    if index is None:
        raise EventError(f"{label} needs a subflow slot")

    def seg(flags: str = "A", payload: int = 0, dsn: int | None = None,
            options: tuple = (), **extra: Any) -> Event:
        return segment(index, flags, payload, dsn, tuple(options), **extra)

    builders = {
        "syn_mpc": lambda: seg("S", options=(MpCapable(0),)),
        "synack_mpc": lambda: seg("SA", options=(MpCapable(1),)),
        "ack_mpc": lambda: seg(payload=p["bytes"], dsn=0 if p["bytes"] else None,
                               options=(MpCapable(2),)),
        "syn": lambda: seg("S"),
        "synack": lambda: seg("SA"),
        "syn_join": lambda: seg("S", options=(MpJoin(p["address_id"], p["backup"]),)),
        "synack_join": lambda: seg("SA", options=(
            MpJoin(p["address_id"], p["backup"], p.get("hmac_ok", True)),)),
        "ack_join": lambda: seg(options=(MpJoin(hmac_ok=p.get("hmac_ok", True)),)),
        "ack": lambda: seg(),
        "fin": lambda: seg("FA"),
        "ack_of_fin": lambda: seg(acks_fin=True),
        "rst": lambda: seg("R", options=(MpTcpRst(p["reason"]),) if p["reason"] >= 0 else ()),
        "data": lambda: seg(payload=p["bytes"], dsn=p["dsn"],
                            options=(Dss(dsn=p["dsn"], length=p["bytes"]),)),
        "data_plain": lambda: seg(payload=p["bytes"], dsn=p["dsn"]),
        "data_ack": lambda: seg(options=(Dss(data_ack=p["ack"]),)),
        "data_fin": lambda: seg(options=(Dss(dsn=p["dsn"], length=1, data_fin=True),)),
        "infinite_mapping": lambda: seg(options=(Dss(dsn=0, length=0),)),
        "add_addr": lambda: seg(options=(
            AddAddr(p["address_id"], p["echo"], p.get("hmac_ok", True)),)),
        "remove_addr": lambda: seg(options=(RemoveAddr((p["address_id"],)),)),
        "mp_prio": lambda: seg(options=(MpPrio(p["backup"]),)),
        "mp_fail": lambda: seg(options=(MpFail(),)),
        "fastclose": lambda: seg(options=(MpFastclose(p.get("key_ok", True)),)),
    }
    if side not in ("send", "recv") or what not in builders:
        raise EventError(f"no event for label {label!r}")
    return builders[what]()
