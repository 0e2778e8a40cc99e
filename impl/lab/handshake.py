"""A live MP_CAPABLE handshake with the Linux kernel over a TUN device.

The lab: a fresh namespace holds a TUN device with 198.18.0.1/24 (the kernel's side; its
connected route sends 198.18.0.2 into the TUN) and a kernel MPTCP listener
(`socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP)`) on 198.18.0.1:PORT. This module plays
198.18.0.2 by reading and writing raw packets on the TUN fd, built and parsed with
`impl.wire`; it is a scripted peer, not a TCP stack: every segment is written out below in
the order RFC 8684 3.1 prescribes.

    us -> kernel   SYN      MSS, SACK_PERM, TS, NOP, WS, MP_CAPABLE (v1, H; 4 bytes)
    kernel -> us   SYN/ACK  ..., MP_CAPABLE (12 bytes: the kernel's key)
    us -> kernel   ACK+data MP_CAPABLE with both keys and data-level length (22 bytes,
                            24 with the DSS checksum when either side asked for it) + 1 byte
    kernel         accept() returns, recv() reads the byte; the kernel ACKs it with a DSS
                   DATA_ACK (its first DSS: from here on we may use DSS ourselves, 3.1)

Close (our choice: graceful at both levels, RFC 8684 3.3.3 and Appendix D): we send FIN
with a DSS carrying DATA_FIN (a bare DATA_FIN mapping: subflow sequence 0, length 1) and
our DATA_ACK; the kernel ACKs both, its recv() returns end-of-stream, the kernel socket is
closed, the kernel sends its own DATA_FIN and FIN, and we ACK both. A RST from the kernel
at any point is a failure.

`kernel_mp_capable_handshake()` runs all of this and returns a `HandshakeResult` (packets,
keys, counter deltas); `run_handshake_demo()` is `mptcp-ref lab handshake`.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import select
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from impl.crypto import (
    add_addr_hmac,
    dss_checksum,
    dss_checksum_ok,
    generate_key,
    idsn_from_key,
    token_from_key,
)
from impl.io.tun import TunDevice
from impl.lab.kernel import counter_delta, read_counters, write_sysctl
from impl.lab.netns import NetworkNamespace
from impl.wire import (
    AddAddr,
    DataSequenceMapping,
    Dss,
    EndOfOptionList,
    MaximumSegmentSize,
    MpCapable,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    NoOperation,
    Packet,
    SackPermitted,
    TcpFlags,
    TcpHeader,
    TcpOption,
    Timestamps,
    WindowScale,
    build_packet,
    parse_ip,
    parse_packet,
)

IPPROTO_MPTCP = 262
KERNEL_ADDRESS = ipaddress.IPv4Address("198.18.0.1")
PEER_ADDRESS = ipaddress.IPv4Address("198.18.0.2")
PREFIX_LENGTH = 24
TUN_NAME = "mptcp0"

# What a Linux client of this era puts on its SYN; the kernel only needs MP_CAPABLE, but a
# realistic SYN exercises the same option parsing a real peer does.
OUR_MSS = 1460
OUR_WINDOW_SCALE = 7
OUR_WINDOW = 64240  # unscaled on the SYN (RFC 7323 2.2), scaled by 2**7 afterwards

MPTCP_COUNTERS = ("MPTcpExtMPCapableSYNRX", "MPTcpExtMPCapableACKRX")


class HandshakeError(RuntimeError):
    """The kernel did not complete the exchange as RFC 8684 3.1 says it should."""


@dataclass(frozen=True)
class ExchangedPacket:
    """One packet of our TCP flow as it crossed the TUN device."""

    direction: Literal["sent", "received"]
    seconds: float  # since the exchange started
    data: bytes

    @property
    def packet(self) -> Packet:
        return parse_packet(self.data)

    @property
    def summary(self) -> str:
        arrow = "us -> kernel" if self.direction == "sent" else "kernel -> us"
        return f"{self.seconds * 1000:8.3f} ms  {arrow}  {describe_packet(self.packet)}"


@dataclass
class HandshakeResult:
    namespace: str
    port: int
    our_key: int
    kernel_key: int
    checksums: bool  # whether the DSS checksum was in use (either side set flag A)
    sent_payload: bytes
    received_by_kernel: bytes  # what the kernel's accept()ed socket read
    kernel_eof: bool  # the accepted socket saw end-of-stream after our DATA_FIN
    packets: list[ExchangedPacket] = field(default_factory=list)
    ignored_packets: int = 0  # non-TCP traffic on the TUN (IPv6 RS, MLD, ...)
    counters_before: dict[str, int] = field(default_factory=dict)
    counters_after: dict[str, int] = field(default_factory=dict)
    kernel_add_addrs: list[AddAddr] = field(default_factory=list)  # HMACs verified

    @property
    def counter_deltas(self) -> dict[str, int]:
        return counter_delta(self.counters_before, self.counters_after)

    @property
    def mptcp_counter_deltas(self) -> dict[str, int]:
        return {name: value for name, value in self.counter_deltas.items()
                if name.startswith("MPTcpExt")}


@dataclass(frozen=True)
class EstablishedConnection:
    """The live lab handed to `after_handshake`: the MPTCP connection is established
    (keys exchanged, first data acknowledged) and its first subflow is still open."""

    namespace: NetworkNamespace
    tun: TunDevice
    port: int
    our_key: int
    kernel_key: int
    checksums: bool
    timeout: float
    record: Callable[[ExchangedPacket], None]
    started: float  # monotonic clock origin of the packet log

    def new_subflow_peer(self) -> ScriptedPeer:
        """A scripted peer for another subflow from 198.18.0.2 to the listener."""
        return ScriptedPeer(self.tun, self.port, self.timeout, self.record, self.started)


# -- readable one-line packets ---------------------------------------------------------

_FLAG_LETTERS = ((TcpFlags.SYN, "S"), (TcpFlags.FIN, "F"), (TcpFlags.RST, "R"),
                 (TcpFlags.PSH, "P"), (TcpFlags.URG, "U"), (TcpFlags.ECE, "E"),
                 (TcpFlags.CWR, "W"), (TcpFlags.ACK, "."))


def describe_option(option: TcpOption) -> str:
    """An option in a tcpdump-like short form."""
    match option:
        case MaximumSegmentSize(mss=mss):
            return f"mss {mss}"
        case SackPermitted():
            return "sackOK"
        case Timestamps(value=value, echo_reply=echo):
            return f"TS val {value} ecr {echo}"
        case NoOperation():
            return "nop"
        case EndOfOptionList():
            return "eol"
        case WindowScale(shift=shift):
            return f"wscale {shift}"
        case MpCapable():
            flags = "".join(letter for on, letter in (
                (option.checksum_required, "A"), (option.extensibility, "B"),
                (option.no_initial_join, "C"), (option.hmac_sha256, "H")) if on)
            parts = [f"MP_CAPABLE v{option.version} {flags or '-'}"]
            if option.sender_key is not None:
                parts.append(f"key {option.sender_key:#018x}")
            if option.receiver_key is not None:
                parts.append(f"peer-key {option.receiver_key:#018x}")
            if option.data_length is not None:
                parts.append(f"dlen {option.data_length}")
            if option.checksum is not None:
                parts.append(f"csum {option.checksum:#06x}")
            return " ".join(parts)
        case Dss():
            parts = ["DSS"]
            if option.data_ack is not None:
                parts.append(f"ack {option.data_ack}")
            if option.mapping is not None:
                mapping = option.mapping
                parts.append(f"map dsn {mapping.dsn} ssn {mapping.subflow_sequence} "
                             f"len {mapping.data_level_length}")
                if mapping.checksum is not None:
                    parts.append(f"csum {mapping.checksum:#06x}")
            if option.data_fin:
                parts.append("DATA_FIN")
            return " ".join(parts)
        case AddAddr():
            port = "" if option.port is None else f" port {option.port}"
            hmac = "" if option.truncated_hmac is None else f" hmac {option.truncated_hmac:#018x}"
            return f"ADD_ADDR{' echo' if option.echo else ''} id {option.address_id} " \
                f"{option.address}{port}{hmac}"
        case MpJoinSyn():
            return (f"MP_JOIN SYN id {option.address_id} token {option.receiver_token:#010x} "
                    f"nonce {option.sender_nonce:#010x}{' backup' if option.backup else ''}")
        case MpJoinSynAck():
            return (f"MP_JOIN SYN/ACK id {option.address_id} "
                    f"hmac {option.sender_truncated_hmac:#018x} nonce {option.sender_nonce:#010x}")
        case MpJoinAck():
            return f"MP_JOIN ACK hmac {option.sender_hmac.hex()}"
    return repr(option)


def describe_packet(packet: Packet) -> str:
    """One line: addresses, flags, sequence numbers, payload length and options."""
    tcp = packet.tcp
    flags = "".join(letter for flag, letter in _FLAG_LETTERS if tcp.flags & flag)
    ack = f" ack {tcp.ack}" if tcp.flags & TcpFlags.ACK else ""
    # NOP and EOL are padding; leaving them out keeps the line readable.
    options = ", ".join(describe_option(option) for option in tcp.options
                        if not isinstance(option, NoOperation | EndOfOptionList))
    return (f"{packet.src}:{tcp.src_port} > {packet.dst}:{tcp.dst_port} [{flags}] "
            f"seq {tcp.seq}{ack} win {tcp.window} len {len(packet.payload)} <{options}>")


# -- the scripted peer -----------------------------------------------------------------

class ScriptedPeer:
    """Our end of one TCP flow (one subflow) on the TUN: sends segments we spell out,
    receives the kernel's, and keeps the log. Sequence numbers are absolute; nothing is
    retransmitted (the TUN is lossless), and every wait is bounded. Segments of other flows
    read meanwhile are counted in `ignored` and dropped; ADD_ADDR options the kernel sends
    are collected in `add_addrs` (they may arrive on any segment)."""

    def __init__(self, tun: TunDevice, kernel_port: int, timeout: float,
                 record: Callable[[ExchangedPacket], None], started: float | None = None) -> None:
        self.tun = tun
        self.kernel_port = kernel_port
        self.port = 32768 + secrets.randbelow(60999 - 32768)  # Linux ephemeral range
        self.timeout = timeout
        self.record = record
        self.started = time.monotonic() if started is None else started
        self.ignored = 0
        self.add_addrs: list[AddAddr] = []
        self._timestamp_offset = secrets.randbits(32)

    def timestamp(self) -> int:
        # RFC 7323 5.4: a millisecond clock with a random offset.
        milliseconds = int((time.monotonic() - self.started) * 1000)
        return (milliseconds + self._timestamp_offset) & 0xFFFFFFFF

    def send(self, header: TcpHeader, payload: bytes = b"") -> None:
        data = build_packet(PEER_ADDRESS, KERNEL_ADDRESS, header, payload)
        self.tun.write(data)
        self.record(ExchangedPacket("sent", time.monotonic() - self.started, data))

    def receive(self, what: str) -> Packet:
        """The kernel's next segment of our flow; `what` names it for the error message."""
        packet = self.receive_within(self.timeout, what)
        if packet is None:
            raise HandshakeError(f"timed out after {self.timeout}s waiting for {what}")
        return packet

    def receive_within(self, timeout: float, what: str) -> Packet | None:
        """The kernel's next segment of our flow, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.tun.read()
            if data is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                select.select([self.tun], [], [], left)
                continue
            ip, _ = parse_ip(data)
            if ip.protocol != socket.IPPROTO_TCP:
                self.ignored += 1  # IPv6 router solicitations, MLD reports, ...
                continue
            packet = parse_packet(data)
            if (packet.src, packet.tcp.src_port, packet.dst, packet.tcp.dst_port) != (
                    KERNEL_ADDRESS, self.kernel_port, PEER_ADDRESS, self.port):
                self.ignored += 1
                continue
            self.record(ExchangedPacket("received", time.monotonic() - self.started, data))
            self.add_addrs += [option for option in packet.tcp.options
                               if isinstance(option, AddAddr) and not option.echo]
            if packet.tcp.flags & TcpFlags.RST:
                raise HandshakeError(f"the kernel reset the subflow while we waited for {what}: "
                                     f"{describe_packet(packet)}")
            return packet

    def pending(self, quiet: float) -> Iterator[Packet]:
        """The kernel's segments of our flow until none arrives for `quiet` seconds."""
        while (packet := self.receive_within(quiet, "more segments")) is not None:
            yield packet


def _mp_capable_of(packet: Packet) -> MpCapable | None:
    found = packet.tcp.option(MpCapable)
    return found if isinstance(found, MpCapable) else None


def _timestamp_of(packet: Packet) -> int | None:
    found = packet.tcp.option(Timestamps)
    return found.value if isinstance(found, Timestamps) else None


@contextmanager
def _pcap_writer(pcap_path: Path | None) -> Iterator[Callable[[bytes, float], None] | None]:
    """A `(packet, unix_time)` writer when a pcap was asked for and impl.io.pcap exists."""
    if pcap_path is None:
        yield None
        return
    try:
        from impl.io.pcap import PcapFile  # written by another issue; optional here
    except ModuleNotFoundError:
        yield None
        return
    with PcapFile(pcap_path) as pcap:
        yield pcap.write


def pcap_available() -> bool:
    try:
        import impl.io.pcap  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def kernel_mp_capable_handshake(
    port: int = 8080,
    *,
    kernel_checksums: bool = False,
    payload: bytes = b"!",
    timeout: float = 2.0,
    pcap_path: Path | None = None,
    on_packet: Callable[[ExchangedPacket], None] | None = None,
    kernel_signal_address: str | None = None,
    after_handshake: Callable[[EstablishedConnection], None] | None = None,
) -> HandshakeResult:
    """MP_CAPABLE with the Linux kernel over TUN in a fresh namespace (see module doc).

    `kernel_checksums` sets net.mptcp.checksum_enabled in the lab namespace, so the
    kernel's SYN/ACK sets flag A and our third ACK must carry the 24-byte form.
    `kernel_signal_address` (a lab address) is added to the TUN and made a `signal`
    endpoint of the kernel's path manager, so the kernel announces it with ADD_ADDR; we
    check its HMAC (RFC 8684 3.4.1) and echo it. `after_handshake` runs once the kernel
    has ACKed our first data and before the close, with the live lab (e.g. to open an
    MP_JOIN subflow). Every wait is bounded by `timeout`; the namespace is gone when this
    returns or raises.
    """
    if not 1 <= len(payload) <= 1000:
        raise ValueError("the first data must fit one segment and be non-empty")
    packets: list[ExchangedPacket] = []
    with ExitStack() as stack:
        write_pcap = stack.enter_context(_pcap_writer(pcap_path))
        wall_clock_offset = time.time() - time.monotonic()

        def record(exchanged: ExchangedPacket) -> None:
            packets.append(exchanged)
            if write_pcap is not None:
                write_pcap(exchanged.data, wall_clock_offset + peer.started + exchanged.seconds)
            if on_packet is not None:
                on_packet(exchanged)

        namespace = stack.enter_context(NetworkNamespace())
        if kernel_checksums:
            write_sysctl(namespace.name, "net.mptcp.checksum_enabled", 1)
        tun = stack.enter_context(TunDevice(TUN_NAME, netns=namespace.name))
        namespace.add_address(tun.name, f"{KERNEL_ADDRESS}/{PREFIX_LENGTH}")
        namespace.set_link_up(tun.name)
        if kernel_signal_address is not None:
            namespace.add_address(tun.name, f"{kernel_signal_address}/32")
            namespace.run("ip", "mptcp", "endpoint", "add", kernel_signal_address,
                          "dev", tun.name, "signal")
        with namespace.entered():
            listener = stack.enter_context(
                socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP))
        listener.bind((str(KERNEL_ADDRESS), port))
        listener.listen(1)
        listener.settimeout(timeout)

        counters_before = read_counters(namespace.name)
        peer = ScriptedPeer(tun, port, timeout, record)
        our_key = generate_key()
        our_idsn = idsn_from_key(our_key)
        our_isn = secrets.randbits(32)

        # 1. SYN with MP_CAPABLE (RFC 8684 3.1: v1 carries no key on the SYN; H set).
        syn_options: tuple[TcpOption, ...] = (
            MaximumSegmentSize(OUR_MSS), SackPermitted(), Timestamps(peer.timestamp(), 0),
            NoOperation(), WindowScale(OUR_WINDOW_SCALE), MpCapable())
        peer.send(TcpHeader(peer.port, port, our_isn, 0, TcpFlags.SYN, OUR_WINDOW,
                            options=syn_options))

        # 2. The kernel's SYN/ACK carries its key; without MP_CAPABLE it fell back to TCP.
        syn_ack = peer.receive("the SYN/ACK")
        if syn_ack.tcp.flags & (TcpFlags.SYN | TcpFlags.ACK) != TcpFlags.SYN | TcpFlags.ACK:
            raise HandshakeError(f"expected a SYN/ACK, got {describe_packet(syn_ack)}")
        if syn_ack.tcp.ack != (our_isn + 1) % 2**32:
            raise HandshakeError(f"the SYN/ACK acknowledges {syn_ack.tcp.ack}, "
                                 f"not our ISN + 1 = {(our_isn + 1) % 2**32}")
        offer = _mp_capable_of(syn_ack)
        if offer is None or offer.sender_key is None:
            raise HandshakeError("the kernel's SYN/ACK has no MP_CAPABLE key: it fell back "
                                 f"to plain TCP ({describe_packet(syn_ack)})")
        if offer.version != 1 or not offer.hmac_sha256:
            raise HandshakeError(f"the kernel offered MPTCP v{offer.version} "
                                 f"(H={offer.hmac_sha256}); we speak v1 with HMAC-SHA256")
        kernel_key = offer.sender_key
        kernel_idsn = idsn_from_key(kernel_key)
        kernel_seq = (syn_ack.tcp.seq + 1) % 2**32  # next subflow byte we expect
        kernel_ts = _timestamp_of(syn_ack)
        # RFC 8684 3.1: checksums are used if either side set flag A.
        checksums = offer.checksum_required
        window = OUR_WINDOW >> OUR_WINDOW_SCALE

        def timestamps() -> tuple[TcpOption, ...]:
            # RFC 7323 3.2: once negotiated, every non-RST segment carries TSopt.
            if kernel_ts is None:
                return ()
            return (NoOperation(), NoOperation(), Timestamps(peer.timestamp(), kernel_ts))

        def answer_add_addrs() -> None:
            # RFC 8684 3.4.1: check the truncated HMAC (sender = the kernel) and echo the
            # announcement, or the kernel would retransmit it.
            while peer.add_addrs:
                announced = peer.add_addrs.pop(0)
                expected = add_addr_hmac(kernel_key, our_key, announced.address_id,
                                         announced.address, announced.port)
                if announced.truncated_hmac != expected:
                    raise HandshakeError(f"the kernel's ADD_ADDR HMAC is "
                                         f"{announced.truncated_hmac:#018x}, ours {expected:#018x}")
                kernel_add_addrs.append(announced)
                echo = AddAddr(announced.address_id, announced.address, announced.port,
                               echo=True)
                peer.send(TcpHeader(peer.port, port, our_seq, kernel_seq, TcpFlags.ACK, window,
                                    options=(*timestamps(), Dss(data_ack=kernel_data_next),
                                             echo)))

        # 3. Third ACK: both keys plus the first data (RFC 8684 3.1 "MP_CAPABLE with data":
        # DSN = IDSN + 1, relative subflow sequence 1, checksum over that mapping).
        our_seq = (our_isn + 1) % 2**32
        first_dsn = (our_idsn + 1) % 2**64
        confirm = MpCapable(
            checksum_required=checksums, sender_key=our_key, receiver_key=kernel_key,
            data_length=len(payload),
            checksum=dss_checksum(first_dsn, 1, len(payload), payload) if checksums else None)
        peer.send(TcpHeader(peer.port, port, our_seq, kernel_seq,
                            TcpFlags.ACK | TcpFlags.PSH, window,
                            options=(*timestamps(), confirm)), payload)
        our_seq = (our_seq + len(payload)) % 2**32
        our_data_next = (first_dsn + len(payload)) % 2**64

        # 4. The kernel's application side: accept() and read the byte.
        try:
            accepted, _ = listener.accept()
        except TimeoutError:
            raise HandshakeError(f"accept() timed out after {timeout}s: the kernel did not "
                                 "complete the handshake") from None
        stack.enter_context(accepted)
        accepted.settimeout(timeout)
        received = b""
        while len(received) < len(payload):
            chunk = accepted.recv(len(payload) - len(received))
            if not chunk:
                break
            received += chunk

        # 5. The kernel ACKs our data with its first DSS (DATA_ACK = our data next).
        kernel_data_next = (kernel_idsn + 1) % 2**64
        kernel_add_addrs: list[AddAddr] = []
        while True:
            answer = peer.receive("the kernel's ACK of our first data")
            answer_add_addrs()
            if kernel_ts is not None:
                kernel_ts = _timestamp_of(answer) or kernel_ts
            dss = answer.tcp.option(Dss)
            if answer.tcp.ack == our_seq and isinstance(dss, Dss) and dss.data_ack is not None:
                if dss.data_ack != our_data_next:
                    raise HandshakeError(f"the kernel's DATA_ACK is {dss.data_ack}, expected "
                                         f"{our_data_next} (our IDSN + 1 + {len(payload)})")
                break
        if kernel_signal_address is not None and not kernel_add_addrs:
            # The path manager announces from a worker once the connection is fully
            # established, so the ADD_ADDR may trail the DATA_ACK a little.
            while not kernel_add_addrs:
                peer.receive("the kernel's ADD_ADDR")
                answer_add_addrs()
        if after_handshake is not None:
            after_handshake(EstablishedConnection(
                namespace=namespace, tun=tun, port=port, our_key=our_key,
                kernel_key=kernel_key, checksums=checksums, timeout=timeout, record=record,
                started=peer.started))

        # 6. Our graceful close: FIN + DATA_FIN (bare DATA_FIN mapping: ssn 0, length 1).
        fin_mapping = DataSequenceMapping(
            dsn=our_data_next, subflow_sequence=0, data_level_length=1,
            checksum=dss_checksum(our_data_next, 0, 1, b"") if checksums else None)
        peer.send(TcpHeader(peer.port, port, our_seq, kernel_seq,
                            TcpFlags.FIN | TcpFlags.ACK, window,
                            options=(*timestamps(), Dss(data_ack=kernel_data_next,
                                                        mapping=fin_mapping, data_fin=True))))
        our_seq = (our_seq + 1) % 2**32
        our_data_next = (our_data_next + 1) % 2**64
        kernel_eof = accepted.recv(1) == b""
        accepted.close()  # the kernel now sends its own DATA_FIN and FIN

        # 7. ACK whatever the kernel sends until its FIN and DATA_FIN are both acknowledged.
        kernel_fin_acked = kernel_data_fin_acked = our_fin_acked = False
        for segment in peer.pending(quiet=timeout):
            answer_add_addrs()
            if kernel_ts is not None:
                kernel_ts = _timestamp_of(segment) or kernel_ts
            advanced = False
            end = (segment.tcp.seq + len(segment.payload)
                   + (1 if segment.tcp.flags & TcpFlags.FIN else 0)) % 2**32
            if end != kernel_seq and (end - kernel_seq) % 2**32 < 2**31:
                kernel_seq, advanced = end, True
                kernel_fin_acked = bool(segment.tcp.flags & TcpFlags.FIN)
            dss = segment.tcp.option(Dss)
            if isinstance(dss, Dss):
                if dss.data_ack is not None and dss.data_ack == our_data_next:
                    our_fin_acked = segment.tcp.ack == our_seq
                if dss.mapping is not None and dss.data_fin:
                    # The DATA_FIN is the last octet of the mapping (RFC 8684 3.3.3).
                    mapping = dss.mapping
                    dsn = mapping.dsn if mapping.dsn_is_64bit else (
                        (kernel_data_next & ~0xFFFFFFFF) | mapping.dsn)
                    data_end = (dsn + mapping.data_level_length) % 2**64
                    # The kernel's checksum of a bare DATA_FIN covers only the pseudo-
                    # header: checking it checks our DSS checksum against Linux's.
                    if mapping.checksum is not None and not dss_checksum_ok(
                            dsn, mapping.subflow_sequence, mapping.data_level_length,
                            segment.payload, mapping.checksum):
                        raise HandshakeError(
                            f"the kernel's DATA_FIN checksum {mapping.checksum:#06x} differs "
                            "from ours over the same mapping")
                    if data_end != kernel_data_next:
                        kernel_data_next, advanced = data_end, True
                        kernel_data_fin_acked = True
            if advanced:
                peer.send(TcpHeader(peer.port, port, our_seq, kernel_seq, TcpFlags.ACK, window,
                                    options=(*timestamps(), Dss(data_ack=kernel_data_next))))
            if kernel_fin_acked and kernel_data_fin_acked and our_fin_acked:
                break
        if not (kernel_fin_acked and kernel_data_fin_acked and our_fin_acked):
            raise HandshakeError(
                "the close did not complete: kernel FIN seen and acked: "
                f"{kernel_fin_acked}, kernel DATA_FIN seen and acked: {kernel_data_fin_acked}, "
                f"our FIN and DATA_FIN acked by the kernel: {our_fin_acked}")

        counters_after = read_counters(namespace.name)
        return HandshakeResult(
            namespace=namespace.name, port=port, our_key=our_key, kernel_key=kernel_key,
            checksums=checksums, sent_payload=payload, received_by_kernel=received,
            kernel_eof=kernel_eof, packets=packets, ignored_packets=peer.ignored,
            counters_before=counters_before, counters_after=counters_after,
            kernel_add_addrs=kernel_add_addrs)
    raise AssertionError("unreachable")  # ExitStack never swallows exceptions here


def run_handshake_demo(port: int, pcap_path: Path | None, console) -> int:  # noqa: ANN001
    """`mptcp-ref lab handshake`: run the exchange and print it; 0 on success, 1 on failure.

    `console` is a rich Console.
    """
    console.print(f"[bold]MP_CAPABLE handshake with the Linux kernel[/] over TUN "
                  f"({PEER_ADDRESS} -> {KERNEL_ADDRESS}:{port}, in a fresh namespace)")

    def show(exchanged: ExchangedPacket) -> None:
        style = "cyan" if exchanged.direction == "sent" else "green"
        console.print(exchanged.summary, style=style, highlight=False, soft_wrap=True)

    if os.geteuid() != 0:
        console.print("[bold red]handshake failed:[/] this lab needs root: it creates a "
                      "network namespace and a TUN device")
        return 1
    if pcap_path is not None and not pcap_available():
        console.print("[yellow]note:[/] impl.io.pcap is not built yet; no pcap is written")
        pcap_path = None
    try:
        result = kernel_mp_capable_handshake(port, pcap_path=pcap_path, on_packet=show)
    except HandshakeError as error:
        console.print(f"[bold red]handshake failed:[/] {error}")
        return 1
    except Exception as error:  # a lab or codec problem: still one clear line, status 1
        console.print(f"[bold red]handshake failed:[/] {type(error).__name__}: {error}")
        return 1
    console.print(f"our key {result.our_key:#018x} (token {token_from_key(result.our_key):#010x}), "
                  f"kernel key {result.kernel_key:#018x} "
                  f"(token {token_from_key(result.kernel_key):#010x}), "
                  f"checksums {'on' if result.checksums else 'off'}")
    console.print(f"kernel accept()+recv() read {result.received_by_kernel!r}; "
                  f"end-of-stream after our DATA_FIN: {result.kernel_eof}")
    deltas = result.mptcp_counter_deltas
    console.print("kernel MPTcpExt counter deltas: "
                  + ", ".join(f"{name} +{value}" for name, value in deltas.items()))
    failures = []
    if result.received_by_kernel != result.sent_payload:
        failures.append(f"the kernel read {result.received_by_kernel!r}, "
                        f"not {result.sent_payload!r}")
    for name in MPTCP_COUNTERS:
        if deltas.get(name, 0) != 1:
            failures.append(f"{name} went up by {deltas.get(name, 0)}, expected 1")
    if failures:
        console.print("[bold red]handshake failed:[/] " + "; ".join(failures))
        return 1
    if pcap_path is not None:
        console.print(f"wrote {len(result.packets)} packets to {pcap_path}")
    console.print("[bold green]ok[/]: MP_CAPABLE handshake with data completed and closed "
                  "gracefully (FIN + DATA_FIN both ways)")
    return 0
