"""Read-only views of a connection for reports and `getsockopt`-style queries: one dict
per subflow and one for the connection (the counterparts of Linux's MPTCP_INFO and
MPTCP_FULL_INFO / `ss -M`), shared by the lab reports and the socket API.

Byte counts are payload only: the SYN and a FIN each take one sequence number
(RFC 9293 3.4), so they are taken off.
"""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = ["connection_info", "format_endpoint", "subflow_info"]


def format_endpoint(address: object, port: int) -> str:
    address = ipaddress.ip_address(address)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def subflow_info(subflow) -> dict[str, Any] | None:
    """One subflow's addresses, state, priority, bytes and RTT; None before its TCP
    exists (a join still waiting for the connection to be fully established)."""
    tcp = subflow.tcp
    if tcp is None or tcp.receiver is None:
        return None
    sender, receiver = tcp.sender, tcp.receiver
    sent = sender.snd_una - tcp.iss - 1 - (1 if sender.fin_acked else 0)
    got = receiver.rcv_nxt - receiver.irs - 1 - (1 if receiver.fin_received else 0)
    srtt = tcp.rtt.srtt
    return {
        "initial": subflow.initial,
        "local_address": str(subflow.local), "local_port": tcp.local_port,
        "remote_address": str(subflow.remote), "remote_port": tcp.remote_port,
        "local": format_endpoint(subflow.local, tcp.local_port),
        "remote": format_endpoint(subflow.remote, tcp.remote_port),
        "state": str(tcp.state), "usable": subflow.usable, "backup": subflow.backup,
        "bytes_sent": max(0, sent), "bytes_received": max(0, got),
        "rtt": srtt, "retransmitted_segments": sender.retrans_segs,
        "timeouts": sender.timeouts, "close_reason": subflow.close_reason,
    }


def connection_info(connection) -> dict[str, Any]:
    """The connection's MPTCP-level state (RFC 8684 Appendix D close state, fallback,
    checksums, tokens) and the number of subflows."""
    subflows = [info for info in map(subflow_info, connection.subflows) if info]
    return {
        "fallback": connection.fallback, "checksums": connection.checksums,
        "fully_established": connection.fully_established,
        "data_state": connection.data_state, "closed_reason": connection.closed_reason,
        "local_token": connection.local_token, "remote_token": connection.remote_token,
        "subflows": len(subflows),
        "subflows_usable": sum(1 for info in subflows if info["usable"]),
        "peer_closed": connection.peer_closed,
    }
