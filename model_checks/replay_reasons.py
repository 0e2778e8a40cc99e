"""Why a spec rule was not exercised by any conformant real run of `mptcp-ref replay`.

`not_exercised_reason` gives each such rule a reason: first what is known of our
endpoint and the lab for the rule's family (`FAMILIES`, checked in order), then what
the replay saw of the rule's coverage witness (its script, and whether its run was
conformant or took another way the spec allows). The report groups rules by the
family's short name (`group`).
"""

from __future__ import annotations

import re

__all__ = ["FAMILIES", "not_exercised_reason"]

# (group, rule-name pattern, reason): the first match applies
FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("only MP_FASTCLOSE arrives while ABORTING",
     r"connection:conn_aborting_ignores_",
     "no such segment arrives while our connection is ABORTING: when our endpoint "
     "aborts it resets every subflow at once (3.5), and after Linux's MP_FASTCLOSE only "
     "its MP_FASTCLOSE on the other subflows follows (conn_fastclose_received_aborting "
     "fires), nothing else"),
    ("retransmission timer",
     r"subflow:sf_rto$|_retransmit",
     "needs a retransmission by our endpoint past the handshake (an unanswered SYN is "
     "played: sf_syn_mpc_retransmit): the lab's paths lose nothing, and holding a path "
     "down for one RTO is timing-dependent (not played); sf_rto also needs the timer's "
     "expiry itself, which no capture shows and the runs do not log"),
    ("reordering",
     r"out_of_order|fills_hole",
     "needs data reordered at the data level (across paths or inside a subflow): the "
     "lab's paths deliver in order"),
    ("connection timers not waited out",
     r"conn_close_timeout|conn_timeout_without_subflows|conn_add_addr_timeout",
     "needs a connection-level timer of ours to run out (the close timeout, the ADD_ADDR "
     "retransmission limit): not waited out in a replay"),
    ("listener without a packet",
     r"conn_close_listen|conn_abort_listen",
     "a listener closed or aborted before any SYN leaves no packet: the capture holds "
     "no connection to judge the call on"),
    ("our close() never aborts",
     r"conn_close_unread_data",
     "the lab reads every byte as it arrives, and our close() always queues a DATA_FIN "
     "(never an MP_FASTCLOSE)"),
    ("close() during the handshake",
     r"conn_close_handshake",
     "the runner's connect waits for the handshake to finish, so close() is never "
     "called in SYN_SENT / SYN_RECEIVED"),
    ("TIME-WAIT with the connection alive",
     r"connection:conn_time_wait_expired$",
     "needs one subflow's TIME-WAIT to run out while the connection lives on over "
     "another subflow: no witness script does that"),
    ("our SYN always has MP_CAPABLE",
     r"subflow:sf_connect_plain|conn_syn_without_mpc_sent",
     "the replay never runs our endpoint as a plain TCP client: its SYN always carries "
     "MP_CAPABLE"),
    ("option stripped on the way",
     r"plain_ack_before_dss|first_data_without_dss|third_ack_plain_with_data"
     r"|without_mp_join$",
     "needs a segment that lost its MPTCP option on the way (a middlebox, 3.7): Linux "
     "always sends the option there, and the scripted packet peer strips it only from "
     "SYNs"),
    ("fourth ACK of a join always with a DSS",
     r"subflow:sf_join_fourth_ack(_data|_add_addr|_mp_prio)?$",
     "the fourth ACK of our joins (3.2) came with a DSS DATA_ACK in the runs "
     "(sf_join_fourth_ack_dss): neither Linux nor the packet peer's stack sent it bare, "
     "after data, or with ADD_ADDR / MP_PRIO in our scripts"),
    ("duplicate not played",
     r"_repeated$",
     "needs the peer to send the same segment twice: Linux never repeats one unprompted "
     "and the scripted packet peer repeats only a SYN, SYN/ACK, MP_JOIN SYN/SYN-ACK/ACK, "
     "FIN or DATA_FIN it sends itself, two in a row in the witness, which this "
     "witness's trace does not have"),
)
ARMED_REPEAT = ("the scripted packet peer was armed to send the segment twice, but it "
                "did not reach our endpoint where the rule applies (the peer's stack sends "
                "no subflow FIN, say, before our side closes too)")


def not_exercised_reason(rule: str, witness_status: str | None, script: str | None
                         ) -> tuple[str, str]:
    """(group, reason) for a rule no conformant run fired. `witness_status`: what
    became of the rule's coverage witness (`ReplayReport.as_json`'s statuses); `script`:
    the plan its run played."""
    seen = _witness_text(witness_status, script)
    for group, pattern, reason in FAMILIES:
        if re.search(pattern, rule):
            if group == "duplicate not played" and script and "peer_repeat" in script:
                return "duplicate sent, rule not reached", f"{ARMED_REPEAT}; {seen}"
            return group, f"{reason}; {seen}"
    if witness_status == "run not conformant":
        return "witness run not conformant", seen
    return "another allowed way taken", f"{seen}; our endpoint and its peer took " \
        "another way the spec allows (see the witness's run)"


def _witness_text(status: str | None, script: str | None) -> str:
    if status is None:
        return "no coverage witness"
    if script:
        return f"witness: {status} (script: {script})"
    return f"witness: {status}"
