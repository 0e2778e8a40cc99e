"""Every remaining RFC 8684 signal between our endpoint and the Linux kernel's MPTCP, each
in a lab of its own (`KernelPeerLab`, fresh namespaces, two paths), in both directions:

- REMOVE_ADDR (3.4.2): we remove our second address / the kernel deletes a signal
  endpoint (`ip mptcp endpoint delete`);
- MP_PRIO (3.3.8): we `set_backup` / the kernel changes its endpoint to backup and back;
- MP_FASTCLOSE (3.5): our `abort()` / the kernel closes with SO_LINGER {1, 0} or with
  unread data;
- graceful DATA_FIN close (3.3.3, Appendix D), we close first / the kernel does;
- fallback (3.7): our client to a plain TCP kernel listener / a plain TCP kernel client
  to our listener.

Each asserts the kernel's MIB counter deltas (`nstat` names), ours (same names without
the MPTcpExt prefix), the SHA-256 of the data both ways where data flows, and hands the
capture of the run to tshark's MPTCP analysis (`tests/tshark_judge.py`): no malformed
packet, no error-severity expert info, no DSS mapping complaint on a data packet.

The kernel side is a socket in the lab namespace driven from the TUN driver's loop
(`impl.lab.kernel_socket.KernelSocket`), so every step is scripted in order.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from impl.lab.netns import list_namespaces
from impl.lab.run import our_config
from impl.lab.scripted import PORT, ScriptedRun, scripted_lab
from impl.mptcp.connection import MptcpConfig

from . import tshark_judge
from .mptcp_sim import payload, sha256

pytestmark = pytest.mark.netns

SIZE = 96 * 1024
MIDWAY = 5 * SIZE  # a transfer with a subflow removed while it runs
SIGNAL_ID = 2
CONFIG = MptcpConfig(tcp=our_config(False))
CONFIG_V6 = MptcpConfig(tcp=our_config(True))


@contextmanager
def scenario(tmp_path: Path, name: str, *, kernel_mptcp: bool = True,
             signal_endpoint: bool = False, ipv6: bool = False) -> Iterator[ScriptedRun]:
    """A fresh two-path lab (`impl.lab.scripted`); afterwards the namespace is gone and
    the capture judged by tshark."""
    pcap = tmp_path / f"{name}.pcap"
    with scripted_lab(pcap, seed=name, kernel_mptcp=kernel_mptcp, ipv6=ipv6,
                      signal_endpoint_id=SIGNAL_ID if signal_endpoint else None) as run:
        namespace = run.lab.namespace.name
        yield run
        # Shown with `pytest -s`: the rows of docs/mptcp-interop.md.
        print(f"\n{name}: kernel {mptcp_only(run.kernel_delta())} ours "
              f"{run.host.counters.nonzero()}")
    assert namespace not in list_namespaces()
    run.judgement = judgement = tshark_judge.judge_mptcp_capture(pcap)  # type: ignore[attr-defined]
    assert judgement.problems == [], judgement.problems
    assert judgement.mptcp_problems == [], judgement.mptcp_problems


def mptcp_only(delta: dict[str, int]) -> dict[str, int]:
    return {name.removeprefix("MPTcpExt"): value for name, value in delta.items()
            if name.startswith("MPTcpExt") and name != "MPTcpExtMPCurrEstab"}


def join_announced(run: ScriptedRun) -> object:
    """Our client joins the kernel's announced (signal) address from our path-2
    address once the ADD_ADDR arrived (3.4.1)."""
    connection = run.connection
    announced = ipaddress.ip_address(run.lab.kernel_addresses[1])
    run.run(lambda: any(address == announced for address, _ in
                        connection.signals.remote_addresses.values()), what="ADD_ADDR")
    return connection.add_subflow(run.lab.our_addresses[1], remote=announced,
                                  now=time.monotonic())


# -- REMOVE_ADDR (RFC 8684 3.4.2) --------------------------------------------------------


@pytest.mark.parametrize("removed", [1, 0], ids=["join_address", "initial_address_id0"])
def test_we_remove_an_address_and_the_kernel_closes_that_subflow(tmp_path: Path,
                                                                 removed: int) -> None:
    # Address ID 0 is the initial subflow's address (3.4.2); Linux takes its removal too.
    with scenario(tmp_path, f"rm_addr_ours_{removed}") as run:
        run.kernel.listen(run.lab.kernel_addresses[0], PORT)
        connection = run.connect()
        # The first exchange carries the kernel's first DSS, after which we join (3.1).
        run.exchange(payload(SIZE, 1), payload(SIZE, 2))
        join = connection.add_subflow(run.lab.our_addresses[1], now=time.monotonic())
        run.run(lambda: join.usable, what="the join")
        assert sorted(run.kernel_subflows()) == sorted(run.lab.our_addresses)
        gone = connection.subflows[0] if removed == 0 else join
        kept = run.lab.our_addresses[1 - removed]
        # Removed with data in flight both ways: what the subflow carried and the peer
        # did not DATA_ACK comes again on the other one (3.3.6).
        all_arrived = run.start_exchange(payload(MIDWAY, 3), payload(MIDWAY, 4))
        connection.remove_address(run.lab.our_addresses[removed])
        run.wait_kernel_counter("MPTcpExtRmAddr")
        run.run(lambda: run.kernel_subflows() == [kept],
                what="the kernel closing the removed subflow")
        run.run(all_arrived, what="data completing on the other subflow")
        run.close_both()
        assert gone.dead and gone.close_reason == "aborted"
        delta = run.kernel_delta()
        assert delta.get("MPTcpExtRmAddr") == 1, delta
        assert run.host.counters["RmAddrTx"] == 1
    assert run.kernel.received_sha256 == sha256(payload(SIZE, 1) + payload(MIDWAY, 3))
    assert sha256(bytes(run.received)) == sha256(payload(SIZE, 2) + payload(MIDWAY, 4))
    assert run.judgement.count("tcp.options.mptcp.subtype", "4") >= 1  # REMOVE_ADDR seen


@pytest.mark.parametrize("removed", [SIGNAL_ID, 0], ids=["signal_endpoint", "initial_id0"])
def test_kernel_deletes_an_endpoint_and_we_close_that_subflow(tmp_path: Path,
                                                              removed: int) -> None:
    with scenario(tmp_path, f"rm_addr_kernel_{removed}", signal_endpoint=True) as run:
        run.kernel.listen("0.0.0.0", PORT)
        connection = run.connect()
        join = join_announced(run)
        run.run(lambda: join.usable and run.kernel.connected, what="the join")
        run.exchange(payload(SIZE, 5), payload(SIZE, 6))
        all_arrived = run.start_exchange(payload(MIDWAY, 7), payload(MIDWAY, 8))
        # ID 0 with the address: the kernel's initial subflow address (3.4.2).
        run.lab.delete_mptcp_endpoint(removed, run.lab.kernel_addresses[0] if removed == 0
                                      else None)
        gone, kept = (connection.subflows[0], join) if removed == 0 else (
            join, connection.subflows[0])
        run.run(lambda: run.host.counters["RmAddr"] >= 1 and gone.dead,
                what="REMOVE_ADDR closing our subflow")
        assert not kept.dead
        run.run(all_arrived, what="data completing on the other subflow")
        run.close_both()
        delta = run.kernel_delta()
        assert delta.get("MPTcpExtRmAddrTx") == 1 and delta.get("MPTcpExtRmSubflow") == 1, delta
        assert delta.get("MPTcpExtRmAddr") is None, delta  # nothing removed the other way
        # Linux resets the subflow as it sends REMOVE_ADDR on the other one; whichever
        # arrives first closes it (we count RmSubflow only when we close it ourselves).
        assert gone.close_reason in ("aborted", "reset"), gone.close_reason
        assert run.host.counters["RmAddr"] == 1
        assert run.host.counters["RmSubflow"] == (gone.close_reason == "aborted")
        assert removed not in connection.signals.remote_addresses
    assert run.kernel.received_sha256 == sha256(payload(SIZE, 5) + payload(MIDWAY, 7))
    assert sha256(bytes(run.received)) == sha256(payload(SIZE, 6) + payload(MIDWAY, 8))


# -- MP_PRIO (RFC 8684 3.3.8) ------------------------------------------------------------


def received_on(subflow) -> int:
    """Payload bytes that arrived on `subflow` (in order at the subflow level)."""
    receiver = subflow.tcp.receiver
    return receiver.rcv_nxt - receiver.irs - 1


def sent_on(subflow) -> int:
    return subflow.tcp.sender.buffer.end - subflow.tcp.iss - 1


def test_we_mark_a_subflow_backup_and_the_kernel_stops_sending_on_it(tmp_path: Path) -> None:
    with scenario(tmp_path, "mp_prio_ours") as run:
        run.kernel.listen(run.lab.kernel_addresses[0], PORT)
        connection = run.connect()
        run.exchange(payload(SIZE, 11), payload(SIZE, 12))
        join = connection.add_subflow(run.lab.our_addresses[1], now=time.monotonic())
        run.run(lambda: join.usable, what="the join")
        run.exchange(b"", payload(4 * SIZE, 13), "kernel data over both subflows")
        assert received_on(join) > 0  # the kernel schedules on the join while regular
        connection.set_backup(join, True)
        run.wait_kernel_counter("MPTcpExtMPPrioRx")
        on_join = received_on(join)
        run.exchange(b"", payload(4 * SIZE, 14), "kernel data after MP_PRIO")
        assert received_on(join) == on_join  # 3.3.8: backup, so the kernel avoids it
        run.close_both()
        delta = run.kernel_delta()
        assert delta.get("MPTcpExtMPPrioRx") == 1, delta
        assert run.host.counters["MPPrioTx"] == 1 and join.backup
    assert sha256(bytes(run.received)) == sha256(payload(SIZE, 12) + payload(4 * SIZE, 13)
                                                 + payload(4 * SIZE, 14))
    assert run.judgement.count("tcp.options.mptcp.subtype", "5") == 1  # one MP_PRIO


def test_kernel_changes_its_endpoint_to_backup_and_back(tmp_path: Path) -> None:
    with scenario(tmp_path, "mp_prio_kernel", signal_endpoint=True) as run:
        run.kernel.listen("0.0.0.0", PORT)
        connection = run.connect()
        join = join_announced(run)
        run.run(lambda: join.usable and run.kernel.connected, what="the join")
        run.exchange(payload(SIZE, 15), payload(SIZE, 16))
        assert not join.backup
        run.lab.change_mptcp_endpoint(SIGNAL_ID, backup=True)
        run.run(lambda: run.host.counters["MPPrioRx"] == 1, what="MP_PRIO backup")
        assert join.backup and not connection.subflows[0].backup
        on_join = sent_on(join)
        run.exchange(payload(4 * SIZE, 17), b"", "our data while the join is backup")
        assert sent_on(join) == on_join  # our scheduler keeps off a backup subflow
        run.lab.change_mptcp_endpoint(SIGNAL_ID, backup=False)
        run.run(lambda: run.host.counters["MPPrioRx"] == 2, what="MP_PRIO nobackup")
        assert not join.backup
        run.close_both()
        delta = run.kernel_delta()
        assert delta.get("MPTcpExtMPPrioTx") == 2, delta
        assert run.host.counters["MPPrioRx"] == 2 and run.host.counters["MPPrioTx"] == 0
    assert run.kernel.received_sha256 == sha256(payload(SIZE, 15) + payload(4 * SIZE, 17))
    assert sha256(bytes(run.received)) == sha256(payload(SIZE, 16))


# -- MP_FASTCLOSE (RFC 8684 3.5) ---------------------------------------------------------


def test_our_abort_fastcloses_the_kernel_connection(tmp_path: Path) -> None:
    with scenario(tmp_path, "fastclose_ours") as run:
        run.kernel.listen(run.lab.kernel_addresses[0], PORT)
        connection = run.connect()
        run.exchange(payload(SIZE, 21), payload(SIZE, 22))
        join = connection.add_subflow(run.lab.our_addresses[1], now=time.monotonic())
        run.run(lambda: join.usable, what="the join")
        connection.abort()
        run.run(lambda: run.kernel.error is not None, what="the kernel's ECONNRESET")
        assert run.kernel.error == "reset"
        assert connection.data_state == "CLOSED" and connection.closed_reason == "aborted"
        delta = run.kernel_delta()
        # Linux counts each RST with MP_FASTCLOSE it reads before the connection is
        # gone: the first always, the second if it comes in time.
        assert delta.get("MPTcpExtMPFastcloseRx") in (1, 2), delta
        assert run.host.counters["MPFastcloseTx"] == 2  # on the RST of each subflow
        assert run.kernel_subflows() == []
    assert run.kernel.received_sha256 == sha256(payload(SIZE, 21))
    assert sha256(bytes(run.received)) == sha256(payload(SIZE, 22))


@pytest.mark.parametrize("how", ["linger0", "unread"])
def test_kernel_fastclose_closes_our_connection(tmp_path: Path, how: str) -> None:
    with scenario(tmp_path, f"fastclose_kernel_{how}") as run:
        run.kernel.listen(run.lab.kernel_addresses[0], PORT)
        connection = run.connect()
        run.exchange(payload(SIZE, 23), payload(SIZE, 24))
        join = connection.add_subflow(run.lab.our_addresses[1], now=time.monotonic())
        run.run(lambda: join.usable, what="the join")
        if how == "linger0":
            run.kernel.abort()  # SO_LINGER {1, 0}: Linux's mptcp_close fastcloses
        else:
            run.kernel.read_paused = True
            connection.send(payload(SIZE, 25))
            run.run(lambda: connection.snd_una == connection.snd_nxt
                    and connection.snd_nxt > connection.local_idsn + 1 + SIZE,
                    what="bytes acknowledged but unread")
            run.kernel.close()  # unread data: Linux fastcloses rather than DATA_FIN
        run.run(lambda: connection.is_closed, what="our connection closing")
        assert connection.closed_reason == "fastclose"
        assert connection.data_state == "CLOSED"
        assert all(sf.dead for sf in connection.subflows)
        assert run.host.counters["MPFastcloseRx"] == 1
        delta = run.kernel_delta()
        assert delta.get("MPTcpExtMPFastcloseTx") == 2, delta  # on each subflow's RST
    assert sha256(bytes(run.received)) == sha256(payload(SIZE, 24))


# -- graceful close (RFC 8684 3.3.3, Appendix D) ------------------------------------------


@pytest.mark.parametrize(("we_first", "ipv6"),
                         [(True, False), (False, False), (None, False), (True, True)],
                         ids=["we_close_first", "kernel_first", "both_at_once",
                              "we_close_first_ipv6"])
def test_graceful_data_fin_close(tmp_path: Path, we_first: bool | None, ipv6: bool) -> None:
    with scenario(tmp_path, f"data_fin_{we_first}_{ipv6}", ipv6=ipv6) as run:
        run.kernel.listen(run.lab.kernel_addresses[0], PORT)
        connection = run.connect()
        run.exchange(payload(SIZE, 31), payload(SIZE, 32))
        join = connection.add_subflow(run.lab.our_addresses[1], now=time.monotonic())
        run.run(lambda: join.usable, what="the join")
        run.exchange(payload(2 * SIZE, 33), payload(2 * SIZE, 34))
        run.close_both(we_first=we_first)
        run.run(lambda: run.kernel_subflows() == [], what="the kernel's subflows ending")
        assert connection.closed_reason == "closed" and connection.data_state == "CLOSED"
        assert run.kernel.eof and connection.peer_closed and run.kernel.error is None
        ours = run.host.counters
        assert ours["MPFastcloseTx"] == ours["MPFastcloseRx"] == ours["MPRstTx"] == 0
        assert run.host.resets_sent == 0
        delta = run.kernel_delta()
        assert not delta.get("MPTcpExtMPFastcloseRx") and not delta.get("MPTcpExtMPFastcloseTx")
        assert not delta.get("MPTcpExtMPRstTx") and not delta.get("MPTcpExtMPRstRx"), delta
    assert run.kernel.received_sha256 == sha256(payload(SIZE, 31) + payload(2 * SIZE, 33))
    assert sha256(bytes(run.received)) == sha256(payload(SIZE, 32) + payload(2 * SIZE, 34))
    assert run.judgement.count("tcp.flags.reset", "1") == 0, "a RST in a graceful close"
    assert run.judgement.count("tcp.options.mptcp.datafin.flag", "1") >= 2


# -- fallback (RFC 8684 3.7) --------------------------------------------------------------


def test_our_client_falls_back_with_a_plain_tcp_kernel_listener(tmp_path: Path) -> None:
    with scenario(tmp_path, "fallback_ours", kernel_mptcp=False) as run:
        run.kernel.listen(run.lab.kernel_addresses[0], PORT)
        connection = run.connect()
        run.exchange(payload(SIZE, 41), payload(SIZE, 42))
        assert connection.fallback
        run.close_both()
        assert run.host.counters["MPCapableFallbackSYNACK"] == 1
        delta = run.kernel_delta()
        assert not any(name.startswith("MPTcpExt") for name in delta), delta
        assert delta.get("TcpPassiveOpens") == 1, delta
    assert run.kernel.received_sha256 == sha256(payload(SIZE, 41))
    assert sha256(bytes(run.received)) == sha256(payload(SIZE, 42))
    assert run.judgement.count("tcp.options.mptcp.subtype") == 1  # only our SYN's


def test_plain_tcp_kernel_client_to_our_listener_falls_back(tmp_path: Path) -> None:
    with scenario(tmp_path, "fallback_kernel", kernel_mptcp=False) as run:
        run.host.listen(PORT, CONFIG)
        run.kernel.connect(run.lab.our_addresses[0], PORT, bind=run.lab.kernel_addresses[0])
        run.run(lambda: run.connection is not None and run.kernel.connected,
                what="the plain TCP connection")
        connection = run.connection
        run.exchange(payload(SIZE, 43), payload(SIZE, 44))
        assert connection.fallback
        run.close_both(we_first=False)
        assert run.host.counters["MPCapableSYNRX"] == 0
        delta = run.kernel_delta()
        assert not any(name.startswith("MPTcpExt") for name in delta), delta
        assert delta.get("TcpActiveOpens") == 1, delta
    assert run.kernel.received_sha256 == sha256(payload(SIZE, 43))
    assert sha256(bytes(run.received)) == sha256(payload(SIZE, 44))
    assert run.judgement.count("tcp.options.mptcp.subtype") == 0
