"""`mptcp-ref serve` / `mptcp-ref connect` as subprocesses, each inside a fresh namespace
(`ip netns exec`): the endpoint makes its TUN devices there, and the namespace's Linux
kernel is the peer (IPPROTO_MPTCP sockets this test opens in the namespace).

- connect --mode source --checksums: the kernel server's SHA-256 equals the summary's,
  both of our addresses carried data, the kernel accepted our join and every DSS
  checksum;
- serve --mode echo (with --pcap and --events) to a kernel client, and --mode file to
  `mptcpize run curl`;
- SIGTERM: exit 130 and the TUN devices are gone;
- bad arguments (non-lab address, missing file, bad mode, ...) exit 2 with a message
  and create nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from impl.endpoint import EndpointOptions, EndpointUsageError
from impl.lab.kernel import counter_delta, read_counters
from impl.lab.netns import NetworkNamespace
from impl.lab.topology import set_mptcp_limits

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parent.parent
IPPROTO_MPTCP = 262
ADDRESSES = ["--address", "198.18.1.2/24", "--address", "198.18.2.2/24"]
TIMEOUT = 30.0


@pytest.fixture
def namespace() -> Iterator[NetworkNamespace]:
    with NetworkNamespace() as created:
        # Linux accepts no ADD_ADDR by default (add_addr_accepted 0): let it join ours.
        set_mptcp_limits(created, subflows=4, add_addr_accepted=4)
        yield created


def cli(namespace: NetworkNamespace, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(namespace.command(sys.executable, "-m", "impl.cli", *args),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_line(process: subprocess.Popen[str], text: str) -> str:
    """Read the child's stdout until a line contains `text`."""
    assert process.stdout is not None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            if text in line:
                return line
            if not line:
                break
    process.kill()
    raise AssertionError(f"no {text!r} from the endpoint: {process.communicate()[1][-2000:]}")


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out, err


def kernel_socket(namespace: NetworkNamespace) -> socket.socket:
    with namespace.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    sock.settimeout(TIMEOUT)
    return sock


def read_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while data := sock.recv(1 << 16):
        out += data
    return bytes(out)


def tun_devices(namespace: NetworkNamespace) -> list[str]:
    return [name for name in namespace.links() if name.startswith("mptcpref")]


def test_connect_sends_to_a_kernel_server(namespace: NetworkNamespace, tmp_path: Path) -> None:
    listener = kernel_socket(namespace)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 7000))  # the kernel's 198.18.i.1 appear with our TUNs
    listener.listen()
    got: dict[str, Any] = {}

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            conn.settimeout(TIMEOUT)
            data = read_all(conn)
            got["sha256"], got["bytes"] = hashlib.sha256(data).hexdigest(), len(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    before = read_counters(namespace.name)
    report = tmp_path / "connect.json"
    code, out, err = finish(cli(namespace, "connect", "198.18.1.1", "7000", *ADDRESSES,
                                "--mode", "source", "--size", str(2 << 20), "--timeout", "20",
                                "--checksums", "--json", str(report), "--quiet"))
    thread.join(TIMEOUT)
    assert code == 0, err
    summary = json.loads(report.read_text())
    assert summary["ok"] and summary["command"] == "connect"
    [connection] = summary["connections"]
    assert connection["bytes_sent"] == got["bytes"] == 2 << 20
    assert connection["sha256_sent"] == got["sha256"]
    assert connection["fallback"] is False
    assert connection["checksums"] is True  # we asked (MP_CAPABLE A flag, 3.1)
    subflows = connection["subflows"]
    assert sorted(s["local_address"] for s in subflows) == ["198.18.1.2", "198.18.2.2"]
    assert all(s["bytes_sent"] > 0 for s in subflows), subflows
    delta = counter_delta(before, read_counters(namespace.name))
    assert delta.get("MPTcpExtMPJoinAckRx") == 1, delta
    assert not delta.get("MPTcpExtDataCsumErr"), delta  # every DSS checksum was right
    assert "sent 2,097,152 B" in out
    assert tun_devices(namespace) == []  # gone with the endpoint


def test_serve_echo_with_pcap_and_event_log(namespace: NetworkNamespace,
                                            tmp_path: Path) -> None:
    report, pcap, events = tmp_path / "serve.json", tmp_path / "s.pcap", tmp_path / "s.jsonl"
    server = cli(namespace, "serve", *ADDRESSES, "--port", "7001", "--mode", "echo",
                 "--timeout", "20", "--json", str(report), "--pcap", str(pcap),
                 "--events", str(events), "--quiet")
    wait_for_line(server, "serving echo on port 7001")
    assert sorted(tun_devices(namespace)) == ["mptcpref0", "mptcpref1"]
    payload = os.urandom(1 << 20)
    with kernel_socket(namespace) as client:
        client.connect(("198.18.1.2", 7001))
        reader = threading.Thread(target=lambda: payload_back.append(read_all(client)))
        payload_back: list[bytes] = []
        reader.start()
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        reader.join(TIMEOUT)
    code, _out, err = finish(server)
    assert code == 0, err
    assert payload_back == [payload]
    [connection] = json.loads(report.read_text())["connections"]
    digest = hashlib.sha256(payload).hexdigest()
    assert connection["sha256_received"] == connection["sha256_sent"] == digest
    assert connection["peer"].startswith("198.18.1.1:")
    assert connection["counters"]["MPCapableSYNRX"] == 1
    assert len(connection["subflows"]) == 2  # the kernel joined the address we announced
    assert pcap.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    kinds = {json.loads(line)["type"] for line in events.read_text().splitlines()}
    assert {"api:connection", "api:done", "tcp:state"} <= kinds


def test_serve_file_to_curl_under_mptcpize(namespace: NetworkNamespace,
                                           tmp_path: Path) -> None:
    # DESIGN.md's user story: an unmodified program (curl) over the kernel's MPTCP
    # (`mptcpize run`) downloads from our endpoint; HTTP/0.9 takes the raw bytes.
    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(1_500_000))
    report, downloaded = tmp_path / "serve.json", tmp_path / "downloaded.bin"
    server = cli(namespace, "serve", *ADDRESSES, "--port", "7002", "--mode", "file",
                 "--file", str(source), "--timeout", "20", "--json", str(report), "--quiet")
    wait_for_line(server, "serving file")
    curl = namespace.run("mptcpize", "run", "curl", "-sS", "--http0.9", "--max-time", "20",
                         "-o", str(downloaded), "http://198.18.1.2:7002/", timeout=TIMEOUT)
    code, _out, err = finish(server)
    assert curl.returncode == 0 and code == 0, (curl.stderr, err)
    assert downloaded.read_bytes() == source.read_bytes()
    [connection] = json.loads(report.read_text())["connections"]
    assert connection["sha256_sent"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert connection["fallback"] is False and connection["counters"]["MPCapableSYNRX"] == 1
    assert len(connection["subflows"]) == 2  # curl's kernel joined our second address
    assert all(s["bytes_sent"] > 0 for s in connection["subflows"]), connection["subflows"]


def test_sigterm_removes_the_tun_devices(namespace: NetworkNamespace, tmp_path: Path) -> None:
    report = tmp_path / "serve.json"
    server = cli(namespace, "serve", *ADDRESSES, "--count", "0", "--json", str(report),
                 "--quiet")
    wait_for_line(server, "serving sink")
    assert len(tun_devices(namespace)) == 2
    server.send_signal(signal.SIGTERM)
    code, _out, err = finish(server)
    assert code == 130, err
    assert "interrupted" in err
    assert tun_devices(namespace) == []
    assert json.loads(report.read_text())["error"] == "interrupted"


BAD_ARGUMENTS = [
    (["serve", "--address", "10.0.0.2/24"], "outside the lab ranges"),
    (["serve", "--address", "198.18.1.2/24", "--mode", "file", "--file", "/no/such/file"],
     "no such file"),
    (["serve", "--address", "198.18.1.2/24", "--mode", "fountain"], "--mode 'fountain'"),
    (["connect", "8.8.8.8", "80", "--address", "198.18.1.2/24"], "outside the lab ranges"),
]


def test_bad_arguments_exit_2_with_a_message(namespace: NetworkNamespace) -> None:
    # Inside a namespace, so that a check that failed to fire would not touch the host.
    children = [cli(namespace, *args) for args, _message in BAD_ARGUMENTS]  # in parallel
    for child, (args, message) in zip(children, BAD_ARGUMENTS, strict=True):
        code, out, err = finish(child)
        assert code == 2, (args, out, err)
        assert message in err, (args, err)
        assert "Traceback" not in err
    assert tun_devices(namespace) == []


def test_missing_address_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "impl.cli", "serve"], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 2 and "--address" in result.stderr


def options(**changes: Any) -> EndpointOptions:
    base: dict[str, Any] = {"command": "serve", "addresses": ["198.18.1.2/24"], "port": 80,
                            "mode": "sink"}
    return EndpointOptions(**{**base, **changes})


@pytest.mark.parametrize(("changes", "message"), [
    ({"addresses": []}, "at least one --address"),
    ({"addresses": ["198.18.1.2/24", "198.18.1.3/24"]}, "overlap"),
    ({"addresses": ["198.18.1.0/24"]}, "not a host address"),
    ({"addresses": ["198.18.1.2/40"]}, "not an address"),
    ({"port": 70000}, "port 70000"),
    ({"command": "connect"}, "needs the peer"),
    ({"command": "connect", "host": "198.18.1.1", "addresses": ["fd00::2/64"]},
     "no --address of the family"),
    ({"mode": "file"}, "needs --file"),
    ({"file": Path("/etc/hostname")}, "--file goes with --mode file"),
    ({"mode": "echo", "output": Path("/tmp/x")}, "--output goes with --mode sink"),
    ({"size": -1}, "--size"),
    ({"timeout": 0.0}, "--timeout"),
    ({"max_subflows": 9}, "--max-subflows"),
    ({"json_path": Path("/proc/no-such-dir/x.json")}, "cannot write"),
], ids=lambda value: str(value)[:40])
def test_options_are_checked_before_anything_is_made(changes: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(EndpointUsageError, match=message.replace("-", "\\-")):
        options(**changes).validate()
