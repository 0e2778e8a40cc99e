"""Data-level reliability and flow control between two of our MPTCP endpoints in the
simulator (RFC 8684 3.3.4, 3.3.6; `impl/mptcp/datalevel.py`):

- a subflow that goes on acknowledging at the TCP level while its data never reaches
  the peer's data level (mappings eaten on the way): the data-level retransmission
  timer sends the stuck chunks again on the other subflow, the transfer completes;
- a receiver that drops one mapping at the data level (out of its window, as Linux
  does): the chunk comes again on the other subflow, with the same DSNs;
- DATA_ACKs withheld for a while: the timer resends data the peer already has; every
  extra copy is counted once as DuplicateData and nothing is delivered twice;
- a reader that does not read: the sender stops at about the data-level window;
  reading resumes it; nothing is lost; nor when the window updates are lost;
- against the Linux kernel (netns): six 200 KB transfers, each on two subflows from
  the first byte, each with one mapping the kernel drops at the MPTCP level after its
  subflow acked it (MPTcpExtNoDSSInWindow): none stalls; and the kernel as sender
  stops at our data-level window while our reader does not read, and we stop at its
  window while its reader does not.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack, contextmanager

import pytest

from impl.io.link import LinkConfig
from impl.io.mptcp_host import SimMptcpHost
from impl.io.sim import Datagram
from impl.io.tun_loop import TunDriver
from impl.lab.kernel_socket import KernelSocket
from impl.lab.netns import list_namespaces
from impl.lab.run import our_config
from impl.lab.topology import KernelPeerLab, PathSpec, kernel_counter_delta
from impl.mptcp.connection import MptcpConfig
from impl.mptcp.host import MptcpHost
from impl.tcp.config import TcpConfig
from impl.tcp.segment import Segment
from impl.wire.mptcp_options import DataSequenceMapping, Dss

from .mptcp_sim import CLIENT_ADDRESSES, PORT, SERVER_ADDRESS, mptcp_pair, payload, sha256

CONFIG = MptcpConfig(tcp=TcpConfig(time_wait=1.0))
KERNEL_PORT = 5301
# Path 2 (client address 1) is the faster one, so the scheduler keeps using it.
PATHS = [LinkConfig(delay=0.020, rate=20e6, queue_limit=200_000),
         LinkConfig(delay=0.005, rate=20e6, queue_limit=200_000)]


def open_connection(paths=PATHS, *, seed=0, client_config=CONFIG, server_config=CONFIG):
    network, client, server = mptcp_pair(paths, seed=seed)
    server.host.listen(PORT, server_config)
    connection = client.host.connect(SERVER_ADDRESS, PORT, 0.0, client_config)
    for address in CLIENT_ADDRESSES[1:len(paths)]:
        connection.add_subflow(address, now=0.0)
    assert network.run(lambda: len(server.host.accepted) == 1 and len(
        connection.subflows) == len(paths) and all(
        sf.usable for sf in connection.subflows), time_limit=5)
    return network, client, server, connection, server.host.accepted[0]


def receive_all(network, receiver, size, time_limit):
    got = bytearray()

    def done():
        got.extend(receiver.read())
        return len(got) >= size

    assert network.run(done, time_limit=time_limit)
    return bytes(got)


def replace_dss(datagram: Datagram, dss: Dss | None) -> Datagram:
    header = datagram.segment.header
    options = tuple(o for o in header.options if not isinstance(o, Dss))
    if dss is not None:
        options += (dss,)
    header = dataclasses.replace(header, options=options)
    return Datagram(datagram.src, datagram.dst, Segment(header, datagram.segment.payload))


def dss_of(datagram: Datagram) -> Dss | None:
    return next((o for o in datagram.segment.header.options if isinstance(o, Dss)), None)


class MappingLog:
    """Every mapping the client put on the wire: {(source address, dsn, ssn, length)}."""

    def __init__(self) -> None:
        self.mappings: set[tuple] = set()

    def record(self, datagram: Datagram) -> None:
        dss = dss_of(datagram)
        if dss is not None and dss.mapping is not None and datagram.segment.payload:
            m = dss.mapping
            self.mappings.add((datagram.src, m.dsn, m.subflow_sequence,
                               m.data_level_length))

    def sources_by_dsn(self) -> dict[int, set]:
        sources: dict[int, set] = {}
        for src, dsn, _, _ in self.mappings:
            sources.setdefault(dsn, set()).add(src)
        return sources

    def bytes_mapped(self) -> int:
        return sum(length for *_, length in self.mappings)


def test_a_subflow_that_acks_but_loses_mappings_is_bypassed_by_the_data_timer():
    network, client, server, connection, accepted = open_connection(seed=3)
    data = payload(1 << 20, seed=3)
    connection.send(data)
    dark = connection.subflows[1]
    assert network.run(lambda: dark.tcp.sender.snd_una - dark.tcp.iss > 60_000,
                       time_limit=5)
    log = MappingLog()

    def black_hole(datagram: Datagram) -> Datagram:
        # The path keeps its TCP going (segments and ACKs pass), but the mappings are
        # stripped: the peer's TCP acknowledges bytes its data level never sees.
        log.record(datagram)
        dss = dss_of(datagram)
        if datagram.src == dark.local and dss is not None and dss.mapping is not None:
            return replace_dss(datagram, dataclasses.replace(dss, mapping=None))
        return datagram

    client.mutate = black_hole
    started = network.now
    got = receive_all(network, accepted, len(data), time_limit=30)
    assert sha256(got) == sha256(data)
    assert network.now - started < 15  # timer-paced, not stalled
    counters = client.host.counters
    assert counters["DataRtoRetrans"] >= 1 and counters["MPTCPRetrans"] >= 1
    assert not dark.stale and not dark.dead  # TCP saw nothing wrong on that path
    served = accepted.subflows[1]
    assert len(served.receiver.pending) > 0  # bytes TCP-acked, never given to MPTCP
    # The chunks went again on the other subflow: same DSNs, new mappings there.
    both = {dark.local, connection.subflows[0].local}
    resent = [dsn for dsn, sources in log.sources_by_dsn().items() if sources >= both]
    assert len(resent) >= 2, resent


def test_a_mapping_dropped_at_the_data_level_comes_again_on_another_subflow():
    network, client, server, connection, accepted = open_connection(seed=4)
    data = payload(600_000, seed=4)
    victim = connection.subflows[1]
    log = MappingLog()
    target: dict[str, int] = {}

    def push_one_mapping_out_of_window(datagram: Datagram) -> Datagram:
        log.record(datagram)
        dss = dss_of(datagram)
        if datagram.src != victim.local or dss is None or dss.mapping is None:
            return datagram
        mapping = dss.mapping
        if "dsn" not in target and mapping.dsn - connection.local_idsn > 100_000:
            target["dsn"] = mapping.dsn
        if target.get("dsn") != mapping.dsn:
            return datagram
        # Every copy of that one mapping on this subflow (TCP retransmissions too) now
        # names DSNs far past the receiver's window: its TCP acks the bytes, its data
        # level drops them (NoDSSInWindow), as Linux does with out-of-window data.
        moved = DataSequenceMapping((mapping.dsn + (1 << 40)) & ((1 << 64) - 1),
                                    mapping.subflow_sequence, mapping.data_level_length,
                                    mapping.checksum)
        return replace_dss(datagram, dataclasses.replace(dss, mapping=moved))

    client.mutate = push_one_mapping_out_of_window
    connection.send(data)
    got = receive_all(network, accepted, len(data), time_limit=20)
    assert sha256(got) == sha256(data)
    assert "dsn" in target
    assert server.host.counters["NoDSSInWindow"] >= 1
    assert client.host.counters["DataRtoRetrans"] >= 1
    # The dropped chunk was sent again, same DSN, on the other subflow.
    assert log.sources_by_dsn()[target["dsn"]] >= {victim.local,
                                                   connection.subflows[0].local}
    assert server.host.counters["DSSNotMatching"] == 0


def test_withheld_data_acks_make_duplicates_that_are_counted_once_and_delivered_once():
    network, client, server, connection, accepted = open_connection(seed=5)
    data = payload(400_000, seed=5)
    log = MappingLog()
    client.mutate = lambda datagram: (log.record(datagram), datagram)[1]
    quiet: dict[str, float] = {}

    def withhold_data_acks(datagram: Datagram) -> Datagram:
        # For 0.8 s the server's segments lose their DSS: TCP acks flow, DATA_ACKs
        # do not, so the client's data-level timer fires and resends data the server
        # already has.
        if "from" not in quiet and accepted.reassembly.rcv_nxt - accepted.remote_idsn > 100_000:
            quiet["from"] = network.now
        start = quiet.get("from")
        if start is not None and network.now < start + 0.8 and dss_of(datagram):
            return replace_dss(datagram, None)
        return datagram

    server.mutate = withhold_data_acks
    connection.send(data)
    got = receive_all(network, accepted, len(data), time_limit=20)
    assert sha256(got) == sha256(data)  # every byte once, in order
    end = connection.local_idsn + 1 + len(data)
    assert network.run(lambda: connection.snd_una == end, time_limit=5)
    network.run(time_limit=2)  # let every resent copy arrive
    assert all(sf.tcp.sender.flight_size == 0 for sf in connection.subflows)
    assert client.host.counters["DataRtoRetrans"] >= 1
    counters = server.host.counters
    assert counters["DuplicateData"] >= 1
    # Lossless links: every byte mapped more than once arrived as an extra copy, and
    # each extra copy was counted once.
    extra = log.bytes_mapped() - len(data)
    assert extra > 0
    assert accepted.reassembly.duplicate_bytes == extra


def test_a_reader_that_does_not_read_stops_the_sender_at_the_window():
    window = 128 << 10
    server_config = MptcpConfig(tcp=TcpConfig(time_wait=1.0), receive_buffer=window)
    network, client, server, connection, accepted = open_connection(
        seed=6, server_config=server_config)
    data = payload(1 << 20, seed=6)
    connection.send(data)
    start = connection.local_idsn + 1
    network.run(time_limit=3)  # nobody reads
    stopped_at = connection.snd_una - start
    # The window field counts in units of 2**shift (32 bytes here), rounded up.
    assert window - 2 * 1460 <= stopped_at <= window + 32, stopped_at
    assert connection.snd_nxt - start <= window + 32 + 1  # one probe byte at most
    assert len(accepted.received) == stopped_at  # held for the reader, none dropped
    network.run(time_limit=3)  # still nobody reads: at most a few probe bytes more
    assert connection.snd_una - start - stopped_at <= 8
    assert server.host.counters["NoDSSInWindow"] == 0  # the sender kept to the window
    # Reading reopens the window; the rest follows, nothing lost or doubled.
    got = receive_all(network, accepted, len(data), time_limit=20)
    assert sha256(got) == sha256(data)
    assert connection.send_edge - connection.snd_una <= window + 2 * 1460


def test_lost_window_updates_do_not_deadlock_a_closed_window():
    # After the reader took everything, the window updates it triggers are all lost:
    # the one-byte probe the closed window left outstanding (TCP's persist timer on its
    # subflow) brings the new window, and the transfer completes.
    window = 128 << 10
    server_config = MptcpConfig(tcp=TcpConfig(time_wait=1.0), receive_buffer=window)
    network, client, server, connection, accepted = open_connection(
        seed=7, server_config=server_config)
    data = payload(1 << 20, seed=7)
    connection.send(data)
    network.run(time_limit=3)
    assert connection.snd_una - (connection.local_idsn + 1) <= window + 32
    server_address = accepted.subflows[0].local
    started = network.now
    network.filters.append(lambda d, now: d.src == server_address and now < started + 0.5)
    first = accepted.read()
    got = first + receive_all(network, accepted, len(data) - len(first), 20)
    assert len(network.filtered) >= 2  # the updates on both subflows were lost
    assert sha256(got) == sha256(data)
    assert network.now - started < 10


# -- against the Linux kernel ----------------------------------------------------------

KERNEL_RUNS = 6
KERNEL_SIZE = 200 * 1024


class Ticker:
    """An endpoint without addresses whose timer wakes the TUN driver every 20 ms, so
    the in-process kernel socket is pumped even when no packet arrives."""

    addresses: tuple = ()

    def receive(self, datagram, now: float) -> None:
        raise AssertionError("the ticker owns no address")

    def datagrams_to_send(self, now: float) -> list:
        return []

    def next_timer(self) -> float:
        return time.monotonic() + 0.02

    def handle_timer(self, now: float) -> None:
        return None


class MoveFirstMapping:
    """`SimMptcpHost.mutate`: every copy of the first mapping sent from `address` names
    DSNs 2**40 further on (far past any window); the rest passes unchanged."""

    def __init__(self, address) -> None:
        self.address = address
        self.moved: int | None = None  # the original DSN

    def __call__(self, datagram: Datagram) -> Datagram:
        dss = dss_of(datagram)
        if datagram.src != self.address or dss is None or dss.mapping is None:
            return datagram
        mapping = dss.mapping
        if self.moved is None:
            self.moved = mapping.dsn
        if mapping.dsn != self.moved:
            return datagram
        moved = DataSequenceMapping((mapping.dsn + (1 << 40)) & ((1 << 64) - 1),
                                    mapping.subflow_sequence, mapping.data_level_length,
                                    mapping.checksum)
        return replace_dss(datagram, dataclasses.replace(dss, mapping=moved))


@dataclasses.dataclass
class KernelLab:
    lab: KernelPeerLab
    driver: TunDriver
    host: MptcpHost
    endpoint: SimMptcpHost
    stack: ExitStack
    before: dict

    def kernel_socket(self, port: int) -> KernelSocket:
        kernel = KernelSocket(self.lab.namespace)
        self.stack.callback(kernel.stop)
        kernel.listen(self.lab.kernel_addresses[0], port)
        return kernel

    def delta(self) -> dict[str, int]:
        return kernel_counter_delta(self.before, self.lab.counters())


@contextmanager
def kernel_lab(name: str):
    """Two paths to a kernel MPTCP host in fresh namespaces, our host behind the TUNs
    (as tests/test_mptcp_kernel_scenarios.py builds them); the namespace is gone after."""
    with ExitStack() as stack:
        lab = stack.enter_context(KernelPeerLab([PathSpec(), PathSpec()], seed=0))
        namespace = lab.namespace.name
        driver = TunDriver(sticky=True)
        stack.callback(driver.close)
        host = MptcpHost(lab.our_addresses, seed=name)
        endpoint = SimMptcpHost(host)
        driver.add_endpoint(endpoint)
        driver.add_endpoint(Ticker())
        for index, (tun, ours) in enumerate(zip(lab.tuns, lab.our_addresses, strict=True)):
            outbound, inbound = lab.links(index)
            driver.attach(tun, [ours], label=f"path{index + 1}", outbound=outbound,
                          inbound=inbound)
        lab.route_by_our_address()
        lab.mptcp_limits(subflows=2, add_addr_accepted=2)
        yield KernelLab(lab, driver, host, endpoint, stack, lab.counters())
    assert namespace not in list_namespaces()


@pytest.mark.netns
def test_the_kernel_dropping_data_its_subflow_acked_does_not_stall_us():
    # Our client opens its join at once and writes 200 KB before the kernel's first
    # DATA_ACK. Linux drops out-of-order data past the window its MPTCP level has
    # announced (MPTcpExtNoDSSInWindow) after its subflow acknowledged it; to make
    # that happen in every run, the first mapping on the join names DSNs far ahead.
    # Without the data-level timer each of these transfers stalled for good.
    with kernel_lab("first-byte") as run:
        lab, host, endpoint = run.lab, run.host, run.endpoint
        config = MptcpConfig(tcp=our_config(False))
        started = time.monotonic()
        for index in range(KERNEL_RUNS):
            kernel = run.kernel_socket(KERNEL_PORT + index)
            data = payload(KERNEL_SIZE, seed=100 + index)
            connection = host.connect(lab.kernel_addresses[0], KERNEL_PORT + index,
                                      time.monotonic(), config)
            join = connection.add_subflow(lab.our_addresses[1], now=time.monotonic())
            endpoint.mutate = MoveFirstMapping(join.local)
            connection.send(data)
            connection.close()

            def delivered(kernel=kernel, size=KERNEL_SIZE) -> bool:
                kernel.pump()
                return len(kernel.received) >= size and kernel.eof

            assert run.driver.run(delivered, 20.0), (
                f"run {index} stalled: kernel has {len(kernel.received)} bytes; ours "
                f"{host.counters.nonzero()}; kernel {run.delta()}")
            assert kernel.received_sha256 == sha256(data)
            assert endpoint.mutate.moved is not None  # the join carried data, one mapping lost
            kernel.stop()
        elapsed = time.monotonic() - started
        delta = run.delta()
        print(f"\n{KERNEL_RUNS} x {KERNEL_SIZE} B in {elapsed:.1f} s; ours "
              f"{host.counters.nonzero()}; kernel "
              f"{ {k: v for k, v in delta.items() if k.startswith('MPTcpExt')} }")
        assert delta.get("MPTcpExtMPJoinAckRx", 0) == KERNEL_RUNS
        assert delta.get("MPTcpExtNoDSSInWindow", 0) >= KERNEL_RUNS, delta
        assert host.counters["DataRtoRetrans"] >= KERNEL_RUNS
        assert elapsed < 10 * KERNEL_RUNS
        assert not delta.get("MPTcpExtDSSNotMatching"), delta


@pytest.mark.netns
def test_the_kernel_sender_keeps_to_our_data_level_window():
    # 3.3.4 against Linux: our window field is the data-level window relative to the
    # DATA_ACK on both subflows; a reader that does not read stops the kernel's
    # transfer at about that window, and reading lets the rest through intact.
    window = 128 << 10
    size = 1 << 20
    with kernel_lab("window") as run:
        kernel = run.kernel_socket(KERNEL_PORT)
        config = MptcpConfig(tcp=our_config(False), receive_buffer=window)
        connection = run.host.connect(run.lab.kernel_addresses[0], KERNEL_PORT,
                                      time.monotonic(), config)
        join = connection.add_subflow(run.lab.our_addresses[1], now=time.monotonic())
        data = payload(size, seed=7)
        kernel.send(data)

        def held() -> int:
            kernel.pump()
            return len(connection.received)

        assert run.driver.run(lambda: held() >= window - 4 * 1460 and join.usable, 10.0)
        run.driver.run(lambda: held() > 2 * window, 1.5)  # nobody reads for 1.5 s
        stopped_at = held()
        assert stopped_at <= window + 2 * 1460, stopped_at
        assert run.host.counters["NoDSSInWindow"] == 0
        got = bytearray()

        def all_read() -> bool:
            kernel.pump()
            got.extend(connection.read())
            return len(got) >= size

        assert run.driver.run(all_read, 20.0), (len(got), run.delta())
        assert sha256(bytes(got)) == sha256(data)
        assert join.tcp.receiver.rcv_nxt - join.tcp.receiver.irs > 1  # both paths carried
        print(f"\nkernel stopped at {stopped_at} B of a {window} B window; kernel "
              f"{ {k: v for k, v in run.delta().items() if k.startswith('MPTcpExt')} }")


@pytest.mark.netns
def test_we_keep_to_the_kernel_data_level_window_while_it_does_not_read():
    # The other way round: the kernel's application does not read; we stop where its
    # MPTCP-level window ends (send_edge), the kernel drops nothing as out of window,
    # and once it reads the rest arrives intact.
    size = 2 << 20
    with kernel_lab("their-window") as run:
        kernel = run.kernel_socket(KERNEL_PORT)
        kernel.read_paused = True
        config = MptcpConfig(tcp=our_config(False))
        connection = run.host.connect(run.lab.kernel_addresses[0], KERNEL_PORT,
                                      time.monotonic(), config)
        connection.add_subflow(run.lab.our_addresses[1], now=time.monotonic())
        data = payload(size, seed=8)
        connection.send(data)

        def pump() -> bool:
            kernel.pump()
            return False

        run.driver.run(pump, 2.0)
        start = connection.local_idsn + 1
        stalled_at = connection.snd_una - start
        assert 0 < stalled_at < size  # the kernel's receive buffer filled up
        assert connection.snd_nxt <= connection.send_edge + 1  # at most a window probe
        run.driver.run(pump, 1.0)
        assert connection.snd_una - start - stalled_at <= 64 << 10  # (nearly) stopped
        kernel.read_paused = False

        def all_there() -> bool:
            kernel.pump()
            return len(kernel.received) >= size

        assert run.driver.run(all_there, 30.0), (len(kernel.received), run.delta())
        assert kernel.received_sha256 == sha256(data)
        delta = run.delta()
        assert not delta.get("MPTcpExtNoDSSInWindow"), delta
        print(f"\nstopped at {stalled_at} B while the kernel did not read; kernel "
              f"{ {k: v for k, v in delta.items() if k.startswith('MPTcpExt')} }; ours "
              f"{run.host.counters.nonzero()}")
