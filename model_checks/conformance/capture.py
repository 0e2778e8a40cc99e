"""A capture, read and grouped: frames with their Wireshark numbers, TCP subflows, and the
MPTCP connections they belong to.

- `read_capture(path)` reads a pcap/pcapng with `impl.io.pcap` (which refuses files that
  are not captures or are truncated: `CaptureError` here), keeps the 1-based frame number
  Wireshark shows, skips frames that are not IP or not TCP (counted), and parses every TCP
  packet with our codec; a packet the codec rejects is kept as `Unparseable` with the
  codec's reason. Checksums are not verified: a capture taken on the sending host sees
  packets before checksum offload fills them in.
- `group_connections(frames)` walks the packets in capture order. A SYN without ACK
  starts a subflow (a SYN with the same initiator and ISN is a retransmission of it).
  SYN + MP_CAPABLE starts an MPTCP connection; its keys come from the SYN/ACK (the
  listener's) and the third ACK (both), and give the tokens (RFC 8684 3.1). An MP_JOIN
  SYN carries the token of the host it is sent to (3.2), which names the connection and
  which of its two sides opened the join. A SYN without MPTCP option starts a plain TCP
  connection. Packets of 4-tuples whose SYN is not in the capture are left over
  (`Grouping.unmatched`): the spec starts every connection at CLOSED, so they cannot be
  judged.

Sides of a connection are named "client" (sent the initial SYN) and "server".
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapReader

from impl.crypto import token_from_key
from impl.io.pcap import PcapError, _ip_from_frame, read_pcap
from impl.wire import (
    MpCapable,
    MpJoinSyn,
    MpJoinSynAck,
    Packet,
    TcpFlags,
    WireError,
    parse_ip,
    parse_packet,
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Endpoint = tuple[Address, int]
CLIENT, SERVER = "client", "server"
TCP = 6


class CaptureError(ValueError):
    """The file is not a capture we can read (not pcap/pcapng, truncated, bad link type)."""


@dataclass(frozen=True)
class Frame:
    number: int  # 1-based, as Wireshark numbers frames
    time: float
    packet: Packet

    @property
    def src(self) -> Endpoint:
        return (self.packet.src, self.packet.tcp.src_port)

    @property
    def dst(self) -> Endpoint:
        return (self.packet.dst, self.packet.tcp.dst_port)


@dataclass(frozen=True)
class Unparseable:
    number: int
    reason: str


@dataclass
class CaptureFile:
    path: str
    frames: list[Frame]
    unparseable: list[Unparseable]
    total_frames: int
    not_ip: int  # frames without an IPv4/IPv6 packet (ARP, ...)
    not_tcp: int  # IP packets that do not carry TCP (ICMP, UDP, IPv6 extension headers)


def read_capture(path: str | os.PathLike[str]) -> CaptureFile:
    filename = os.fspath(path)
    try:
        read_pcap(filename)  # validates the whole file: format, truncation, link types
    except PcapError as error:
        raise CaptureError(str(error)) from None
    # scapy only logs a warning for a cut pcapng block: those warnings are errors here
    warnings = _Warnings()
    scapy_log = logging.getLogger("scapy.runtime")
    scapy_log.addHandler(warnings)
    propagate, scapy_log.propagate = scapy_log.propagate, False
    try:
        capture = _read_frames(filename)
    finally:
        scapy_log.removeHandler(warnings)
        scapy_log.propagate = propagate
    if warnings.messages:
        raise CaptureError(f"{filename}: corrupt or truncated capture "
                           f"({warnings.messages[0]})")
    return capture


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _read_frames(filename: str) -> CaptureFile:
    frames: list[Frame] = []
    unparseable: list[Unparseable] = []
    not_ip = not_tcp = total = 0
    try:
        reader = RawPcapReader(filename)
    except (Scapy_Exception, OSError) as error:
        raise CaptureError(f"{filename}: {error}") from None
    with reader:
        for index, (data, metadata) in enumerate(reader):
            total += 1
            number = index + 1
            linktype = getattr(metadata, "linktype", None) or reader.linktype
            try:
                ip_bytes = _ip_from_frame(linktype, data)
            except PcapError as error:
                raise CaptureError(str(error)) from None
            if ip_bytes is None:
                not_ip += 1
                continue
            try:
                header, _ = parse_ip(ip_bytes, verify_checksum=False)
                if header.protocol != TCP:
                    not_tcp += 1
                    continue
                packet = parse_packet(ip_bytes, verify_checksums=False)
            except WireError as error:
                unparseable.append(Unparseable(number, str(error)))
                continue
            frames.append(Frame(number, _time(reader, metadata), packet))
    return CaptureFile(filename, frames, unparseable, total, not_ip, not_tcp)


def _time(reader: object, metadata: object) -> float:
    if hasattr(metadata, "usec"):
        scale = 1e9 if getattr(reader, "nano", False) else 1e6
        return metadata.sec + metadata.usec / scale  # type: ignore[attr-defined]
    ticks = (metadata.tshigh << 32) | metadata.tslow  # type: ignore[attr-defined]
    return ticks / metadata.tsresol  # type: ignore[attr-defined]


# -- grouping ------------------------------------------------------------------------------


@dataclass
class Subflow:
    slot: int
    sides: dict[Endpoint, str]  # endpoint -> "client" / "server" (sides of the connection)
    initiator: Endpoint  # sent this subflow's SYN
    isn: dict[Endpoint, int] = field(default_factory=dict)
    nonce: dict[str, int] = field(default_factory=dict)  # MP_JOIN nonces by side
    join_token: int | None = None

    @property
    def listener(self) -> Endpoint:
        return next(endpoint for endpoint in self.sides if endpoint != self.initiator)


@dataclass
class Connection:
    number: int  # 1-based, in order of the first SYN
    mptcp: bool
    client: Endpoint
    server: Endpoint
    keys: dict[str, int] = field(default_factory=dict)  # side -> 64-bit key
    subflows: list[Subflow] = field(default_factory=list)
    packets: list[tuple[Frame, int, str]] = field(default_factory=list)  # frame, slot, sender

    def other(self, side: str) -> str:
        return SERVER if side == CLIENT else CLIENT

    def describe(self) -> str:
        kind = "MPTCP" if self.mptcp else "TCP"
        return (f"{kind} {_endpoint_text(self.client)} -> {_endpoint_text(self.server)}"
                f", {len(self.subflows)} subflow(s)")


def _endpoint_text(endpoint: Endpoint) -> str:
    address, port = endpoint
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


@dataclass
class Grouping:
    connections: list[Connection]
    unmatched: dict[str, list[int]]  # "a <-> b" -> frame numbers without a known SYN


def _key(frame: Frame) -> frozenset[Endpoint]:
    return frozenset((frame.src, frame.dst))


def group_connections(frames: Iterable[Frame]) -> Grouping:
    connections: list[Connection] = []
    by_tuple: dict[frozenset[Endpoint], tuple[Connection, Subflow]] = {}
    by_token: dict[int, tuple[Connection, str]] = {}
    unmatched: dict[str, list[int]] = {}

    def learn_key(connection: Connection, side: str, key: int | None) -> None:
        if key is None or side in connection.keys:
            return
        connection.keys[side] = key
        by_token[token_from_key(key)] = (connection, side)

    for frame in frames:
        tcp = frame.packet.tcp
        options = tcp.mptcp_options()
        syn_only = bool(tcp.flags & TcpFlags.SYN) and not tcp.flags & TcpFlags.ACK
        known = by_tuple.get(_key(frame))
        if syn_only and not (known is not None and known[1].initiator == frame.src
                             and known[1].isn.get(frame.src) == tcp.seq):
            join = next((o for o in options if isinstance(o, MpJoinSyn)), None)
            if join is not None:
                owner = by_token.get(join.receiver_token)
                if owner is None:
                    unmatched.setdefault(_pair_text(frame), []).append(frame.number)
                    continue
                connection, receiver = owner
                side = connection.other(receiver)
                subflow = Subflow(len(connection.subflows), {frame.src: side,
                                                              frame.dst: receiver},
                                  frame.src, join_token=join.receiver_token)
                subflow.nonce[side] = join.sender_nonce
            else:
                mpc = any(isinstance(o, MpCapable) for o in options)
                connection = Connection(len(connections) + 1, mpc, frame.src, frame.dst)
                connections.append(connection)
                subflow = Subflow(0, {frame.src: CLIENT, frame.dst: SERVER}, frame.src)
            subflow.isn[frame.src] = tcp.seq
            connection.subflows.append(subflow)
            known = by_tuple[_key(frame)] = (connection, subflow)
        if known is None:
            unmatched.setdefault(_pair_text(frame), []).append(frame.number)
            continue
        connection, subflow = known
        sender = subflow.sides[frame.src]
        if tcp.flags & TcpFlags.SYN and tcp.flags & TcpFlags.ACK:
            # a SYN/ACK with a new ISN answers a retried SYN after a reset: its nonce too
            subflow.isn[frame.src] = tcp.seq
        for option in options:
            if isinstance(option, MpCapable):
                if option.receiver_key is not None:  # third ACK: sender's, then receiver's
                    learn_key(connection, sender, option.sender_key)
                    learn_key(connection, connection.other(sender), option.receiver_key)
                else:
                    learn_key(connection, sender, option.sender_key)
            elif isinstance(option, MpJoinSynAck):
                subflow.nonce[sender] = option.sender_nonce
        connection.packets.append((frame, subflow.slot, sender))
    return Grouping(connections, unmatched)


def _pair_text(frame: Frame) -> str:
    return f"{_endpoint_text(frame.src)} <-> {_endpoint_text(frame.dst)}"


def endpoint_side(connection: Connection, address: Address) -> str | None:
    """Which side of `connection` the host with `address` is: by the initial subflow's
    addresses, else by any joined subflow's (a join's sides are known from its token)."""
    for subflow in connection.subflows:
        for endpoint, side in subflow.sides.items():
            if endpoint[0] == address:
                return side
    return None
