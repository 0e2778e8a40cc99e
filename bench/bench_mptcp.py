"""Goodput of our MPTCP against Linux over several paths, next to Linux MPTCP against
Linux MPTCP through the same lab and link model.

    .venv/bin/python -m bench.bench_mptcp [--paths 2] [--rate 50] [--size BYTES]
                                          [--repeat N] [--ipv6] [--json FILE]

Every path has the same link (`--rate` Mbit/s each way, `--delay` ms one way; 0 means
unlimited). Measured `--repeat` times, median reported:

- ours -> kernel ("up") and kernel -> ours ("down"): `run_lab(proto="mptcp")`, our
  client joining the kernel listener from each of its addresses (RFC 8684 3.2);
- kernel -> kernel: `KernelPairLab`; the client namespace has `subflow` endpoints on
  its path-2.. addresses (the kernel's full mesh to the server's one address) and the
  server reaches each client address over its own path (a destination rule), so both
  setups use one subflow per path.

With rate-limited paths the aggregate is what MPTCP is for: a single path caps at
`--rate`, N paths at N times that. The ratio is ours / kernel-kernel.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from bench.report import print_goodput_table
from impl.lab.run import LabRunSpec, run_lab
from impl.lab.topology import (
    FIRST_TABLE,
    KernelPairLab,
    PathSpec,
    add_mptcp_endpoint,
    set_mptcp_limits,
)
from impl.lab.traffic import KernelTraffic

MiB = 1 << 20
PORT = 5201
FLAG_SUBFLOW = 2


def _specs(paths: int, rate: float, delay: float) -> list[PathSpec]:
    return [PathSpec(rate=rate * 1e6 if rate else None, delay=delay / 1000)] * paths


def ours(direction: str, specs: list[PathSpec], size: int, ipv6: bool,
         seed: int) -> tuple[float, list[int]]:
    report = run_lab(LabRunSpec(peer="kernel", proto="mptcp", direction=direction,
                                paths=specs, size=size, ipv6=ipv6, seed=seed,
                                timeout=60 + 2 * size / MiB))
    if not report["ok"] or not report["sha256_match"]:
        raise RuntimeError(f"our {direction} run failed: {report['reason']}")
    moved = "bytes_sent" if direction == "up" else "bytes_received"
    return float(report["goodput_mbit"]), [s[moved] for s in report["subflows"]]


def kernel_to_kernel(specs: list[PathSpec], size: int, ipv6: bool, seed: int) -> float:
    timeout = 60 + 2 * size / MiB
    with KernelPairLab(specs, ipv6=ipv6, seed=seed) as lab:
        joins = len(specs) - 1
        for namespace in (lab.server, lab.client):
            set_mptcp_limits(namespace, joins, joins)
        for path in lab.paths[1:]:
            add_mptcp_endpoint(lab.client, str(path.client), FLAG_SUBFLOW,
                               ifname=f"path{path.index}")
            lab.server.add_destination_rule(str(path.client), FIRST_TABLE + path.index)
        server = str(lab.paths[0].server)
        sink = KernelTraffic(lab.server, "sink", address=server, port=PORT, listen=True,
                             proto="mptcp", timeout=timeout)
        try:
            sink.wait_listening()
            source = KernelTraffic(lab.client, "source", address=server, port=PORT,
                                   listen=False, size=size, seed=seed, proto="mptcp",
                                   bind=str(lab.paths[0].client), timeout=timeout)
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


def measure(paths: int, rate: float, delay: float, size: int, repeat: int,
            ipv6: bool) -> dict[str, Any]:
    specs = _specs(paths, rate, delay)
    samples: dict[str, list[float]] = {"ours_up": [], "ours_down": [], "kernel_kernel": []}
    split: dict[str, list[list[int]]] = {"ours_up": [], "ours_down": []}
    for run in range(repeat):
        samples["kernel_kernel"].append(kernel_to_kernel(specs, size, ipv6, run))
        for direction in ("up", "down"):
            goodput, per_subflow = ours(direction, specs, size, ipv6, run)
            samples[f"ours_{direction}"].append(goodput)
            split[f"ours_{direction}"].append(per_subflow)
    median = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "paths": paths, "rate_mbit": rate or None, "delay_ms": delay, "size": size,
        "repeat": repeat, "family": "ipv6" if ipv6 else "ipv4", "samples_mbit": samples,
        "median_mbit": median, "bytes_per_subflow": split,
        "ratio_up": median["ours_up"] / median["kernel_kernel"],
        "ratio_down": median["ours_down"] / median["kernel_kernel"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_mptcp",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50.0, help="Mbit/s per path, 0: none")
    parser.add_argument("--delay", type=float, default=5.0, help="one-way ms per path")
    parser.add_argument("--size", type=int, default=16 * MiB)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ipv6", action="store_true")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    result = measure(args.paths, args.rate, args.delay, args.size, args.repeat, args.ipv6)
    link = f"{args.rate:g} Mbit/s" if args.rate else "unlimited"
    print_goodput_table(f"MPTCP goodput, {args.paths} paths of {link} and {args.delay:g} ms, "
                        f"{args.size / MiB:g} MiB, {result['family']}, median of {args.repeat}",
                        result, args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
