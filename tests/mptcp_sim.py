"""Simulator glue for MPTCP tests: `impl.mptcp.MptcpHost` as an `impl.io.sim.Endpoint`,
and a client/server pair with one link per client address (one path per subflow).
`SimMptcpHost` lives in `impl.io.mptcp_host` (re-exported here for the tests)."""

from __future__ import annotations

import hashlib
import random

from impl.io.link import LinkConfig
from impl.io.mptcp_host import SimMptcpHost
from impl.io.sim import Network
from impl.mptcp.host import MptcpHost

PORT = 8080
CLIENT_ADDRESSES = ("198.18.0.1", "198.18.1.1", "198.18.2.1")
SERVER_ADDRESS = "198.18.0.2"
__all__ = ["SimMptcpHost", "mptcp_pair", "payload", "sha256"]


def mptcp_pair(
    links: list[LinkConfig] | None = None,
    *,
    seed: int = 0,
    wire: bool = False,
    capture: bool = False,
    server=None,
) -> tuple[Network, SimMptcpHost, object]:
    """A network with an MPTCP client (three addresses) and, by default, an MPTCP
    server (one address); path i joins client address i to the server with links[i]."""
    network = Network(seed=seed, wire=wire, capture=capture)
    client = SimMptcpHost(MptcpHost(list(CLIENT_ADDRESSES), seed=f"{seed}:client"))
    if server is None:
        server = SimMptcpHost(MptcpHost(SERVER_ADDRESS, seed=f"{seed}:server"))
    network.add_host(client)
    network.add_host(server)
    for address, link in zip(CLIENT_ADDRESSES, links or [LinkConfig()], strict=False):
        network.add_link(address, SERVER_ADDRESS, link)
    return network, client, server


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
