"""Segments of an `MptcpConnection` as events of the spec (`spec.events`): what the
endpoint under test sent or received, in the spec's vocabulary, for lockstep tests and
live monitoring (`spec.monitor.Monitor`).

`events_for_segment(connection, subflow, direction, segment)` is the one translation:

- call it for a sent segment after the endpoint emitted it, and for a received one
  before the endpoint processes it (receiver judgements such as `hmac_ok` are computed
  here from the connection's keys and nonces, as the endpoint will judge);
- data offsets are bytes (one unit = one byte) relative to IDSN + 1 of their direction
  (ours for sent data and received DATA_ACKs, the peer's for received data and sent
  DATA_ACKs), so the monitor must run with a `Config` whose `max_bytes` holds them;
- a payload's `dsn` comes from the DSS mapping on the segment, else from a mapping the
  subflow sent or received earlier, else (after fallback) from where the subflow's
  plain stream meets the data stream; a received payload with none of these (its
  mapping has not arrived yet) is reported without its payload.

A pcap-to-events converter (model_checks) needs the same mapping from wire options to
option summaries; `option_summary` is written so that the two can share it.
"""

from __future__ import annotations

import hmac as _hmac

from impl.crypto import add_addr_hmac, join_ack_hmac, join_syn_ack_hmac
from impl.wire import mptcp_options as wire
from impl.wire.tcp import TcpFlags
from spec import events as spec

from .dss import widen
from .project import plain_send_mapping

__all__ = ["events_for_segment", "flags_text", "option_summary"]

SENT, RECEIVED = "sent", "received"


def flags_text(flags: int) -> str:
    return "".join(letter for bit, letter in ((TcpFlags.SYN, "S"), (TcpFlags.ACK, "A"),
                                               (TcpFlags.FIN, "F"), (TcpFlags.RST, "R"))
                   if flags & bit)


def _relative(value: int, bits: int, reference: int, base: int) -> int:
    return widen(value, bits, reference) - base


def option_summary(connection, subflow, direction: str, option) -> object | None:
    """One wire option as a `spec.events` option summary (None: not an MPTCP option
    the spec looks at)."""
    received = direction == RECEIVED
    if received and connection.fallback:
        return None  # 3.7: after fallback no MPTCP option is read
    if received and connection.remote_key is None and not isinstance(
            option, wire.MpCapable | wire.MpJoinSyn | wire.MpJoinSynAck | wire.MpJoinAck
            | wire.MpTcpRst | wire.MpFastclose):
        # Before the peer's key is known a DSS or address option cannot be read (its
        # DSN is relative to an unknown IDSN, its HMAC unverifiable); the endpoint
        # takes the segment as one without MPTCP options (3.7).
        return None
    local_base = connection.local_idsn + 1
    remote_base = connection.remote_idsn + 1 if connection.remote_idsn is not None else 0
    rcv_reference = connection.reassembly.rcv_nxt if connection.reassembly else remote_base
    if isinstance(option, wire.MpCapable):
        keys = (option.sender_key is not None) + (option.receiver_key is not None)
        return spec.MpCapable(keys, option.checksum_required)
    if isinstance(option, wire.MpJoinSyn):
        return spec.MpJoin(option.address_id, option.backup)
    if isinstance(option, wire.MpJoinSynAck):
        ok = True
        if received and subflow.join is not None and connection.remote_key is not None:
            ok = join_syn_ack_hmac(connection.remote_key, connection.local_key,
                                   option.sender_nonce, subflow.join.local_nonce
                                   ) == option.sender_truncated_hmac
        return spec.MpJoin(option.address_id, option.backup, ok)
    if isinstance(option, wire.MpJoinAck):
        ok = True
        join = subflow.join
        if received and join is not None and connection.remote_key is not None:
            expected = join_ack_hmac(connection.remote_key, connection.local_key,
                                     join.remote_nonce, join.local_nonce)
            ok = _hmac.compare_digest(expected, bytes(option.sender_hmac))
        address_id = join.address_id if join is not None else 0
        return spec.MpJoin(address_id, False, ok)
    if isinstance(option, wire.Dss):
        data_ack = dsn = length = None
        if option.data_ack is not None:
            bits = 64 if option.data_ack_is_64bit else 32
            data_ack = (_relative(option.data_ack, bits, connection.snd_una, local_base)
                        if received else
                        _relative(option.data_ack, bits, rcv_reference, remote_base))
        mapping = option.mapping
        if mapping is not None:
            bits = 64 if mapping.dsn_is_64bit else 32
            dsn = (_relative(mapping.dsn, bits, rcv_reference, remote_base) if received
                   else _relative(mapping.dsn, bits, connection.snd_una, local_base))
            length = mapping.data_level_length
        return spec.Dss(data_ack, dsn, length, option.data_fin)
    if isinstance(option, wire.AddAddr):
        ok = True
        if received and not option.echo and connection.remote_key is not None:
            ok = add_addr_hmac(connection.remote_key, connection.local_key, option.address_id,
                               option.address, option.port) == option.truncated_hmac
        return spec.AddAddr(option.address_id, option.echo, ok)
    if isinstance(option, wire.RemoveAddr):
        return spec.RemoveAddr(tuple(option.address_ids))
    if isinstance(option, wire.MpPrio):
        return spec.MpPrio(option.backup)
    if isinstance(option, wire.MpFail):
        base = remote_base if not received else local_base
        reference = rcv_reference if not received else connection.snd_una
        return spec.MpFail(_relative(option.dsn, 64, reference, base))
    if isinstance(option, wire.MpFastclose):
        return spec.MpFastclose(option.receiver_key == connection.local_key
                                if received else True)
    if isinstance(option, wire.MpTcpRst):
        return spec.MpTcpRst(int(option.reason), option.transient)
    return None


_UNBOUNDED = 1 << 62


def _sent_mappings(connection, subflow) -> list[tuple[int, int, int]]:
    """(subflow sequence, data offset, length) of what this subflow sent, in ssn order."""
    base = connection.local_idsn + 1
    found = [(r.ssn, r.dsn - base, r.length) for r in subflow.records.records]
    plain = plain_send_mapping(connection, subflow)
    if plain is not None:
        found.append((plain[0], plain[1], _UNBOUNDED))
    return found


def _received_mappings(connection, subflow, header) -> list[tuple[int, int, int]]:
    """(subflow sequence, data offset, length) of what the peer mapped on this subflow:
    the mapping on this segment first, then those received earlier (3.3.1), MP_CAPABLE's
    implicit mapping at DSN 0 (3.1), an infinite mapping or fallback's plain stream (3.7)."""
    found = []
    base = connection.remote_idsn + 1 if connection.remote_idsn is not None else None
    reference = connection.reassembly.rcv_nxt if connection.reassembly else 0
    for option in header.mptcp_options():
        mapping = option.mapping if isinstance(option, wire.Dss) else None
        if base is not None and mapping is not None and mapping.data_level_length and (
                mapping.subflow_sequence):
            start = _relative(mapping.dsn, 64 if mapping.dsn_is_64bit else 32, reference, base)
            length = mapping.data_level_length - (1 if option.data_fin else 0)
            found.append((mapping.subflow_sequence, start, length))
        if isinstance(option, wire.MpCapable) and option.data_length:
            found.append((1, 0, option.data_length))
    receiver = subflow.receiver
    if base is not None:
        found += [(m.ssn, m.dsn - base, m.length) for m in receiver.mappings]
        if receiver.infinite_dsn is not None:
            found.append((receiver.infinite_ssn, receiver.infinite_dsn - base, _UNBOUNDED))
    if connection.fallback and subflow.initial and receiver.infinite_dsn is None:
        found.append((1, 0, _UNBOUNDED))
    return found


def _chunks(mappings, relative_seq: int, length: int) -> list[tuple[int, int]]:
    """(data offset, length) pieces of subflow bytes [relative_seq, +length), one per
    mapping that covers them; bytes no mapping covers (yet) are left out."""
    out: list[tuple[int, int]] = []
    position, end = relative_seq, relative_seq + length
    while position < end:
        covering = [m for m in mappings if m[0] <= position < m[0] + m[2]]
        if covering:
            ssn, offset, mapped = covering[0]
            count = min(end, ssn + mapped) - position
            if offset + position - ssn >= 0:
                out.append((offset + position - ssn, count))
        else:
            later = [m[0] for m in mappings if m[0] > position]
            count = (min(later) if later else end) - position
            count = min(count, end - position)
        position += count
    return out


def events_for_segment(connection, subflow, direction: str, segment) -> list:
    """The spec events of one segment of `subflow` (see the module docstring). A payload
    that spans several mappings becomes one event per mapping (the first carries the
    options; the last the FIN flag and `acks_fin`), as if the segment had been cut."""
    if direction not in (SENT, RECEIVED):
        raise ValueError(f"direction is {SENT!r} or {RECEIVED!r}, not {direction!r}")
    slot = connection.subflows.index(subflow)
    header = segment.header
    flags = flags_text(int(header.flags))
    options = tuple(summary for summary in (
        option_summary(connection, subflow, direction, option)
        for option in header.mptcp_options()) if summary is not None)
    tcp = subflow.tcp
    chunks: list[tuple[int, int]] = []
    payload = len(segment.payload)
    if payload and "S" not in flags and "R" not in flags:
        if direction == SENT:
            relative_seq = (header.seq - tcp.iss) % (1 << 32)
            mappings = _sent_mappings(connection, subflow)
        else:
            relative_seq = (header.seq - tcp.receiver.irs) % (1 << 32)
            mappings = _received_mappings(connection, subflow, header)
        chunks = _chunks(mappings, relative_seq, payload)
    acks_fin = False
    if direction == RECEIVED:
        sender = tcp.sender
        acks_fin = bool(
            "A" in flags and "R" not in flags and sender.fin_seq is not None
            and sender.snd_nxt > sender.fin_seq and not tcp.is_closed
            and (header.ack - sender.fin_seq - 1) % (1 << 32) < (1 << 31))
    mp_capable = next((o for o in options if isinstance(o, spec.MpCapable)), None)
    if direction == RECEIVED and mp_capable is not None and chunks and chunks[0][0] == 0:
        # 3.1: MP_CAPABLE data is a mapping at DSN 0. The spec's recv_ack_mpc extends
        # only rcv_nxt (no reassembly choice), so the keys and the payload are shown
        # as two events: the third ACK, then the payload under a DSS mapping.
        first = (flags.replace("F", ""), options, None)
        pieces = [first] + [("A", (spec.Dss(dsn=offset, length=count),), (offset, count))
                            if index == 0 else ("A", (), (offset, count))
                            for index, (offset, count) in enumerate(chunks)]
    else:
        pieces = [(flags, options, chunks[0] if chunks else None)]
        pieces += [("A", (), chunk) for chunk in chunks[1:]]
    events = []
    for index, (piece_flags, piece_options, chunk) in enumerate(pieces):
        last = index == len(pieces) - 1
        piece_flags = piece_flags.replace("F", "") + ("F" if last and "F" in flags else "")
        offset, count = chunk if chunk is not None else (None, 0)
        if direction == SENT:
            events.append(spec.SegmentSent(slot, piece_flags, count, offset, piece_options))
        else:
            events.append(spec.SegmentReceived(slot, piece_flags, count, offset,
                                               piece_options, acks_fin and last))
    return events
