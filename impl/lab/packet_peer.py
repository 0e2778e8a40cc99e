"""A scripted MPTCP packet peer (packetdrill style) built on our codec, for what Linux
never sends: a wrong MP_JOIN HMAC, an ADD_ADDR with a wrong HMAC, an MP_FASTCLOSE with
the wrong key, an MP_JOIN SYN to a client, MP_FAIL, an infinite mapping, a SYN stripped
of its MPTCP option, a payload corrupted under a valid DSS checksum.

`PacketPeer` is an `impl.io.sim.Endpoint` (sans-I/O: `receive(datagram, now)`,
`datagrams_to_send(now)`, `next_timer()`, `handle_timer(now)`). The ordinary TCP and
MPTCP it speaks (handshakes, DSS mappings, DATA_ACKs, retransmission) come from an
`impl.mptcp.MptcpHost` of its own; the odd things are either one-shot *rewrites* of the
next segment of a kind it sends (`arm_*`: the field changed with `impl.wire` values, the
HMACs of `impl.crypto` flipped by one bit) or segments *crafted* whole on the current
sequence numbers of one of its subflows (`send_*`). Every odd segment it sent is listed
in `PacketPeer.odd` so a test can check the thing really went out.

`packet_peer_lab(pcap, paths)` puts it on the wire: a `RefPairLab` (a Linux router
namespace between per-path TUN pairs), our endpoint (`impl.mptcp.MptcpHost`) at the .2
addresses and the packet peer at the .1 addresses, both on one `TunDriver`, so every
packet is a real IP packet forwarded by the kernel. The capture keeps our endpoint's view
only (`EndpointCapture`): what our host wrote (hop limit 64, before the router) and what
reached it (hop limit 63, after the router), so `monitor --at-endpoint` can judge it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from impl.crypto import add_addr_hmac
from impl.io.mptcp_host import SimMptcpHost
from impl.io.pcap import PcapFile
from impl.io.sim import Datagram
from impl.io.tun_loop import TunDriver
from impl.lab.topology import PathSpec, RefPairLab
from impl.mptcp.connection import MptcpConfig, MptcpConnection
from impl.mptcp.host import MptcpHost
from impl.mptcp.subflow import Subflow
from impl.tcp.segment import Segment
from impl.wire import TcpFlags, TcpHeader
from impl.wire.mptcp_options import (
    AddAddr,
    DataSequenceMapping,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
)

__all__ = ["EndpointCapture", "PacketPeer", "PacketPeerRun", "packet_peer_lab"]

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
PEER_WINDOW = 0xFFFF
Rewrite = Callable[[Segment], Segment | None]  # None: not this segment


def _with_options(segment: Segment, change: Callable[[object], object | None]) -> Segment:
    """`segment` with each option replaced by `change(option)` (None keeps it)."""
    options = tuple(change(option) or option for option in segment.header.options)
    return Segment(dataclasses.replace(segment.header, options=options), segment.payload)


def _option(segment: Segment, kind: type) -> object | None:
    return next((o for o in segment.header.options if isinstance(o, kind)), None)


NO_FLAGS = TcpFlags(0)


def _flags(segment: Segment, wanted: TcpFlags, unwanted: TcpFlags = NO_FLAGS) -> bool:
    return segment.flags & wanted == wanted and not segment.flags & unwanted


def _data_fin(segment: Segment) -> bool:
    dss = _option(segment, Dss)
    return dss is not None and dss.data_fin


# Segment kinds the peer can send twice (`PacketPeer.arm_repeat`), as the spec's
# *_repeated rules name them: which of the peer's outgoing segments is one.
REPEATABLE: dict[str, Callable[[Segment], bool]] = {
    # with MP_CAPABLE, or without when the peer plays plain TCP (`strip_syn_options`)
    "SYN": lambda s: _flags(s, TcpFlags.SYN, TcpFlags.ACK) and _option(s, MpJoinSyn) is None,
    "SYN/ACK": lambda s: _flags(s, TcpFlags.SYN | TcpFlags.ACK)
    and _option(s, MpJoinSynAck) is None,
    "MP_JOIN SYN": lambda s: _flags(s, TcpFlags.SYN, TcpFlags.ACK)
    and _option(s, MpJoinSyn) is not None,
    "MP_JOIN SYN/ACK": lambda s: _option(s, MpJoinSynAck) is not None,
    "MP_JOIN ACK": lambda s: _option(s, MpJoinAck) is not None,
    "FIN": lambda s: _flags(s, TcpFlags.FIN),
    "DATA_FIN": lambda s: _data_fin(s) and not s.flags & TcpFlags.FIN,
}


class PacketPeer:
    """Our own MPTCP stack as the peer, plus scripted odd segments (module doc)."""

    def __init__(self, addresses: list[str], *, seed: object = 0) -> None:
        self.host = MptcpHost(addresses, seed=seed)
        self.adapter = SimMptcpHost(self.host)
        self.addresses = self.adapter.addresses
        self.rewrites: list[tuple[str, Rewrite]] = []  # one-shot, in order
        self.crafted: list[Datagram] = []
        self.odd: list[str] = []  # what odd things went out, in order
        self.strip_syn_options = False
        self.config = MptcpConfig()  # what the peer listens and connects with
        self.repeats: list[str] = []  # one-shot: the next segment of each kind goes twice

    # -- Endpoint ---------------------------------------------------------------------------

    def receive(self, datagram: Datagram, now: float) -> None:
        self.adapter.receive(datagram, now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out = []
        for datagram in self.adapter.datagrams_to_send(now):
            datagram = self._rewrite(datagram)
            out.append(datagram)
            kind = next((k for k in self.repeats if REPEATABLE[k](datagram.segment)), None)
            if kind is not None:
                # the same segment again, byte for byte: a duplicate the network (or a
                # spurious retransmission) delivers, which the receiver must take
                self.repeats.remove(kind)
                self.odd.append(f"{kind} repeated")
                out.append(datagram)
        out.extend(self.crafted)
        self.crafted = []
        return out

    def next_timer(self) -> float | None:
        return self.host.next_timer()

    def handle_timer(self, now: float) -> None:
        self.host.handle_timer(now)

    def _rewrite(self, datagram: Datagram) -> Datagram:
        segment = datagram.segment
        if self.strip_syn_options and segment.flags & TcpFlags.SYN \
                and _option(segment, MpCapable) is not None:
            # A SYN (or SYN/ACK) without MP_CAPABLE: a plain TCP peer (3.7's fallback).
            kept = tuple(o for o in segment.header.options if not isinstance(o, MpCapable))
            segment = Segment(dataclasses.replace(segment.header, options=kept),
                              segment.payload)
            self.odd.append("SYN without MP_CAPABLE")
        for index, (what, rewrite) in enumerate(self.rewrites):
            changed = rewrite(segment)
            if changed is not None:
                del self.rewrites[index]
                self.odd.append(what)
                segment = changed
                break
        return Datagram(datagram.src, datagram.dst, segment)

    # -- the peer's connection --------------------------------------------------------------

    @property
    def connection(self) -> MptcpConnection | None:
        if self.host.accepted:
            return self.host.accepted[0]
        return self.host.connections[0] if self.host.connections else None

    def _established_subflow(self) -> Subflow:
        connection = self.connection
        if connection is None:
            raise RuntimeError("the packet peer has no connection to send on")
        for subflow in connection.subflows:
            if subflow.tcp.receiver is not None:
                return subflow
        raise RuntimeError("the packet peer has no synchronized subflow yet")

    # -- one-shot rewrites of the next segment of a kind (arm before it goes out) -----------

    def arm_repeat(self, kind: str) -> None:
        """The next segment of `kind` (a key of `REPEATABLE`) goes out twice."""
        if kind not in REPEATABLE:
            raise ValueError(f"no repeatable segment kind {kind!r}: {sorted(REPEATABLE)}")
        self.repeats.append(kind)

    def arm(self, what: str, rewrite: Rewrite) -> None:
        self.rewrites.append((what, rewrite))

    def arm_join_syn_ack_bad_hmac(self) -> None:
        """Our join reaches the peer: its SYN/ACK's truncated HMAC is off by one bit
        (3.2: the initiator must reset the subflow)."""
        def rewrite(segment: Segment) -> Segment | None:
            if _option(segment, MpJoinSynAck) is None:
                return None
            return _with_options(segment, lambda o: dataclasses.replace(
                o, sender_truncated_hmac=o.sender_truncated_hmac ^ 1)
                if isinstance(o, MpJoinSynAck) else None)
        self.arm("MP_JOIN SYN/ACK with a wrong HMAC", rewrite)

    def arm_join_ack_bad_hmac(self) -> None:
        """The peer's next join: its third ACK's HMAC is off by one bit (3.2: the
        listener must reset the subflow)."""
        def rewrite(segment: Segment) -> Segment | None:
            if _option(segment, MpJoinAck) is None:
                return None
            return _with_options(segment, lambda o: MpJoinAck(
                bytes([o.sender_hmac[0] ^ 1]) + o.sender_hmac[1:])
                if isinstance(o, MpJoinAck) else None)
        self.arm("MP_JOIN third ACK with a wrong HMAC", rewrite)

    def arm_add_addr_bad_hmac(self) -> None:
        """The peer's next ADD_ADDR (not an echo) carries a wrong HMAC (3.4.1: drop)."""
        def rewrite(segment: Segment) -> Segment | None:
            add = _option(segment, AddAddr)
            if add is None or add.echo:
                return None
            return _with_options(segment, lambda o: dataclasses.replace(
                o, truncated_hmac=o.truncated_hmac ^ 1) if isinstance(o, AddAddr) else None)
        self.arm("ADD_ADDR with a wrong HMAC", rewrite)

    def arm_add_addr_on_join_ack(self, address: str, address_id: int, *,
                                 right_hmac: bool) -> None:
        """The first segment the peer sends on a join it accepted after the join's
        third ACK (the fourth ACK, 3.2) also carries an ADD_ADDR of `address`, its HMAC
        right or one bit off (3.4.1)."""
        def rewrite(segment: Segment) -> Segment | None:
            connection = self.connection
            if connection is None or connection.remote_key is None \
                    or segment.flags & (TcpFlags.SYN | TcpFlags.RST):
                return None
            joined = {sf.tcp.local_port for sf in connection.subflows
                      if not sf.initial and sf.tcp.receiver is not None}
            if segment.header.src_port not in joined:
                return None
            hmac = add_addr_hmac(connection.local_key, connection.remote_key, address_id,
                                 address)
            option = AddAddr(address_id, ipaddress.ip_address(address),
                             truncated_hmac=hmac if right_hmac else hmac ^ 1)
            header = segment.header
            return Segment(dataclasses.replace(header, options=header.options + (option,)),
                           segment.payload)
        self.arm("ADD_ADDR on the join's fourth ACK"
                 + ("" if right_hmac else " with a wrong HMAC"), rewrite)

    def arm_infinite_mapping(self) -> None:
        """The peer's next data segment maps its payload with an infinite mapping
        (data-level length 0, 3.7)."""
        def rewrite(segment: Segment) -> Segment | None:
            dss = _option(segment, Dss)
            if dss is None or dss.mapping is None or not segment.payload:
                return None
            mapping = dataclasses.replace(dss.mapping, data_level_length=0, checksum=None)
            return _with_options(segment, lambda o: dataclasses.replace(o, mapping=mapping)
                                 if isinstance(o, Dss) else None)
        self.arm("infinite mapping", rewrite)

    def arm_corrupt_data(self) -> None:
        """The peer's next data segment has one payload byte flipped after its DSS
        checksum was computed (a middlebox rewriting payload; the TCP checksum is made
        again on emit, so only the DSS checksum can tell: 3.3.1)."""
        def rewrite(segment: Segment) -> Segment | None:
            if not segment.payload or _option(segment, Dss) is None:
                return None
            payload = bytearray(segment.payload)
            payload[0] ^= 0xFF
            return Segment(segment.header, bytes(payload))
        self.arm("payload corrupted under its DSS checksum", rewrite)

    # -- crafted segments on a subflow's current sequence numbers ---------------------------

    def send_on_subflow(self, options: tuple, what: str, flags: TcpFlags = TcpFlags.ACK,
                        subflow: Subflow | None = None) -> None:
        """A bare segment with `options` at SND.NXT / RCV.NXT of `subflow` (default: the
        first synchronized one)."""
        subflow = subflow or self._established_subflow()
        tcp = subflow.tcp
        header = TcpHeader(tcp.local_port, tcp.remote_port, tcp.sender.snd_nxt & MASK32,
                           tcp.receiver.rcv_nxt & MASK32, flags, PEER_WINDOW,
                           options=options)
        self.crafted.append(Datagram(subflow.local, subflow.remote, Segment(header)))
        self.odd.append(what)

    def send_fastclose(self, *, right_key: bool) -> None:
        """MP_FASTCLOSE on an ACK (3.5): with the receiver's key, or one bit off."""
        connection = self.connection
        if connection is None or connection.remote_key is None:
            raise RuntimeError("the packet peer does not know its peer's key yet")
        key = connection.remote_key if right_key else connection.remote_key ^ 1
        self.send_on_subflow((MpFastclose(key),),
                             "MP_FASTCLOSE" + ("" if right_key else " with the wrong key"))

    def send_mp_fail(self) -> None:
        """MP_FAIL (3.7) naming the next data-level byte the peer expects."""
        connection = self.connection
        dsn = connection.reassembly.rcv_nxt if connection is not None and \
            connection.reassembly is not None else 0
        self.send_on_subflow((MpFail(dsn & MASK64),), "MP_FAIL")

    def send_infinite_mapping(self) -> None:
        """A DSS whose mapping has data-level length 0 (3.7), on a bare ACK."""
        connection = self.connection
        subflow = self._established_subflow()
        dsn = connection.snd_nxt if connection is not None else 0
        mapping = DataSequenceMapping(dsn & MASK64, subflow.next_ssn & MASK32, 0)
        self.send_on_subflow((Dss(mapping=mapping),), "infinite mapping", subflow=subflow)

    def send_join_syn(self, local: str, remote: str, remote_port: int, token: int,
                      local_port: int = 40000) -> None:
        """An MP_JOIN SYN from `local` (3.2) naming `token`, outside any connection of
        the peer: to test how a host treats a join it did not expect."""
        header = TcpHeader(local_port, remote_port, 1000, 0, TcpFlags.SYN, PEER_WINDOW,
                           options=(MpJoinSyn(False, 5, token & MASK32, 0x1234),))
        self.crafted.append(Datagram(ipaddress.ip_address(local), ipaddress.ip_address(remote),
                                     Segment(header)))
        self.odd.append("MP_JOIN SYN")


class EndpointCapture:
    """A pcap of one endpoint's view in a RefPairLab: the driver sees every packet twice
    (leaving one TUN, arriving at the other after the router decremented the hop limit);
    keep what `ours` wrote (hop limit 64) and what reached it (63)."""

    def __init__(self, pcap: PcapFile, ours: list[str]) -> None:
        self.pcap = pcap
        self.ours = {ipaddress.ip_address(a).packed for a in ours}

    def write(self, data: bytes, timestamp: float) -> None:
        version = data[0] >> 4
        if version == 4:
            ttl, src, dst = data[8], data[12:16], data[16:20]
        elif version == 6:
            ttl, src, dst = data[7], data[8:24], data[24:40]
        else:
            return
        if (src in self.ours and ttl == 64) or (dst in self.ours and ttl == 63):
            self.pcap.write(data, timestamp)


@dataclass
class PacketPeerRun:
    lab: RefPairLab
    driver: TunDriver
    host: MptcpHost  # our endpoint
    peer: PacketPeer
    config: MptcpConfig
    connection: MptcpConnection | None = None  # ours
    received: bytearray = field(default_factory=bytearray)  # what our connection read
    peer_received: bytearray = field(default_factory=bytearray)

    @property
    def our_addresses(self) -> list[str]:
        return self.lab.client_addresses

    @property
    def peer_addresses(self) -> list[str]:
        return self.lab.server_addresses

    def step(self) -> None:
        if self.connection is None and self.host.accepted:
            self.connection = self.host.accepted[0]
        if self.connection is not None:
            self.received += self.connection.read()
        if self.peer.connection is not None:
            self.peer_received += self.peer.connection.read()

    def run(self, until: Callable[[], bool], timeout: float = 10.0, what: str = "") -> bool:
        """Drive both sides until `until()` or `timeout`; whether `until()` held."""
        def round_() -> bool:
            self.step()
            return until()

        return self.driver.run(round_, timeout)

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        self.driver.run(lambda: self.step() or time.monotonic() >= deadline, seconds + 1.0)


@contextmanager
def packet_peer_lab(pcap: Path, *, paths: int = 2, seed: object = 0,
                    checksums: bool = False, peer_checksums: bool = False,
                    ipv6: bool = False) -> Iterator[PacketPeerRun]:
    """A fresh RefPairLab with our endpoint at .2 and a `PacketPeer` at .1 (module
    doc); torn down on exit, failure included."""
    from impl.lab.run import our_config

    with ExitStack() as stack:
        lab = stack.enter_context(RefPairLab([PathSpec() for _ in range(paths)], ipv6=ipv6,
                                             seed=0))
        capture = stack.enter_context(PcapFile(pcap))
        driver = TunDriver(pcap=EndpointCapture(capture, lab.client_addresses), sticky=True)
        stack.callback(driver.close)
        host = MptcpHost(lab.client_addresses, seed=seed)
        peer = PacketPeer(lab.server_addresses, seed=f"{seed}:peer")
        driver.add_endpoint(SimMptcpHost(host))
        driver.add_endpoint(peer)
        for index, path in enumerate(lab.paths):
            outbound, inbound = lab.links(index)
            driver.attach(lab.client_tuns[index], [str(path.client)],
                          label=f"path{index + 1}", outbound=outbound, inbound=inbound)
            driver.attach(lab.server_tuns[index], [str(path.server)],
                          label=f"path{index + 1}-peer")
        config = MptcpConfig(checksums=checksums, tcp=our_config(ipv6))
        peer.config = MptcpConfig(checksums=peer_checksums, tcp=our_config(ipv6))
        yield PacketPeerRun(lab, driver, host, peer, config)
        driver.drain(timeout=0.5)
