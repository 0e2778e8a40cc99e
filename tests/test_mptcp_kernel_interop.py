"""Our MPTCP endpoint against the Linux kernel's MPTCP over several lab paths
(`impl.lab.mptcp_run` through `impl.lab.run.run_lab`), each run in namespaces of its own
that are gone afterwards.

- our client -> kernel listener: after MP_CAPABLE we join from each of our other
  addresses (RFC 8684 3.2); the kernel's MPJoinSynRx/MPJoinAckRx rise by paths-1 and its
  HMAC failure counters stay 0; or the kernel announces its addresses (`signal`, 3.4.1)
  and we join them after checking the ADD_ADDR HMAC;
- kernel client -> our listener: kernel `subflow` endpoints join us, we check HMAC-A;
- IPv6, and DSS checksums required by the kernel (net.mptcp.checksum_enabled=1, 3.3.1);
- every subflow carries payload and the receiver's SHA-256 equals the sender's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from impl.lab.netns import NAME_PREFIX, list_namespaces
from impl.lab.run import LabRunSpec, run_lab
from impl.lab.topology import PathSpec

pytestmark = pytest.mark.netns

MiB = 1 << 20
HMAC_FAILURES = ("MPTcpExtMPJoinAckHMacFailure", "MPTcpExtMPJoinSynAckHMacFailure")


def _our_namespaces() -> set[str]:
    """Namespaces this process made (`mptcpref-<pid>-...`): other test runs on the
    machine create and remove theirs meanwhile."""
    mine = f"{NAME_PREFIX}{os.getpid()}-"
    return {name for name in list_namespaces() if name.startswith(mine)}


def _run(paths: int, direction: str, **kwargs: Any) -> dict[str, Any]:
    before = _our_namespaces()
    spec = LabRunSpec(peer="kernel", proto="mptcp", paths=[PathSpec()] * paths,
                      size=kwargs.pop("size", 2 * MiB), direction=direction,
                      timeout=kwargs.pop("timeout", 40), **kwargs)
    report = run_lab(spec)
    assert _our_namespaces() <= before, "the lab left a namespace behind"
    return report


def _check(report: dict[str, Any], paths: int, direction: str) -> dict[str, int]:
    assert report["ok"], report["reason"]
    assert report["sha256_match"]
    assert report["fallback"] is False
    subflows = report["subflows"]
    assert len(subflows) == paths, subflows
    assert sorted(s["path"] for s in subflows) == list(range(1, paths + 1)), subflows
    moved = "bytes_sent" if direction == "up" else "bytes_received"
    for subflow in subflows:
        assert subflow[moved] > 0, subflows  # every path carries data
    assert sum(s[moved] for s in subflows) >= report["size"]
    delta = report["kernel_mib_delta"]
    for name in HMAC_FAILURES:
        assert not delta.get(name), delta
    assert not delta.get("MPTcpExtMPCapableFallbackACK"), delta
    assert not delta.get("MPTcpExtMPCapableFallbackSYNACK"), delta
    assert not delta.get("MPTcpExtDSSNotMatching"), delta
    return delta


def _kernel_accepted_joins(delta: dict[str, int], joins: int) -> None:
    assert delta.get("MPTcpExtMPJoinSynRx", 0) == joins, delta
    assert delta.get("MPTcpExtMPJoinAckRx", 0) == joins, delta


@pytest.mark.parametrize(("paths", "direction"), [(2, "up"), (3, "down"), (3, "up")])
def test_our_client_joins_a_kernel_server_from_every_address(paths: int,
                                                              direction: str) -> None:
    report = _run(paths, direction)
    delta = _check(report, paths, direction)
    _kernel_accepted_joins(delta, paths - 1)
    assert delta.get("MPTcpExtMPCapableSYNRX") == 1, delta
    ours = report["our_counters"]
    assert ours["MPJoinSynAckRx"] == paths - 1 and ours["MPJoinSynAckHMacFailure"] == 0


def test_our_client_over_ipv6_paths() -> None:
    report = _run(2, "down", ipv6=True)
    assert report["family"] == "ipv6"
    _kernel_accepted_joins(_check(report, 2, "down"), 1)
    assert all(s["local"].startswith("[fd00:") for s in report["subflows"])


def test_kernel_requiring_dss_checksums() -> None:
    # net.mptcp.checksum_enabled=1: the kernel's MP_CAPABLE sets the A bit, so both ends
    # checksum every DSS mapping (3.3.1); a wrong checksum would show as DataCsumErr.
    report = _run(2, "up", sysctls={"net.mptcp.checksum_enabled": 1})
    delta = _check(report, 2, "up")
    _kernel_accepted_joins(delta, 1)
    assert report["checksums"] is True
    assert not delta.get("MPTcpExtDataCsumErr"), delta
    assert report["our_counters"]["DataCsumErr"] == 0


def test_kernel_announces_its_addresses_and_we_join_them() -> None:
    report = _run(3, "up", kernel_endpoints="signal")
    delta = _check(report, 3, "up")
    _kernel_accepted_joins(delta, 2)
    assert delta.get("MPTcpExtEchoAdd", 0) >= 2, delta  # we echoed each ADD_ADDR
    assert report["our_counters"]["AddAddrDrop"] == 0
    # each join went to the announced address of its own path
    for subflow in report["subflows"]:
        assert subflow["local"].split(".")[2] == subflow["remote"].split(".")[2], subflow


@pytest.mark.parametrize("direction", ["down", "up"])
def test_kernel_client_joins_our_server_with_subflow_endpoints(direction: str) -> None:
    report = _run(3, direction, initiator="peer")
    delta = _check(report, 3, direction)
    assert delta.get("MPTcpExtMPJoinSynTx", 0) == 2, delta
    assert delta.get("MPTcpExtMPJoinSynAckRx", 0) == 2, delta
    ours = report["our_counters"]
    assert ours["MPJoinSynRx"] == 2 and ours["MPJoinAckRx"] == 2
    assert ours["MPJoinAckHMacFailure"] == 0
    # the kernel joined from its path-i address; the driver kept each on path i
    remotes = sorted(s["remote"].split(":")[0] for s in report["subflows"])
    assert remotes == ["198.18.1.1", "198.18.2.1", "198.18.3.1"]
    links = {entry["path"]: entry["tun"] for entry in report["links"]}
    assert all(links[i]["packets_in"] > 0 and links[i]["packets_out"] > 0 for i in (1, 2, 3))


def test_cli_lab_run_mptcp_prints_a_report() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "impl.cli", "lab", "run", "--peer", "kernel", "--proto",
         "mptcp", "--paths", "2", "--size", str(MiB), "--direction", "up",
         "--kernel-endpoints", "subflow", "--kernel-limits", "2", "--timeout", "40"],
        capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["kernel_limits"] == 2
    _kernel_accepted_joins(_check(report, 2, "up"), 1)


def test_kernel_sending_announces_its_addresses_and_we_join_them() -> None:
    report = _run(2, "down", kernel_endpoints="signal", size=2 * MiB, timeout=20)
    _check(report, 2, "down")


def test_kernel_backup_endpoints_join_as_backup_and_stay_idle() -> None:
    # MP_JOIN with the B bit (3.2): our scheduler keeps backup subflows for when no
    # regular one is usable, so with path 1 healthy they carry no payload.
    report = _run(3, "up", initiator="peer", kernel_endpoints="backup", size=MiB)
    assert report["ok"], report["reason"]
    subflows = report["subflows"]
    assert [s["backup"] for s in subflows] == [False, True, True], subflows
    assert subflows[0]["bytes_sent"] == MiB
    assert all(s["bytes_sent"] == 0 for s in subflows[1:]), subflows
    assert report["kernel_mib_delta"].get("MPTcpExtMPJoinSynAckRx") == 2


def test_kernel_limits_reject_extra_joins_and_the_rest_carry_the_data() -> None:
    # `ip mptcp limits subflows 1`: the kernel refuses the second join with a RST
    # (MPJoinRejected); the connection goes on over the two subflows it has.
    report = _run(3, "up", kernel_limits=1, size=MiB)
    assert report["ok"], report["reason"]
    delta = report["kernel_mib_delta"]
    assert delta.get("MPTcpExtMPJoinSynRx") == 2 and delta.get("MPTcpExtMPJoinAckRx") == 1
    assert delta.get("MPTcpExtMPJoinRejected") == 1, delta
    carried = [s for s in report["subflows"] if s["bytes_sent"] > 0]
    assert len(carried) == 2 and sum(s["bytes_sent"] for s in carried) >= MiB
    assert [s["close_reason"] for s in report["subflows"]].count("reset") == 1
