"""The full interop sweep of our TCP against Linux: direction x family x size x loss.

    .venv/bin/python -m bench.interop_matrix [--sizes 1,4,16,64] [--loss 0,1] [--json FILE]

Every cell is one `mptcp-ref lab run --peer kernel --proto tcp` in a fresh lab (one
path, the loss applied in both directions by the link model). A cell passes when the
receiver's SHA-256 equals the sender's and both ends closed in order. The test suite runs
a subset (tests/test_tcp_kernel_interop.py); this is the whole matrix, printed as a table.
Exit status 1 when any cell failed.
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


def sweep(sizes: list[int], losses: list[float]) -> list[dict[str, Any]]:
    cells = []
    for direction in ("up", "down"):
        for ipv6 in (False, True):
            for size in sizes:
                for loss in losses:
                    started = time.monotonic()
                    report = run_lab(LabRunSpec(
                        peer="kernel", direction=direction, ipv6=ipv6, size=size,
                        paths=[PathSpec(loss=loss)], seed=size, timeout=60 + 3 * size / MiB))
                    cell = {
                        "direction": direction, "family": "ipv6" if ipv6 else "ipv4",
                        "size": size, "loss_pct": loss * 100, "ok": report["ok"],
                        "sha256_match": report["sha256_match"], "seconds": report["seconds"],
                        "goodput_mbit": report["goodput_mbit"], "reason": report["reason"],
                        "wall_seconds": time.monotonic() - started,
                        "retransmitted": report["subflows"][0]["retransmitted_segments"]
                        if report["subflows"] else None,
                        "kernel_retransmitted": report["kernel_mib_delta"].get(
                            "TcpRetransSegs", 0),
                    }
                    cells.append(cell)
                    _print_row(cell)
    return cells


def _print_row(cell: dict[str, Any]) -> None:
    result = "ok" if cell["ok"] and cell["sha256_match"] else f"FAIL ({cell['reason']})"
    seconds = "-" if cell["seconds"] is None else f"{cell['seconds']:.2f}"
    goodput = "-" if cell["goodput_mbit"] is None else f"{cell['goodput_mbit']:.1f}"
    print(f"{cell['direction']:>5} {cell['family']:>5} {cell['size'] / MiB:>5g} MiB "
          f"{cell['loss_pct']:>4g}% {result:>6} {seconds:>7} s {goodput:>7} Mbit/s "
          f"rtx ours {cell['retransmitted']} kernel {cell['kernel_retransmitted']}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.interop_matrix",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,4,16,64", help="MiB, comma separated")
    parser.add_argument("--loss", default="0,1", help="percent, comma separated")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    sizes = [int(float(value) * MiB) for value in args.sizes.split(",")]
    losses = [float(value) / 100 for value in args.loss.split(",")]
    print("  dir   fam   size  loss result seconds    goodput")
    cells = sweep(sizes, losses)
    failed = [cell for cell in cells if not (cell["ok"] and cell["sha256_match"])]
    print(f"{len(cells) - len(failed)}/{len(cells)} cells passed")
    if args.json_path:
        with open(args.json_path, "w") as stream:
            json.dump(cells, stream, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
