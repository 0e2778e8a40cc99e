"""`project()` (impl/mptcp/project.py): our endpoint, run through a textbook scenario in
the simulator, projects onto a state the spec monitor reaches on the same scenario
(spec/scenarios.py), at the end and at the scenario's milestones."""

from __future__ import annotations

import pytest

from impl.io.link import LinkConfig
from impl.io.sim import TcpHost
from impl.mptcp.connection import MptcpConfig
from impl.mptcp.project import ProjectionError, matches, project
from impl.tcp.config import TcpConfig
from spec.events import MpJoin, SegmentReceived
from spec.monitor import Monitor, describe
from spec.scenarios import (
    _FALLBACK_EVENTS,
    _JOIN_EVENTS,
    _OPEN_AS_INITIATOR,
    ACTIVE_CLOSE,
    FASTCLOSE,
    PASSIVE_CLOSE,
)
from spec.system import SYSTEM

from .mptcp_sim import CLIENT_ADDRESSES, PORT, SERVER_ADDRESS, mptcp_pair

CONFIG = MptcpConfig(tcp=TcpConfig(time_wait=1.0))


def spec_states(events):
    monitor = Monitor()
    for event in events:
        assert monitor.feed(event), monitor.verdict.message
    return monitor.states


def assert_projects_into(connection, events):
    projected = project(connection)
    states = spec_states(events)
    assert any(matches(projected, state) for state in states), (
        f"projection {describe(SYSTEM, tuple(sorted(projected.items())))}\n"
        f"spec states {[describe(SYSTEM, s) for s in states]}")
    return projected


def open_pair(links=None):
    network, client, server = mptcp_pair(links or [LinkConfig(delay=0.005)] * 2)
    server.host.listen(PORT, CONFIG)
    connection = client.host.connect(SERVER_ADDRESS, PORT, 0.0, CONFIG)
    return network, client, server, connection


def exchange_like_the_scenario(network, server, connection):
    """_OPEN_AS_INITIATOR: we write 2 units, the peer 3, we read 3."""
    connection.send(b"ab")
    assert network.run(lambda: bool(server.host.accepted), time_limit=2)
    accepted = server.host.accepted[0]
    accepted.send(b"xyz")
    assert network.run(lambda: len(connection.received) == 3 and len(accepted.received) == 2
                       and connection.snd_una == connection.local_idsn + 3, time_limit=2)
    network.run(time_limit=0.5)  # the last DATA_ACKs
    assert connection.read() == b"xyz" and accepted.read() == b"ab"
    return accepted


def test_fresh_client_is_connecting():
    network, client, server, connection = open_pair()
    network.run(time_limit=0.0001)  # the SYN leaves
    projected = assert_projects_into(connection, ACTIVE_CLOSE.events[:2])
    assert projected["conn.state"] == "SYN_SENT" and projected["sf0.state"] == "SYN_SENT"


def test_after_the_handshake_and_data_both_ways():
    network, client, server, connection = open_pair()
    exchange_like_the_scenario(network, server, connection)
    projected = assert_projects_into(connection, _OPEN_AS_INITIATOR)
    assert projected["conn.state"] == "ESTABLISHED" and projected["conn.confirmed"]
    assert (projected["conn.written"], projected["conn.snd_una"], projected["conn.rcv_nxt"],
            projected["conn.delivered"]) == (2, 2, 3, 3)


def test_graceful_close_ends_closed_on_both_levels():
    network, client, server, connection = open_pair()
    accepted = exchange_like_the_scenario(network, server, connection)
    connection.close()
    assert network.run(lambda: accepted.peer_closed, time_limit=2)
    accepted.close()
    assert network.run(lambda: connection.is_closed and accepted.is_closed
                       and all(sf.tcp.is_closed for sf in connection.subflows),
                       time_limit=10)
    projected = assert_projects_into(connection, ACTIVE_CLOSE.events)
    assert projected["conn.state"] == "CLOSED" and projected["conn.fin_sent"]
    assert projected["conn.snd_una"] == 3 and projected["conn.peer_fin_dsn"] == 3


def test_listener_after_the_peer_closed_first():
    network, client, server, connection = open_pair()
    connection.send(b"ab")
    assert network.run(lambda: bool(server.host.accepted), time_limit=2)
    accepted = server.host.accepted[0]
    network.run(time_limit=0.5)
    assert accepted.read() == b"ab"
    connection.close()
    assert network.run(lambda: accepted.peer_closed, time_limit=2)
    accepted.send(b"z")
    accepted.close()
    assert network.run(lambda: accepted.is_closed and connection.is_closed and all(
        sf.tcp.is_closed for sf in accepted.subflows), time_limit=10)
    projected = assert_projects_into(accepted, PASSIVE_CLOSE.events)
    assert projected["conn.state"] == "CLOSED" and not projected["sf0.active"]


def test_after_a_join_and_after_its_address_is_removed():
    network, client, server, connection = open_pair()
    exchange_like_the_scenario(network, server, connection)
    connection.announce_address(CLIENT_ADDRESSES[1])
    join = connection.add_subflow(CLIENT_ADDRESSES[1], now=network.now)
    assert network.run(lambda: join.usable, time_limit=2)
    connection.send(b"cd")
    assert network.run(lambda: connection.snd_una == connection.local_idsn + 5,
                       time_limit=2)
    network.run(time_limit=0.2)
    projected = assert_projects_into(connection, _JOIN_EVENTS[:22])
    assert projected["sf1.state"] == "ESTABLISHED" and projected["sf1.local_id"] == 1
    connection.remove_address(CLIENT_ADDRESSES[1])
    assert network.run(lambda: join.tcp.is_closed, time_limit=2)
    network.run(time_limit=0.2)
    projected = assert_projects_into(connection, _JOIN_EVENTS)
    assert projected["sf1.state"] == "CLOSED" and projected["conn.state"] == "ESTABLISHED"


def test_after_fallback_to_a_plain_tcp_listener():
    plain = TcpHost(SERVER_ADDRESS, seed="plain")
    plain.listen(PORT, TcpConfig(time_wait=1.0))
    network, client, _ = mptcp_pair([LinkConfig(delay=0.005)], server=plain)
    connection = client.host.connect(SERVER_ADDRESS, PORT, 0.0, CONFIG)
    connection.send(b"a")
    assert network.run(lambda: bool(plain.accepted), time_limit=2)
    peer = plain.accepted[0]
    peer.send(b"xy")
    network.run(time_limit=0.5)
    assert connection.read() == b"xy"
    projected = assert_projects_into(connection, _FALLBACK_EVENTS[:8])
    assert projected["conn.fallback"] and projected["conn.state"] == "ESTABLISHED"
    connection.close()
    network.run(time_limit=0.5)
    peer.close()
    assert network.run(lambda: connection.is_closed and connection.subflows[0].tcp.is_closed,
                       time_limit=10)
    projected = assert_projects_into(connection, _FALLBACK_EVENTS)
    assert projected["conn.state"] == "CLOSED"


def test_after_fastclose_every_subflow_is_reset():
    network, client, server, connection = open_pair()
    exchange_like_the_scenario(network, server, connection)
    join = connection.add_subflow(CLIENT_ADDRESSES[0], now=network.now)
    assert network.run(lambda: join.usable, time_limit=2)
    network.run(time_limit=0.2)
    connection.abort()
    network.run(time_limit=0.2)
    # The scenario's peer answers the join from its address ID 1; ours has one address.
    events = tuple(SegmentReceived(1, "SA", options=(MpJoin(address_id=0),))
                   if event == SegmentReceived(1, "SA", options=(MpJoin(address_id=1),))
                   else event for event in FASTCLOSE.events)
    projected = assert_projects_into(connection, events)
    assert projected["conn.state"] == "CLOSED" and projected["conn.fastclosed"]
    assert server.host.accepted[0].closed_reason == "fastclose"


def test_more_subflows_than_slots_cannot_be_projected():
    network, client, server, connection = open_pair()
    exchange_like_the_scenario(network, server, connection)
    for address in (CLIENT_ADDRESSES[1], CLIENT_ADDRESSES[2], CLIENT_ADDRESSES[1]):
        connection.add_subflow(address, now=network.now)
    network.run(time_limit=0.5)
    with pytest.raises(ProjectionError):
        project(connection)
    assert connection.project.__doc__  # the connection's one-line delegate exists
