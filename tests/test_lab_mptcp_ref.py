"""`lab run --proto mptcp --peer ref`: two of our MPTCP hosts through a Linux router
namespace, every path carrying its own subflow, the data intact both ways."""

from __future__ import annotations

import pytest

from impl.lab.run import LabRunSpec, run_lab
from impl.lab.topology import PathSpec

pytestmark = pytest.mark.netns


def test_our_client_sends_to_our_server_over_three_paths():
    report = run_lab(LabRunSpec(peer="ref", proto="mptcp", direction="up", size=1_500_000,
                                paths=[PathSpec(rate=30e6) for _ in range(3)], seed=3))
    assert report["ok"], report["reason"]
    assert report["sha256_match"] and report["bytes"] == 1_500_000
    subflows = report["subflows"]
    assert sorted(subflow["path"] for subflow in subflows) == [1, 2, 3]
    assert all(subflow["bytes_sent"] > 0 for subflow in subflows), subflows
    assert report["our_counters"]["MPCapableSYNTX"] == 1
    assert report["peer_counters"]["MPJoinAckRx"] == 2
    assert report["peer_counters"].get("MPJoinAckHMacFailure", 0) == 0


def test_their_client_sends_to_our_server_over_ipv6_with_checksums_and_loss():
    report = run_lab(LabRunSpec(peer="ref", proto="mptcp", direction="down", size=800_000,
                                initiator="peer", ipv6=True, checksums=True,
                                paths=[PathSpec(loss=0.01) for _ in range(2)], seed=4))
    assert report["ok"], report["reason"]
    assert report["sha256_match"] and report["checksums"] is True
    assert len(report["subflows"]) == 2
    assert all(subflow["bytes_received"] > 0 for subflow in report["subflows"])
    assert report["our_counters"].get("DataCsumErr", 0) == 0
