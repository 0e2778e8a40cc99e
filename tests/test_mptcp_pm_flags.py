"""Path-manager limits and the MP_CAPABLE C flag (RFC 8684 3.1, 3.4.1) between our
endpoints, and the C flag from Linux (net.mptcp.allow_join_initial_addr_port=0)."""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from pathlib import Path

import pytest

from impl.io.link import LinkConfig
from impl.io.sim import Network
from impl.lab.scripted import PORT as LAB_PORT
from impl.lab.scripted import scripted_lab
from impl.mptcp.connection import MptcpConfig
from impl.mptcp.fullmesh import FullMesh
from impl.mptcp.host import MptcpHost
from impl.tcp.config import TcpConfig
from impl.wire.mptcp_options import AddAddr, MpCapable

from .mptcp_sim import CLIENT_ADDRESSES, PORT, SERVER_ADDRESS, SimMptcpHost, payload

CONFIG = MptcpConfig(tcp=TcpConfig(time_wait=1.0), add_addr_timeout=0.5)
SERVER_ADDRESSES = [SERVER_ADDRESS, "198.18.3.2", "198.18.4.2"]


def setup(server_config: MptcpConfig, client_config: MptcpConfig = CONFIG):
    network = Network(seed=0, capture=True)
    client = SimMptcpHost(MptcpHost(list(CLIENT_ADDRESSES[:2]), seed="c"))
    server = SimMptcpHost(MptcpHost(SERVER_ADDRESSES, seed="s"))
    network.add_host(client)
    network.add_host(server)
    for ours in CLIENT_ADDRESSES[:2]:
        for theirs in SERVER_ADDRESSES:
            network.add_link(ours, theirs, LinkConfig(delay=0.005))
    server.host.listen(PORT, server_config)
    connection = client.host.connect(SERVER_ADDRESS, PORT, 0.0, client_config)
    assert network.run(lambda: connection.fully_established and server.host.accepted,
                       time_limit=2)
    return network, client, server, connection, server.host.accepted[0]


def test_listener_sets_c_and_the_client_joins_only_announced_addresses():
    network, client, server, connection, accepted = setup(
        dataclasses.replace(CONFIG, no_initial_join=True))
    synacks = [o for _, d in network.captured for o in d.segment.header.options
               if isinstance(o, MpCapable) and o.sender_key is not None
               and o.receiver_key is None]
    assert synacks and all(o.no_initial_join for o in synacks)
    assert connection.peer_no_initial_join
    with pytest.raises(ConnectionError, match="C flag"):
        connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    accepted.announce_address(SERVER_ADDRESSES[1])
    mesh = FullMesh(CLIENT_ADDRESSES[:2])
    assert network.run(lambda: bool(connection.signals.remote_addresses), time_limit=2)
    assert mesh.apply(connection, network.now) == 2  # both our addresses, announced one only
    assert network.run(lambda: sum(sf.usable for sf in connection.subflows) == 3,
                       time_limit=3)
    remotes = {str(sf.remote) for sf in connection.subflows[1:]}
    assert remotes == {SERVER_ADDRESSES[1]}
    connection.send(payload(50_000))
    received = bytearray()
    assert network.run(lambda: received.extend(accepted.read()) or len(received) == 50_000,
                       time_limit=3)
    assert bytes(received) == payload(50_000)


def test_a_join_to_the_initial_address_is_refused_after_c():
    network, client, server, connection, accepted = setup(
        dataclasses.replace(CONFIG, no_initial_join=True))
    connection.peer_no_initial_join = False  # a client that ignores the C flag
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.dead, time_limit=3)
    assert server.host.counters["MPJoinRejected"] == 1
    assert len(accepted.subflows) == 1
    connection.send(payload(10_000))  # the connection carries on
    received = bytearray()
    assert network.run(lambda: received.extend(accepted.read()) or len(received) == 10_000,
                       time_limit=3)


def test_add_addr_beyond_the_accepted_limit_is_echoed_not_joined():
    network, client, server, connection, accepted = setup(
        CONFIG, dataclasses.replace(CONFIG, add_addr_accepted=1))
    for address in SERVER_ADDRESSES[1:]:
        accepted.announce_address(address)
    assert network.run(lambda: not accepted.signals.announced, time_limit=3)  # both echoed
    echoes = [o for _, d in network.captured for o in d.segment.header.options
              if isinstance(o, AddAddr) and o.echo]
    assert len({o.address for o in echoes}) == 2
    assert list(connection.signals.remote_addresses.values()) == [
        (ipaddress.ip_address(SERVER_ADDRESSES[1]), None)]


@pytest.mark.netns
def test_linux_sets_c_when_it_takes_no_join_to_its_initial_address(tmp_path: Path):
    """Linux with allow_join_initial_addr_port=0 sets C on its SYN/ACK; our full mesh then
    joins only the address it announces, and Linux accepts that join."""
    with scripted_lab(tmp_path / "c_flag.pcap", paths=2, signal_endpoint_id=2,
                      sysctls={"net.mptcp.allow_join_initial_addr_port": 0}) as run:
        run.kernel.listen("0.0.0.0", LAB_PORT)
        connection = run.connect()
        run.exchange(payload(2000, 1), payload(2000, 2))
        assert connection.peer_no_initial_join
        run.run(lambda: bool(connection.signals.remote_addresses), what="ADD_ADDR")
        FullMesh(run.lab.our_addresses).apply(connection, time.monotonic())
        run.run(lambda: sum(sf.usable for sf in connection.subflows) >= 2, what="the join")
        joined = {str(sf.remote) for sf in connection.subflows[1:]}
        assert joined == {run.lab.kernel_addresses[1]}, joined
        run.exchange(payload(20_000, 3), payload(20_000, 4))
        assert run.kernel_delta().get("MPTcpExtMPJoinAckRx", 0) >= 1
        run.close_both()
