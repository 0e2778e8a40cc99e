"""What every side-by-side benchmark prints: our goodput next to kernel-to-kernel through
the same lab, with the ratio, and the same result as JSON when asked."""

from __future__ import annotations

import json
from typing import Any

ROWS = (("kernel -> kernel", "kernel_kernel", None),
        ("ours -> kernel (up)", "ours_up", "ratio_up"),
        ("kernel -> ours (down)", "ours_down", "ratio_down"))


def print_goodput_table(title: str, result: dict[str, Any], json_path: str | None) -> None:
    print(title)
    print(f"{'':24}{'Mbit/s':>10}{'ratio':>8}   samples")
    for label, key, ratio_key in ROWS:
        samples = ", ".join(f"{value:.1f}" for value in result["samples_mbit"][key])
        shown = "" if ratio_key is None else f"{result[ratio_key]:.3f}"
        print(f"{label:24}{result['median_mbit'][key]:>10.1f}{shown:>8}   {samples}")
    if json_path:
        with open(json_path, "w") as stream:
            json.dump(result, stream, indent=2)
