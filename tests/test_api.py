"""The socket-like API (`impl.api`) against the Linux kernel's MPTCP, each test in a fresh
namespace: our stack's TUN devices `mptcpref<N>` live there, the kernel side of each
device has 198.18.i.1/24 and our endpoint 198.18.i.2 (`impl.lab.interfaces`).

- our blocking client -> kernel IPPROTO_MPTCP server over 2 paths (we join from our
  second address, RFC 8684 3.2), SHA-256 equal, the kernel's MPJoinAckRx rises;
- kernel client -> our blocking server (accept, recv, echo); the kernel joins the
  address we announced (ADD_ADDR, 3.4.1);
- an unmodified program under `mptcpize run` -> our server: MPTCP, not plain TCP;
- asyncio streams both ways; timeouts raise TimeoutError and leave everything usable;
  a refused connect raises ConnectionRefusedError, MP_FASTCLOSE ConnectionResetError;
- a plain TCP server (fallback, 3.7), IPv6, and the full mesh once the kernel announces
  a second address.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from impl.api import (
    MPTCP_FULL_INFO,
    MPTCP_INFO,
    SHUT_WR,
    SOL_MPTCP,
    MptcpStack,
    open_connection,
    start_server,
)
from impl.lab.kernel import counter_delta, read_counters
from impl.lab.mptcp_run import FLAG_SIGNAL
from impl.lab.netns import NetworkNamespace, list_namespaces
from impl.lab.topology import add_mptcp_endpoint, set_mptcp_limits

pytestmark = pytest.mark.netns

IPPROTO_MPTCP = 262
OURS = ["198.18.1.2/24", "198.18.2.2/24"]
KERNEL = "198.18.1.1"
TIMEOUT = 20.0


@pytest.fixture
def lab() -> Iterator[tuple[NetworkNamespace, MptcpStack]]:
    with NetworkNamespace() as namespace:
        set_mptcp_limits(namespace, subflows=4, add_addr_accepted=4)
        stack = MptcpStack.create(OURS, netns=namespace.name)
        try:
            yield namespace, stack
        finally:
            stack.close()
        assert not stack._thread.is_alive()
    assert namespace.name not in list_namespaces()


def kernel_socket(namespace: NetworkNamespace) -> socket.socket:
    with namespace.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    sock.settimeout(TIMEOUT)
    return sock


def in_thread(function: Callable[[], Any]) -> Callable[[], Any]:
    """Run `function` in a thread; the returned callable joins it and returns its
    result (or raises its exception)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> Any:
        thread.join(TIMEOUT + 10)
        assert not thread.is_alive(), "the kernel side hung"
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return join


def kernel_digest_server(namespace: NetworkNamespace, port: int) -> Callable[[], Any]:
    """A kernel MPTCP server: reads to EOF, answers the SHA-256 of what it read."""
    listener = kernel_socket(namespace)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((KERNEL, port))
    listener.listen()

    def serve() -> int:
        with listener, listener.accept()[0] as conn:
            conn.settimeout(TIMEOUT)
            digest, count = hashlib.sha256(), 0
            while data := conn.recv(1 << 16):
                digest.update(data)
                count += len(data)
            conn.sendall(digest.hexdigest().encode())
            return count

    return in_thread(serve)


def read_all(sock: Any) -> bytes:
    out = bytearray()
    while data := sock.recv(1 << 16):
        out += data
    return bytes(out)


def test_blocking_client_sends_to_a_kernel_server_over_two_paths(lab) -> None:
    namespace, stack = lab
    done = kernel_digest_server(namespace, 5000)
    before = read_counters(namespace.name)
    payload = os.urandom(2 << 20)
    with stack.socket() as sock:
        sock.settimeout(TIMEOUT)
        sock.connect((KERNEL, 5000))
        sock.sendall(payload)
        sock.shutdown(SHUT_WR)
        assert read_all(sock).decode() == hashlib.sha256(payload).hexdigest()
        subflows = sock.subflows()
        info = sock.mptcp_info()
    assert done() == len(payload)
    assert info["fallback"] is False and info["bytes_acked"] == len(payload)
    assert sorted(s["local_address"] for s in subflows) == ["198.18.1.2", "198.18.2.2"]
    assert all(s["bytes_sent"] > 0 for s in subflows), subflows  # both paths carried data
    assert sum(s["bytes_sent"] for s in subflows) >= len(payload)
    delta = counter_delta(before, read_counters(namespace.name))
    assert delta.get("MPTcpExtMPCapableSYNRX") == 1, delta
    assert delta.get("MPTcpExtMPJoinAckRx") == 1, delta  # our join from 198.18.2.2
    assert not delta.get("MPTcpExtMPJoinAckHMacFailure"), delta


def test_kernel_client_to_our_blocking_server_echo(lab) -> None:
    namespace, stack = lab
    listener = stack.socket()
    listener.bind(("", 5001))
    listener.listen()
    listener.settimeout(TIMEOUT)
    payload = os.urandom(1 << 20)

    def kernel_client() -> bytes:
        with kernel_socket(namespace) as client:
            client.connect(("198.18.1.2", 5001))
            reader = in_thread(lambda: read_all(client))
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            return reader()

    before = read_counters(namespace.name)
    echoed = in_thread(kernel_client)
    conn, peer = listener.accept()
    assert peer[0] == KERNEL
    with conn:
        conn.settimeout(TIMEOUT)
        while data := conn.recv(1 << 16):
            conn.sendall(data)
        info = conn.mptcp_info()
        subflows = conn.subflows()
    assert echoed() == payload
    listener.close()
    assert info["fallback"] is False and info["bytes_received"] == len(payload)
    assert info["counters"]["MPCapableSYNRX"] == 1
    assert info["counters"]["AddAddrTx"] >= 1  # we announced 198.18.2.2 (3.4.1)
    delta = counter_delta(before, read_counters(namespace.name))
    assert delta.get("MPTcpExtAddAddr") == 1, delta  # the kernel took the announcement
    assert delta.get("MPTcpExtMPJoinSynAckRx") == 1, delta  # ... and joined it
    assert sorted(s["local_address"] for s in subflows) == ["198.18.1.2", "198.18.2.2"]


PLAIN_CLIENT = """
import socket, sys
s = socket.create_connection(("198.18.1.2", 5002), timeout=15)
s.sendall(b"hello from an unmodified program")
s.shutdown(socket.SHUT_WR)
reply = b""
while data := s.recv(4096):
    reply += data
sys.stdout.write(reply.decode())
"""


def test_unmodified_program_under_mptcpize_talks_to_our_server(lab) -> None:
    namespace, stack = lab
    listener = stack.socket()
    listener.bind(("198.18.1.2", 5002))
    listener.listen()
    listener.settimeout(TIMEOUT)
    before = read_counters(namespace.name)
    child = subprocess.Popen(namespace.command("mptcpize", "run", sys.executable, "-c",
                                               PLAIN_CLIENT),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        conn, _peer = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            request = read_all(conn)
            conn.sendall(request.upper())
            info = conn.mptcp_info()
        out, err = child.communicate(timeout=TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert out == "HELLO FROM AN UNMODIFIED PROGRAM"
    # The program's plain TCP socket became MPTCP: MP_CAPABLE on its SYN (3.1).
    assert info["fallback"] is False and info["counters"]["MPCapableSYNRX"] == 1
    delta = counter_delta(before, read_counters(namespace.name))
    assert delta.get("MPTcpExtMPCapableSYNTX") == 1, delta


def test_asyncio_streams_echo_both_ways(lab) -> None:
    namespace, stack = lab
    done = kernel_digest_server(namespace, 5003)
    lines = [f"line {i}\n".encode() for i in range(200)]

    async def echo(reader: asyncio.StreamReader, writer: Any) -> None:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    def kernel_line_client(port: int) -> bytes:
        with kernel_socket(namespace) as client:
            client.connect(("198.18.1.2", port))
            client.sendall(b"".join(lines))
            client.shutdown(socket.SHUT_WR)
            return read_all(client)

    async def main() -> tuple[bytes, str, list[dict]]:
        async with await start_server(stack, echo, port=5004) as server:
            assert server.sockets[0].getsockname()[1] == 5004
            loop = asyncio.get_running_loop()
            echoed = await loop.run_in_executor(None, kernel_line_client, 5004)
        reader, writer = await open_connection(stack, KERNEL, 5003, timeout=TIMEOUT)
        for line in lines:
            writer.write(line)
        await writer.drain()
        writer.write_eof()
        digest = (await asyncio.wait_for(reader.read(), TIMEOUT)).decode()
        subflows = writer.get_extra_info("subflows")
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), TIMEOUT)
        return echoed, digest, subflows

    echoed, digest, subflows = asyncio.run(main())
    assert echoed == b"".join(lines).upper()
    assert digest == hashlib.sha256(b"".join(lines)).hexdigest()
    assert done() == len(b"".join(lines))
    assert len(subflows) == 2


def test_timeouts_raise_and_leave_the_stack_usable(lab) -> None:
    namespace, stack = lab
    listener = stack.socket()
    listener.bind(("", 5005))
    listener.listen()
    listener.settimeout(0.2)
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody connects
    with stack.socket() as lost:
        lost.settimeout(0.5)
        with pytest.raises(TimeoutError):
            lost.connect(("198.18.1.77", 5005))  # the kernel drops it: no such host
    with stack.socket() as refused, pytest.raises(ConnectionRefusedError):
        refused.settimeout(TIMEOUT)
        refused.connect((KERNEL, 5999))  # the kernel answers RST: no listener
    done = kernel_digest_server(namespace, 5006)
    with stack.socket() as sock:
        sock.settimeout(TIMEOUT)
        sock.connect((KERNEL, 5006))
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(10)  # the server waits for our EOF before it says anything
        sock.settimeout(TIMEOUT)
        sock.sendall(b"still usable")
        sock.shutdown(SHUT_WR)
        assert read_all(sock).decode() == hashlib.sha256(b"still usable").hexdigest()
        with pytest.raises(BrokenPipeError):
            sock.send(b"after shutdown")
    assert done() == len(b"still usable")
    listener.settimeout(None)
    listener.close()


def test_plain_tcp_server_makes_the_connection_fall_back(lab) -> None:
    namespace, stack = lab
    with namespace.entered():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # plain TCP
    listener.settimeout(TIMEOUT)
    listener.bind((KERNEL, 5007))
    listener.listen()

    def serve() -> bytes:
        with listener, listener.accept()[0] as conn:
            conn.settimeout(TIMEOUT)
            data = read_all(conn)
            conn.sendall(data[::-1])
            return data

    done = in_thread(serve)
    with stack.socket() as sock:
        sock.settimeout(TIMEOUT)
        sock.connect((KERNEL, 5007))
        sock.sendall(b"fallback to TCP")
        sock.shutdown(SHUT_WR)
        assert read_all(sock) == b"PCT ot kcabllaf"
        info = sock.getsockopt(SOL_MPTCP, MPTCP_INFO)
        subflows = sock.getsockopt(SOL_MPTCP, MPTCP_FULL_INFO)
    assert done() == b"fallback to TCP"
    # 3.7: no MP_CAPABLE on the SYN/ACK: plain TCP on one subflow, no joins.
    assert info["fallback"] is True
    assert info["counters"]["MPCapableFallbackSYNACK"] == 1
    assert len(subflows) == 1


def test_peer_abort_raises_connection_reset(lab) -> None:
    namespace, stack = lab
    listener = kernel_socket(namespace)
    listener.bind((KERNEL, 5008))
    listener.listen()

    def serve_and_abort() -> None:
        with listener:
            conn, _peer = listener.accept()
            conn.recv(5)
            # SO_LINGER 0: close() aborts; Linux MPTCP sends MP_FASTCLOSE (3.5).
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    done = in_thread(serve_and_abort)
    with stack.socket() as sock:
        sock.settimeout(TIMEOUT)
        sock.connect((KERNEL, 5008))
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
        with pytest.raises(ConnectionResetError):
            sock.send(b"more")
    done()


def test_ipv6_client_to_a_kernel_server() -> None:
    with NetworkNamespace() as namespace:
        with MptcpStack.create(["fd00:0:0:1::2/64"], netns=namespace.name) as stack:
            with namespace.entered():
                listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, IPPROTO_MPTCP)
            listener.settimeout(TIMEOUT)
            listener.bind(("fd00:0:0:1::1", 5009))
            listener.listen()

            def serve() -> bytes:
                with listener, listener.accept()[0] as conn:
                    conn.settimeout(TIMEOUT)
                    return read_all(conn)

            done = in_thread(serve)
            payload = os.urandom(300_000)
            with stack.socket() as sock:
                sock.settimeout(TIMEOUT)
                sock.connect(("fd00:0:0:1::1", 5009))
                assert sock.getsockname()[0] == "fd00:0:0:1::2"
                sock.sendall(payload)
                sock.shutdown(SHUT_WR)
                sock.wait_sent()
                assert sock.mptcp_info()["fallback"] is False
            assert done() == payload


def test_full_mesh_with_an_address_the_kernel_announces(lab) -> None:
    namespace, stack = lab
    # The kernel announces 198.18.2.1 (a `signal` endpoint, ADD_ADDR 3.4.1); our client
    # then joins from both of its addresses to both of the kernel's: 4 subflows.
    add_mptcp_endpoint(namespace, "198.18.2.1", FLAG_SIGNAL)
    listener = kernel_socket(namespace)
    listener.bind(("0.0.0.0", 5010))  # Linux takes joins to an announced address only here
    listener.listen()

    def serve() -> int:
        with listener, listener.accept()[0] as conn:
            conn.settimeout(TIMEOUT)
            count = len(read_all(conn))
            conn.sendall(b"done")
            return count

    done = in_thread(serve)
    before = read_counters(namespace.name)
    payload = os.urandom(1 << 20)
    with stack.socket() as sock:
        sock.settimeout(TIMEOUT)
        sock.connect((KERNEL, 5010))
        sock.sendall(payload)
        sock.shutdown(SHUT_WR)
        assert read_all(sock) == b"done"
        pairs = sorted((s["local_address"], s["remote_address"]) for s in sock.subflows())
        info = sock.mptcp_info()
    assert done() == len(payload)
    assert pairs == [("198.18.1.2", "198.18.1.1"), ("198.18.1.2", "198.18.2.1"),
                     ("198.18.2.2", "198.18.1.1"), ("198.18.2.2", "198.18.2.1")]
    assert info["counters"]["AddAddr"] >= 1 and info["counters"]["MPJoinSynAckRx"] == 3
    delta = counter_delta(before, read_counters(namespace.name))
    assert delta.get("MPTcpExtMPJoinAckRx") == 3, delta
