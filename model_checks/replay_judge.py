"""The verdict on one replay run: our endpoint's capture judged by the spec monitor.

A run is conformant when the capture shows at least one connection of our endpoint and
the monitor (`model_checks.conformance.judge`) accepts every one of them from our side;
its fired rules are those every accepted way through the trace fired.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_checks.conformance.capture import CaptureError
from model_checks.conformance.judge import monitor_capture

__all__ = ["judge_run"]


def judge_run(result: Any, pcap: Path, endpoint: str) -> None:
    """Fill `result` (a `replay.RunResult`): conformant, verdicts, divergence, fired."""
    try:
        report = monitor_capture(pcap, endpoint, taken_at_endpoint=True)
    except (CaptureError, ValueError) as error:
        result.conformant = False
        result.divergence = f"capture not judged: {error}"
        return
    judged = [connection for connection in report.connections
              if connection.verdict != "not judged"]
    result.verdicts = [f"{c.description}: {c.verdict}" for c in report.connections]
    for connection in judged:
        result.fired |= set(connection.fired)
        if connection.divergence is not None and not result.divergence:
            divergence = connection.divergence
            result.divergence = (f"packet {divergence.packet}: {divergence.event}: "
                                 f"{divergence.message}")
    if report.unparseable:
        result.divergence = result.divergence or f"unparseable packets: {report.unparseable}"
    result.conformant = bool(judged) and all(c.verdict == "accepted" for c in judged) \
        and not report.unparseable
    if not judged:
        result.divergence = result.divergence or "no connection of our endpoint in the capture"
