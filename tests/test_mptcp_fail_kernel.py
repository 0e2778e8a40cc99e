"""DSS checksum failure against the Linux kernel (RFC 8684 3.7): our endpoint sends to a
kernel MPTCP listener with `net.mptcp.checksum_enabled=1` over one lab path, and our
own outgoing middlebox (`SimMptcpHost.mutate`) flips a byte in one data segment after
TCP's checksum, as a payload-rewriting middlebox would. The kernel's checksum check
fails (MPTcpExtDataCsumErr) and, on its only subflow, it sends MP_FAIL (MPFailTx); we
receive it (MPFailRx) and answer with the infinite mapping (InfiniteMapTx), which the
kernel takes (MPTcpExtInfiniteMapRx); both sides are plain TCP from then on and the
kernel receives every byte once. The lab namespaces are gone afterwards.
"""

from __future__ import annotations

import os

import pytest

from impl.io.sim import Datagram
from impl.lab.mptcp_run import run_mptcp_with_kernel
from impl.lab.netns import list_namespaces
from impl.lab.run import LabRunSpec
from impl.lab.topology import PathSpec
from impl.tcp.segment import Segment

pytestmark = pytest.mark.netns


class CorruptOnce:
    """Flip one payload byte of the `nth` data segment we send."""

    def __init__(self, nth: int) -> None:
        self.nth = nth
        self.seen = 0
        self.done = False

    def __call__(self, datagram: Datagram) -> Datagram:
        segment = datagram.segment
        if self.done or not segment.payload:
            return datagram
        self.seen += 1
        if self.seen < self.nth:
            return datagram
        self.done = True
        payload = bytearray(segment.payload)
        payload[len(payload) // 2] ^= 0x5A
        return Datagram(datagram.src, datagram.dst, Segment(segment.header, bytes(payload)))


def test_kernel_detects_a_corrupted_segment_and_we_answer_its_mp_fail():
    ours_only = f"mptcpref-{os.getpid()}-"  # other tests may run labs at the same time
    corrupt = CorruptOnce(nth=20)
    spec = LabRunSpec(peer="kernel", proto="mptcp", paths=[PathSpec()], size=1 << 20,
                      direction="up", checksums=True, timeout=40,
                      sysctls={"net.mptcp.checksum_enabled": 1})
    report = run_mptcp_with_kernel(spec, mutate=corrupt)
    assert not [n for n in list_namespaces() if n.startswith(ours_only)], "lab left behind"
    assert corrupt.done
    delta = report["kernel_mib_delta"]
    ours = report["our_counters"]
    assert report["checksums"] is True
    assert delta.get("MPTcpExtDataCsumErr", 0) >= 1, delta
    assert delta.get("MPTcpExtMPFailTx", 0) >= 1, delta
    assert ours["MPFailRx"] >= 1, ours
    assert ours["InfiniteMapTx"] == 1, ours
    assert delta.get("MPTcpExtInfiniteMapRx", 0) >= 1, delta
    assert report["fallback"] is True
    # The whole stream arrives, once (no byte twice, none lost); it differs from what we
    # sent in the byte the middlebox rewrote, as it would over plain TCP (3.7).
    assert report["bytes"] == spec.size, report["reason"]
    assert not report["sha256_match"]
