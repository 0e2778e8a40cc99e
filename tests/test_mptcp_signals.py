"""ADD_ADDR and REMOVE_ADDR between our endpoints (RFC 8684 3.4): the HMAC checked and
the announcement echoed, resent until the echo arrives, a forged one dropped; a join to
an announced address; REMOVE_ADDR closing the subflows on that address."""

from __future__ import annotations

import dataclasses
import ipaddress

from impl.io.link import LinkConfig
from impl.io.sim import Datagram, Network
from impl.mptcp.connection import MptcpConfig
from impl.mptcp.host import MptcpHost
from impl.tcp.config import TcpConfig
from impl.tcp.segment import Segment
from impl.wire.mptcp_options import AddAddr, Dss, RemoveAddr

from .mptcp_sim import CLIENT_ADDRESSES, PORT, SERVER_ADDRESS, SimMptcpHost, payload

CONFIG = MptcpConfig(tcp=TcpConfig(time_wait=1.0), add_addr_timeout=0.5)
SECOND_SERVER_ADDRESS = "198.18.3.2"


def setup(seed=0):
    network = Network(seed=seed, capture=True)
    client = SimMptcpHost(MptcpHost(list(CLIENT_ADDRESSES[:2]), seed=f"{seed}:c"))
    server = SimMptcpHost(MptcpHost([SERVER_ADDRESS, SECOND_SERVER_ADDRESS], seed=f"{seed}:s"))
    network.add_host(client)
    network.add_host(server)
    network.add_link(CLIENT_ADDRESSES[0], SERVER_ADDRESS, LinkConfig(delay=0.01))
    network.add_link(CLIENT_ADDRESSES[1], SECOND_SERVER_ADDRESS, LinkConfig(delay=0.02))
    server.host.listen(PORT, CONFIG)
    connection = client.host.connect(SERVER_ADDRESS, PORT, 0.0, CONFIG)
    assert network.run(lambda: connection.fully_established and server.host.accepted,
                       time_limit=2)
    return network, client, server, connection, server.host.accepted[0]


def adds(network, echo):
    return [o for _, d in network.captured for o in d.segment.header.options
            if isinstance(o, AddAddr) and o.echo == echo]


def rewrite(datagram: Datagram, cls, change) -> Datagram | None:
    header = datagram.segment.header
    if not any(isinstance(o, cls) for o in header.options):
        return datagram
    options = tuple(change(o) if isinstance(o, cls) else o for o in header.options)
    if any(o is None for o in options):
        return None
    header = dataclasses.replace(header, options=options)
    return Datagram(datagram.src, datagram.dst, Segment(header, datagram.segment.payload))


def test_announced_address_is_echoed_and_joinable():
    network, client, server, connection, accepted = setup()
    accepted.announce_address(SECOND_SERVER_ADDRESS)
    second = ipaddress.ip_address(SECOND_SERVER_ADDRESS)
    assert network.run(lambda: connection.signals.remote_addresses.get(1) == (second, None)
                       and not accepted.signals.announced, time_limit=2)
    assert client.host.counters["AddAddr"] == 1 and client.host.counters["EchoAddTx"] == 1
    assert server.host.counters["EchoAdd"] == 1 and server.host.counters["AddAddrTx"] == 1
    [announced] = adds(network, echo=False)
    assert announced.truncated_hmac is not None and announced.address == second
    join = connection.add_subflow(CLIENT_ADDRESSES[1], remote=second, now=network.now)
    assert network.run(lambda: join.usable, time_limit=2)
    assert accepted.subflows[1].local == second
    data = payload(400_000)
    connection.send(data)
    assert network.run(lambda: len(accepted.received) == len(data), time_limit=20)
    assert bytes(accepted.read()) == data


def test_add_addr_is_resent_until_echoed():
    network, client, server, connection, accepted = setup(seed=1)
    dropped: list = []

    def drop_first_echo(option):
        if option.echo and not dropped:
            dropped.append(option)
            return None
        return option

    client.mutate = lambda d: rewrite(d, AddAddr, drop_first_echo)
    accepted.announce_address(SECOND_SERVER_ADDRESS)
    assert network.run(lambda: not accepted.signals.announced, time_limit=3)
    assert dropped
    assert server.host.counters["AddAddrTx"] == 2  # resent after add_addr_timeout
    assert server.host.counters["EchoAdd"] == 1
    assert client.host.counters["AddAddr"] == 2  # the repeat is echoed again


def test_forged_add_addr_is_dropped_and_never_echoed():
    network, client, server, connection, accepted = setup(seed=2)
    server.mutate = lambda d: rewrite(d, AddAddr, lambda o: dataclasses.replace(
        o, truncated_hmac=o.truncated_hmac ^ 1) if not o.echo else o)
    accepted.announce_address(SECOND_SERVER_ADDRESS)
    network.run(time_limit=3)
    assert client.host.counters["AddAddrDrop"] == CONFIG.add_addr_tries
    assert client.host.counters["AddAddr"] == 0 and not adds(network, echo=True)
    assert connection.signals.remote_addresses == {}
    assert not accepted.signals.announced  # gave up after add_addr_tries


def test_remove_addr_closes_the_subflows_on_that_address():
    network, client, server, connection, accepted = setup(seed=3)
    join = connection.add_subflow(CLIENT_ADDRESSES[1], remote=SECOND_SERVER_ADDRESS,
                                  now=network.now)
    assert network.run(lambda: join.usable, time_limit=2)
    connection.remove_address(CLIENT_ADDRESSES[1])
    assert join.tcp.is_closed
    assert network.run(lambda: server.host.counters["RmAddr"] == 1, time_limit=2)
    assert [o for _, d in network.captured for o in d.segment.header.options
            if isinstance(o, RemoveAddr)] == [RemoveAddr((1,))]
    assert network.run(lambda: accepted.subflows[1].dead, time_limit=2)
    data = payload(200_000)
    connection.send(data)
    assert network.run(lambda: len(accepted.received) == len(data), time_limit=10)
    assert bytes(accepted.read()) == data


def test_ipv6_paths_with_an_announced_ipv6_address():
    client_addresses = ["fd00:0:0:1::1", "fd00:0:0:2::1"]
    server_addresses = ["fd00:0:0:1::2", "fd00:0:0:2::2"]
    network = Network(seed=9, capture=True, wire=True)
    client = SimMptcpHost(MptcpHost(client_addresses, seed="v6c"))
    server = SimMptcpHost(MptcpHost(server_addresses, seed="v6s"))
    network.add_host(client)
    network.add_host(server)
    for ours, theirs in zip(client_addresses, server_addresses, strict=True):
        network.add_link(ours, theirs, LinkConfig(delay=0.01, loss=0.01))
    config = MptcpConfig(checksums=True, tcp=TcpConfig(mss=1440, time_wait=1.0))
    server.host.listen(PORT, config)
    connection = client.host.connect(server_addresses[0], PORT, 0.0, config)
    assert network.run(lambda: connection.fully_established and server.host.accepted,
                       time_limit=2)
    accepted = server.host.accepted[0]
    accepted.announce_address(server_addresses[1])
    second = ipaddress.ip_address(server_addresses[1])
    assert network.run(lambda: 1 in connection.signals.remote_addresses, time_limit=2)
    [announced] = adds(network, echo=False)
    assert announced.address == second  # 28 bytes: alone on its ACK, HMAC checked
    join = connection.add_subflow(client_addresses[1], remote=second, now=network.now)
    data = payload(500_000, seed=6)
    connection.send(data)
    connection.close()
    assert network.run(lambda: len(accepted.received) == len(data), time_limit=20)
    assert bytes(accepted.read()) == data
    assert join.tcp.sender.buffer.end - join.tcp.iss > 1  # the join carried data
    accepted.close()
    assert network.run(lambda: connection.is_closed and accepted.is_closed, time_limit=10)


def strip_data_acks(datagram: Datagram) -> Datagram | None:
    """Play Linux's listener before data on the initial subflow: no DATA_ACK-only pure
    ACKs (dropped), and ADD_ADDR on a pure ACK without a DSS."""
    header = datagram.segment.header
    if str(datagram.src) != SERVER_ADDRESS:
        return datagram
    options = tuple(o for o in header.options if not (isinstance(o, Dss) and o.mapping is None))
    if options == header.options:
        return datagram
    if not any(isinstance(o, AddAddr) for o in options) and not datagram.segment.payload:
        return None
    header = dataclasses.replace(header, options=options)
    return Datagram(datagram.src, datagram.dst, Segment(header, datagram.segment.payload))


def test_add_addr_before_any_dss_completes_the_initiators_handshake():
    # Linux's listener sends no DSS after the MP_CAPABLE third ACK and announces its
    # addresses on DSS-less pure ACKs before any data. The ADD_ADDR HMAC is keyed with
    # both keys (3.4.1), so it proves the listener has ours (3.1): the client echoes it
    # and may join at once. Here our server's DSS options are stripped to play Linux.
    network = Network(seed=4, capture=True)
    client = SimMptcpHost(MptcpHost(list(CLIENT_ADDRESSES[:2]), seed="4:c"))
    server = SimMptcpHost(MptcpHost([SERVER_ADDRESS, SECOND_SERVER_ADDRESS], seed="4:s"))
    network.add_host(client)
    network.add_host(server)
    network.add_link(CLIENT_ADDRESSES[0], SERVER_ADDRESS, LinkConfig(delay=0.01))
    network.add_link(CLIENT_ADDRESSES[1], SECOND_SERVER_ADDRESS, LinkConfig(delay=0.01))
    server.mutate = strip_data_acks
    server.host.listen(PORT, CONFIG)
    connection = client.host.connect(SERVER_ADDRESS, PORT, 0.0, CONFIG)
    assert network.run(lambda: server.host.accepted and server.host.accepted[0].remote_key,
                       time_limit=2)
    assert not connection.fully_established
    server.host.accepted[0].announce_address(SECOND_SERVER_ADDRESS)
    assert network.run(lambda: not server.host.accepted[0].signals.announced, time_limit=2)
    assert connection.fully_established and not connection.fallback
    assert client.host.counters["EchoAddTx"] == 1 and server.host.counters["EchoAdd"] == 1
    join = connection.add_subflow(CLIENT_ADDRESSES[1], remote=SECOND_SERVER_ADDRESS,
                                  now=network.now)
    assert network.run(lambda: join.usable, time_limit=2)


def test_remove_addr_leaves_even_when_data_takes_the_requested_ack():
    # 3.4.2 REMOVE_ADDR rides on a pure ACK. Removing our initial address while new
    # data is queued: the data leaves on the join in the same round and carries the
    # acknowledgment TCP was asked for, so the signal must ask again (seen against
    # Linux: the REMOVE_ADDR never left and the kernel kept the subflow).
    network, client, server, connection, accepted = setup(seed=5)
    join = connection.add_subflow(CLIENT_ADDRESSES[1], remote=SECOND_SERVER_ADDRESS,
                                  now=network.now)
    assert network.run(lambda: join.usable, time_limit=2)
    network.run(time_limit=0.5)  # idle: the join has its whole window
    data = payload(30_000, seed=5)
    connection.send(data)
    connection.remove_address(CLIENT_ADDRESSES[0])
    assert network.run(lambda: server.host.counters["RmAddr"] == 1, time_limit=2)
    assert client.host.counters["RmAddrTx"] == 1
    assert network.run(lambda: len(accepted.received) == len(data), time_limit=5)
    assert bytes(accepted.read()) == data
