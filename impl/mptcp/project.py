"""`project(connection)`: the one abstraction function from an `MptcpConnection` onto a
state of the spec (DESIGN.md principle 5). Lockstep tests and the monitor compare
through it; nothing else reaches from one side into the other.

The result is a dict with exactly the keys of `SystemSpec.state_keys()` (as
`spec.monitor` freezes them): the connection machine under "conn.", subflow slot i
under "sf{i}.". How each part is read:

- slots: `connection.subflows[i]` is slot i (slot 0 the initial subflow); a connection
  with more subflows than `Config.max_subflows` cannot be projected (`ProjectionError`).
  Empty slots are CLOSED with initial variables.
- subflow control state: the TCP state (RFC 9293 names), except that an MP_JOIN
  initiator whose subflow is ESTABLISHED but has not seen the fourth ACK is in
  PRE_ESTABLISHED (RFC 8684 3.2).
- connection control state: SYN_SENT / SYN_RECEIVED until the key exchange (or the
  fallback) completes the initial subflow's handshake; then Appendix D's data-level
  state, computed from the DATA_FINs (after fallback: from the initial subflow's TCP
  FINs, 3.7); ABORTING after abort() or the peer's MP_FASTCLOSE while a subflow lives;
  CLOSED once no subflow lives and the connection was done, aborting, in its handshake
  or fallen back (as the spec's closing rules say).
- data counters, in units of one byte, relative to the IDSN + 1 of their direction:
  `written` / `delivered` (what the application wrote / read), `snd_nxt` (one past the
  highest byte that left on any subflow, through that subflow's mappings; + 1 once our
  DATA_FIN left), `snd_una` (the peer's DATA_ACK), `rcv_nxt` (bytes received in order),
  `rcv_high`, `peer_fin_dsn`. Counts above a variable's bound saturate at the bound: with
  the default `Config` (4 units) only the first bytes are told apart; lockstep tests
  build the spec with a `Config` whose `max_bytes` holds the whole test.

Abstracted away (`ABSTRACTED`: not derivable from the connection's present state, so
comparisons skip them; `project` still fills them with its best reading):

- `rcv_high`: the spec counts a payload as received when its segment arrives, even if
  TCP still holds it behind a subflow-level hole; we see only data-level holes.
- `peer_fin_acked`, `local_announced_*`: histories of what was sent (a DATA_ACK covering
  the DATA_FIN; ADD_ADDRs sent and not yet withdrawn), not kept by the connection.
- `local_up_*`, `remote_known_0`: facts of the host's addresses and of the peer's
  initial address, which the connection does not track.
- subflow `backup`: the spec keeps the B flag last signalled in either direction; the
  connection keeps our own wish.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from impl.tcp.state import TcpState
from spec.core import Config, SystemSpec
from spec.system import build_system

__all__ = ["ABSTRACTED", "ProjectionError", "matches", "project", "subflow_state"]

S = TcpState

ABSTRACTED_CONNECTION = ("rcv_high", "peer_fin_acked", "remote_known_0")
ABSTRACTED_PREFIXES = ("local_announced_", "local_up_")
ABSTRACTED_SUBFLOW = ("backup",)


class ProjectionError(ValueError):
    """The connection has no image in the spec (e.g. more subflows than slots)."""


def _abstracted(key: str) -> bool:
    prefix, _, name = key.partition(".")
    if prefix == "conn":
        return name in ABSTRACTED_CONNECTION or name.startswith(ABSTRACTED_PREFIXES)
    return name in ABSTRACTED_SUBFLOW


def ABSTRACTED(system: SystemSpec | None = None) -> frozenset[str]:  # noqa: N802
    """The state keys comparisons skip (see the module docstring)."""
    system = system if system is not None else build_system()
    return frozenset(key for key in system.state_keys() if _abstracted(key))


def matches(projected: Mapping[str, Any], state: Mapping[str, Any] | tuple) -> bool:
    """`projected` agrees with a spec state on every key that is not abstracted away."""
    values = dict(state)
    return all(values[key] == value for key, value in projected.items()
               if not _abstracted(key))


def subflow_state(subflow) -> str:
    """The spec's control state of one subflow."""
    tcp = subflow.tcp
    if tcp is None:
        return "CLOSED"
    state = tcp.state
    join = subflow.join
    if (state is S.ESTABLISHED and join is not None and join.active
            and not join.fourth_ack_seen):
        return "PRE_ESTABLISHED"
    sender = tcp.sender
    if sender.fin_seq is not None and sender.snd_nxt <= sender.fin_seq:
        # close() queued a FIN that has not left yet: the spec moves on send_fin.
        unsent = {S.FIN_WAIT_1: "ESTABLISHED", S.LAST_ACK: "CLOSE_WAIT",
                  S.CLOSING: "CLOSE_WAIT"}
        return unsent.get(state, state.name)
    return state.name


def _fallback_fin_sent(subflow) -> bool:
    sender = subflow.tcp.sender
    return sender.fin_seq is not None and sender.snd_nxt > sender.fin_seq


def _our_fin_acked(connection) -> bool:
    """Our DATA_FIN is acknowledged: by a DATA_ACK, or after fallback by the ACK of the
    initial subflow's FIN (3.7)."""
    if connection.fin_acked or not connection.fallback:
        return connection.fin_acked
    initial = connection.subflows[0]
    sender = initial.tcp.sender
    return _fallback_fin_sent(initial) and sender.snd_una > sender.fin_seq


def _handshake_done(connection) -> bool:
    if connection.remote_key is not None:
        return True
    if not connection.fallback:
        return False
    state = connection.subflows[0].tcp.state
    if connection.client:
        return state is not S.SYN_SENT
    return state is not S.SYN_RECEIVED


def _connection_state(connection, slots: list[str]) -> str:
    live = any(state != "CLOSED" for state in slots)
    if connection.aborted_by_app or connection.closed_reason == "fastclose":
        return "ABORTING" if live else "CLOSED"
    if not _handshake_done(connection):
        if not live:
            return "CLOSED"
        return "SYN_SENT" if connection.client else "SYN_RECEIVED"
    ours = connection.fin_dsn is not None
    # Appendix D moves on the DATA_FIN's arrival, even ahead of missing data.
    reassembly = connection.reassembly
    theirs = connection.peer_closed or (reassembly is not None
                                        and reassembly.fin_dsn is not None)
    if not ours:
        state = "CLOSE_WAIT" if theirs else "ESTABLISHED"
    elif not _our_fin_acked(connection):
        if not theirs:
            state = "FIN_WAIT_1"
        else:
            state = "LAST_ACK" if connection._peer_closed_first else "CLOSING"
    else:
        state = "TIME_WAIT" if theirs else "FIN_WAIT_2"
    if not live and (state == "TIME_WAIT" or connection.fallback):
        return "CLOSED"
    return state


def _sent_end(connection, subflow) -> int:
    """One past the highest data offset this subflow has put on the wire."""
    tcp = subflow.tcp
    sender = tcp.sender
    sent = sender.snd_nxt - tcp.iss  # relative: first payload byte is 1
    if sender.fin_seq is not None and sender.snd_nxt > sender.fin_seq:
        sent -= 1
    base = connection.local_idsn + 1
    best = 0
    for record in subflow.records.records:
        if record.ssn < sent:
            best = max(best, record.dsn + min(record.length, sent - record.ssn) - base)
    plain = plain_send_mapping(connection, subflow)
    if plain is not None:
        ssn, offset = plain
        if sent > ssn:
            best = max(best, offset + sent - ssn)
    return best


def plain_send_mapping(connection, subflow) -> tuple[int, int] | None:
    """After fallback, (subflow sequence, data offset) of the byte where this subflow's
    unmapped stream is the data stream: the infinite mapping we sent (3.7), or the
    subflow's start (fallback during the handshake)."""
    if not connection.fallback or not subflow.initial:
        return None
    mapping = subflow.infinite_mapping
    if mapping is not None:
        return mapping.ssn, mapping.dsn - (connection.local_idsn + 1)
    return 1, 0


def _clamp(value: int, variable) -> int:
    return max(variable.lo, min(variable.hi, value))


def project(connection, config: Config | None = None) -> dict[str, Any]:
    """The spec state (a dict over `SystemSpec.state_keys()`) of `connection`."""
    system = build_system(config)
    slots_count = system.config.max_subflows
    subflows = connection.subflows
    if len(subflows) > slots_count:
        raise ProjectionError(f"{len(subflows)} subflows but the spec has {slots_count} slots")
    values = system.initial_values()
    slot_states = []
    for index, subflow in enumerate(subflows):
        prefix = f"sf{index}"
        state = subflow_state(subflow)
        slot_states.append(state)
        join = subflow.join
        values[f"{prefix}.state"] = state
        values[f"{prefix}.active"] = subflow.active
        values[f"{prefix}.backup"] = bool(subflow.backup)
        if join is not None:
            ids = system.config.max_address_ids - 1
            values[f"{prefix}.local_id"] = min(join.address_id, ids)
            values[f"{prefix}.remote_id"] = min(join.remote_address_id or 0, ids)
    conn = {}
    conn["state"] = _connection_state(connection, slot_states)
    conn["opened"] = True
    conn["peer_key"] = connection.remote_key is not None
    conn["confirmed"] = connection.remote_key is not None and (
        not connection.client or connection.fully_established)
    unsent_infinite = any(sf.infinite_mapping is not None and not sf.infinite_mapping_sent
                          for sf in subflows)
    conn["fallback"] = connection.fallback and not unsent_infinite
    conn["fail_rcvd"] = connection.mp_fail_received
    conn["fastclosed"] = connection.closed_reason == "fastclose" or connection.fastclose_sent
    written = connection.bytes_written
    conn["written"] = written
    snd_nxt = max((_sent_end(connection, sf) for sf in subflows if sf.tcp is not None),
                  default=0)
    fin_sent = connection.data_fin_on_wire or (
        connection.fallback and bool(subflows) and _fallback_fin_sent(subflows[0]))
    conn["fin_sent"] = fin_sent
    conn["snd_nxt"] = written + 1 if fin_sent else snd_nxt
    base = connection.local_idsn + 1
    if connection.fallback and _our_fin_acked(connection):
        conn["snd_una"] = written + 1  # the ACK of our FIN acknowledges the DATA_FIN
    else:
        conn["snd_una"] = connection.snd_una - base
    rcv_nxt = connection.bytes_read + len(connection.received)
    conn["rcv_nxt"] = rcv_nxt
    conn["delivered"] = connection.bytes_read
    reassembly = connection.reassembly
    rcv_high = rcv_nxt
    peer_fin = False
    peer_fin_dsn = 0
    if connection.fallback and (reassembly is None or reassembly.fin_dsn is None):
        peer_fin = connection.peer_closed  # after fallback the TCP FIN is the DATA_FIN
        peer_fin_dsn = rcv_nxt if peer_fin else 0
    elif reassembly is not None:
        remote_base = connection.remote_idsn + 1
        highest = reassembly.queue.highest
        if highest is not None:
            rcv_high = max(rcv_high, highest - remote_base)
        if reassembly.fin_dsn is not None:
            peer_fin = True
            peer_fin_dsn = reassembly.fin_dsn - remote_base
    conn["rcv_high"] = rcv_high
    conn["peer_fin"] = peer_fin
    conn["peer_fin_dsn"] = peer_fin_dsn
    conn["peer_fin_acked"] = bool(peer_fin and not connection.fallback and reassembly
                                  is not None and reassembly.fin_received)
    for index in range(1, system.config.max_address_ids):
        conn[f"local_up_{index}"] = index < len(connection.host.addresses)
        conn[f"local_announced_{index}"] = index in connection.signals.announced
        conn[f"remote_known_{index}"] = index in connection.signals.remote_addresses
    conn["remote_known_0"] = True
    for name, value in conn.items():
        variable = None if name == "state" else system.connection.variable(name)
        if variable is not None and variable.sort == "int":
            value = _clamp(value, variable)
        values[f"conn.{name}"] = value
    return values
