"""The full interop sweep of our MPTCP against Linux: paths x direction x family x DSS
checksums x size.

    .venv/bin/python -m bench.mptcp_interop_matrix [--paths 2,3,4] [--sizes 1,16,256]
        [--checksums off,ours,kernel] [--json FILE]

Every cell is one `mptcp-ref lab run --peer kernel --proto mptcp` in a fresh lab, our
endpoint connecting from one address per path (MP_CAPABLE, then an MP_JOIN from each other
address). Checksums: `off` (nobody asks), `ours` (our endpoint sets the A flag), `kernel`
(`net.mptcp.checksum_enabled=1` on the kernel host: the kernel asks). A cell passes when
the receiver's SHA-256 equals the sender's, every path carried data, and the kernel's MIB
shows one accepted join per extra path and no HMAC failure. The test suite runs a few
small cells (tests/test_mptcp_kernel_interop.py); this is the whole matrix, printed as a
table. Exit status 1 when any cell failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from impl.lab.run import LabRunSpec, run_lab
from impl.lab.topology import PathSpec

MiB = 1 << 20
CHECKSUM_MODES = ("off", "ours", "kernel")


def run_cell(paths: int, direction: str, ipv6: bool, checksums: str, size: int,
             seed: int = 0) -> dict[str, Any]:
    started = time.monotonic()
    sysctls = {"net.mptcp.checksum_enabled": 1} if checksums == "kernel" else {}
    report = run_lab(LabRunSpec(
        peer="kernel", proto="mptcp", direction=direction, ipv6=ipv6, size=size,
        paths=[PathSpec() for _ in range(paths)], seed=seed or size + paths,
        checksums=checksums == "ours", sysctls=sysctls, timeout=60 + 2 * size / MiB))
    mib = report.get("kernel_mib_delta", {})
    subflows = report.get("subflows", [])
    moved = [subflow["bytes_sent"] if direction == "up" else subflow["bytes_received"]
             for subflow in subflows]
    joins = mib.get("MPTcpExtMPJoinAckRx", 0)  # our endpoint opens every join
    hmac_failures = sum(value for key, value in mib.items() if "HMacFailure" in key)
    cell = {
        "paths": paths, "direction": direction, "family": "ipv6" if ipv6 else "ipv4",
        "checksums": checksums, "size": size, "ok": bool(report.get("ok")),
        "sha256_match": bool(report.get("sha256_match")), "seconds": report.get("seconds"),
        "goodput_mbit": report.get("goodput_mbit"), "reason": report.get("reason"),
        "subflows": len(subflows), "paths_with_data": sum(1 for value in moved if value),
        "kernel_joins": joins, "kernel_hmac_failures": hmac_failures,
        "kernel_csum_errors": mib.get("MPTcpExtDataCsumErr", 0),
        "wall_seconds": time.monotonic() - started,
    }
    cell["passed"] = (cell["ok"] and cell["sha256_match"] and
                      cell["paths_with_data"] == paths and joins == paths - 1 and
                      hmac_failures == 0 and cell["kernel_csum_errors"] == 0)
    return cell


def _print_row(cell: dict[str, Any]) -> None:
    result = "ok" if cell["passed"] else f"FAIL ({cell['reason'] or 'see JSON'})"
    seconds = "-" if cell["seconds"] is None else f"{cell['seconds']:.2f}"
    goodput = "-" if cell["goodput_mbit"] is None else f"{cell['goodput_mbit']:.1f}"
    print(f"{cell['paths']:>5} {cell['direction']:>5} {cell['family']:>5} "
          f"{cell['checksums']:>6} {cell['size'] / MiB:>5g} MiB {result:>6} {seconds:>7} s "
          f"{goodput:>7} Mbit/s  paths with data {cell['paths_with_data']}/{cell['paths']}"
          f"  kernel joins {cell['kernel_joins']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mptcp_interop_matrix",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", default="2,3,4", help="comma separated, 2..8")
    parser.add_argument("--sizes", default="1,16,256", help="MiB, comma separated")
    parser.add_argument("--checksums", default="off,ours,kernel",
                        help=f"comma separated: {', '.join(CHECKSUM_MODES)}")
    parser.add_argument("--directions", default="up,down")
    parser.add_argument("--families", default="ipv4,ipv6")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    try:
        paths = [int(value) for value in args.paths.split(",")]
        sizes = [int(float(value) * MiB) for value in args.sizes.split(",")]
    except ValueError as error:
        parser.error(f"bad number: {error}")
    checksums = args.checksums.split(",")
    directions = args.directions.split(",")
    families = args.families.split(",")
    if not all(2 <= count <= 8 for count in paths):
        parser.error("--paths: each between 2 and 8")
    if not set(checksums) <= set(CHECKSUM_MODES):
        parser.error(f"--checksums: each one of {', '.join(CHECKSUM_MODES)}")
    if not set(directions) <= {"up", "down"} or not set(families) <= {"ipv4", "ipv6"}:
        parser.error("--directions: up,down; --families: ipv4,ipv6")
    print("paths   dir   fam   csum   size result seconds    goodput")
    cells = []
    for count in paths:
        for direction in directions:
            for family in families:
                for mode in checksums:
                    for size in sizes:
                        cell = run_cell(count, direction, family == "ipv6", mode, size)
                        cells.append(cell)
                        _print_row(cell)
    failed = [cell for cell in cells if not cell["passed"]]
    print(f"{len(cells) - len(failed)}/{len(cells)} cells passed")
    if args.json_path:
        with open(args.json_path, "w") as stream:
            json.dump(cells, stream, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
