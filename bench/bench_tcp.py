"""Goodput of our TCP against Linux, next to Linux against Linux, through the same lab.

    .venv/bin/python -m bench.bench_tcp [--size BYTES] [--repeat N] [--ipv6] [--json FILE]

One path with an unlimited link (no delay, loss or rate: the link model still runs on
every packet, it just decides "now"). Measured, each `--repeat` times, median reported:

- ours -> kernel ("up") and kernel -> ours ("down"): `run_lab(peer="kernel")`, our
  `TcpHost` on the TUN driver in this process, a kernel socket in the lab namespace;
- kernel -> kernel: `KernelPairLab`, two kernel namespaces with a TUN each and the
  userspace forwarder process (the same link model) between them.

Goodput is payload bytes over the time from the initiator's connect to the receiver's
end-of-stream, on the shared monotonic clock, for every row alike. Both setups have one
userspace process on the path (our endpoint, or the forwarder), so the ratio shows what
our Python TCP costs compared with the kernel's: it is CPU-bound on this machine, and
other load on the machine moves both numbers (hence the median of several runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from bench.report import print_goodput_table
from impl.lab.run import LabRunSpec, run_lab
from impl.lab.topology import KernelPairLab, PathSpec
from impl.lab.traffic import KernelTraffic

MiB = 1 << 20
PORT = 5201


def ours(direction: str, size: int, ipv6: bool, seed: int) -> float:
    report = run_lab(LabRunSpec(peer="kernel", direction=direction, size=size, ipv6=ipv6,
                                seed=seed, timeout=30 + size / MiB))
    if not report["ok"] or not report["sha256_match"]:
        raise RuntimeError(f"our {direction} run failed: {report['reason']}")
    return float(report["goodput_mbit"])


def kernel_to_kernel(size: int, ipv6: bool, seed: int) -> float:
    timeout = 30 + size / MiB
    with KernelPairLab([PathSpec()], ipv6=ipv6, seed=seed) as lab:
        path = lab.paths[0]
        sink = KernelTraffic(lab.server, "sink", address=str(path.server), port=PORT,
                             listen=True, timeout=timeout)
        try:
            sink.wait_listening()
            source = KernelTraffic(lab.client, "source", address=str(path.server),
                                   port=PORT, listen=False, size=size, seed=seed,
                                   timeout=timeout)
            try:
                received, sent = sink.wait(timeout + 5), source.wait(10)
            finally:
                source.stop()
        finally:
            sink.stop()
    if not (received["ok"] and received["sha256"] == sent["sha256"]
            and received["bytes"] == size):
        raise RuntimeError(f"kernel-kernel run failed: {received} {sent}")
    return size * 8 / (received["finished"] - sent["started"]) / 1e6


def measure(size: int, repeat: int, ipv6: bool) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"ours_up": [], "ours_down": [], "kernel_kernel": []}
    for run in range(repeat):
        samples["kernel_kernel"].append(kernel_to_kernel(size, ipv6, run))
        samples["ours_up"].append(ours("up", size, ipv6, run))
        samples["ours_down"].append(ours("down", size, ipv6, run))
    median = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "size": size, "repeat": repeat, "family": "ipv6" if ipv6 else "ipv4",
        "samples_mbit": samples, "median_mbit": median,
        "ratio_up": median["ours_up"] / median["kernel_kernel"],
        "ratio_down": median["ours_down"] / median["kernel_kernel"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_tcp",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32 * MiB)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ipv6", action="store_true")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    result = measure(args.size, args.repeat, args.ipv6)
    print_goodput_table(f"TCP goodput, one unlimited path, {args.size / MiB:g} MiB, "
                        f"{result['family']}, median of {args.repeat}", result, args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
