"""The `mptcp-ref` command line: every planned subcommand is listed, and the ones not built
yet refuse plainly with a non-zero exit instead of pretending to work."""

import subprocess
import sys

import pytest

PLANNED = ["check", "diagrams", "serve", "connect", "lab", "bench", "replay", "monitor"]
NOT_BUILT = [
    ["bench"],
]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "impl.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_every_planned_subcommand() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command in PLANNED:
        assert command in result.stdout, f"{command} missing from --help"


@pytest.mark.parametrize("args", NOT_BUILT, ids=lambda args: " ".join(args))
def test_unbuilt_subcommands_say_so_and_fail(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert "not built yet" in result.stderr


def test_unknown_subcommand_is_a_clear_error() -> None:
    result = run_cli("frobnicate")
    assert result.returncode != 0
    assert "frobnicate" in result.stderr


def test_bad_option_value_is_a_clear_error() -> None:
    result = run_cli("check", "--depth", "not-a-number")
    assert result.returncode != 0
    assert "depth" in result.stderr.lower()


def test_lab_run_output_in_an_unwritable_place_is_refused_before_any_lab() -> None:
    result = run_cli("lab", "run", "--size", "1024", "--direction", "up",
                     "--json", "/proc/no-such-dir/report.json")
    assert result.returncode == 2
    assert "cannot write" in result.stderr
    assert "Traceback" not in result.stderr
