"""tshark as an independent judge, shared by the tests: run TShark on a pcap, flatten its
JSON per frame, and list what Wireshark's dissector objects to.

- `frames(path, prefs)`: every frame as {field name: [values in order]}.
- `problems(frames)`: malformed packets and expert infos of error severity.
- `mptcp_problems(frames)`: with the MPTCP analysis on (`MPTCP_ANALYSIS_PREFS`:
  mptcp.analyze_mptcp, analyze_mappings, relative_sequence_numbers,
  intersubflows_retransmission, as TShark 4.0 `-G defaultprefs` lists them), the MPTCP
  expert infos: handshake key/algorithm complaints, data packets without a mapping.
- `judge_mptcp_capture(path)`: both lists for one capture, with the frames.

Used by tests/test_tshark_judge.py (every option variant of our codec) and
tests/test_mptcp_kernel_scenarios.py (captures of live runs against Linux).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

EXPERT_ERROR = 0x00800000  # PI_ERROR in Wireshark's expert severities
MPTCP_ANALYSIS_PREFS = [
    "-o", "mptcp.analyze_mptcp:TRUE",
    "-o", "mptcp.analyze_mappings:TRUE",
    "-o", "mptcp.relative_sequence_numbers:TRUE",
    "-o", "mptcp.intersubflows_retransmission:TRUE",
    "-o", "tcp.analyze_sequence_numbers:TRUE",
    "-o", "tcp.check_checksum:TRUE",
    "-o", "ip.check_checksum:TRUE",
]
# Wireshark 4.0's MPTCP expert infos (packet-tcp.c, mptcp_ei; all of warning severity):
# wrong on any frame, and a data packet whose bytes no DSS mapping covers.
MPTCP_HANDSHAKE_EXPERTS = ("mptcp.connection.echoed_key_mismatch",
                           "mptcp.connection.missing_algorithm",
                           "mptcp.connection.unsupported_algorithm")
MPTCP_DATA_EXPERTS = ("mptcp.dss.missing_mapping", "mptcp.dss.infinite_mapping")

Fields = dict[str, list[str]]


def tshark_path() -> str:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is not installed; scripts/setup.sh installs it and CI needs it")
    return tshark


def flatten(node, out: Fields) -> Fields:
    """All leaf fields of a tshark JSON tree, each name mapped to its values in order."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict | list):
                if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
                    out.setdefault(key, []).extend(value)
                else:
                    flatten(value, out)
            else:
                out.setdefault(key, []).append(value)
    elif isinstance(node, list):
        for item in node:
            flatten(item, out)
    return out


def frames(path: str | Path, prefs: list[str]) -> list[Fields]:
    """Every frame of `path` as tshark dissects it with `prefs`."""
    result = subprocess.run(
        [tshark_path(), "-r", str(path), "-T", "json", "--no-duplicate-keys", *prefs],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return [flatten(frame["_source"]["layers"], {}) for frame in json.loads(result.stdout)]


def problems(dissected: list[Fields]) -> list[str]:
    """Malformed frames and error-severity expert infos, one line each."""
    found = []
    for number, fields in enumerate(dissected, start=1):
        if "_ws.malformed" in fields:
            found.append(f"frame {number}: malformed")
        severities = [int(s) for s in fields.get("_ws.expert.severity", [])]
        messages = fields.get("_ws.expert.message", [])
        for index, severity in enumerate(severities):
            if severity >= EXPERT_ERROR:
                message = messages[index] if index < len(messages) else "?"
                found.append(f"frame {number}: expert error: {message}")
    return found


def mptcp_problems(dissected: list[Fields]) -> list[str]:
    """MPTCP expert infos of the analysis (`MPTCP_ANALYSIS_PREFS`): a handshake key or
    algorithm complaint on any frame; on data packets, no DSS mapping for the bytes or
    an infinite mapping (fallback, RFC 8684 3.7). Wireshark 4.0 also says "No mapping
    available" on every DATA_ACK-only pure ACK (Linux's too), so those are not counted."""
    found = []
    for number, fields in enumerate(dissected, start=1):
        data = int((fields.get("tcp.len") or ["0"])[0]) > 0
        for name in MPTCP_HANDSHAKE_EXPERTS + (MPTCP_DATA_EXPERTS if data else ()):
            if name in fields:
                found.append(f"frame {number}: {name}")
    return found


@dataclass
class Judgement:
    frames: list[Fields]
    problems: list[str]
    mptcp_problems: list[str]

    def count(self, name: str, value: str | None = None) -> int:
        """Frames having field `name` (with `value`, if given)."""
        return sum(1 for fields in self.frames if name in fields and (
            value is None or value in fields[name]))


def judge_mptcp_capture(path: str | Path) -> Judgement:
    dissected = frames(path, MPTCP_ANALYSIS_PREFS)
    return Judgement(dissected, problems(dissected), mptcp_problems(dissected))
