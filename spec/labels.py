"""The alphabet of the spec: every abstract event (`Label`) the rules match on.

One endpoint is seen from outside (as Netsem saw TCP): the labels are what the application
asks of it ("app"), what it receives ("peer") and sends ("endpoint") on a subflow, its
timers ("timer") and changes of its paths ("path"). `spec.events` maps concrete events
(segments with a summary of their options, API calls, timers) onto these labels.

How a segment becomes labels (the rules of `spec.events.to_steps`):

- a segment with SYN is one label: `*_syn_mpc`, `*_syn_join`, `*_syn` (no MPTCP option),
  and likewise `*_synack_*`;
- any other segment is a sequence of labels, one per thing it carries, in this order:
  the handshake ACK (`*_ack_mpc`, `*_ack_join`), ADD_ADDR, REMOVE_ADDR (one per address
  ID), MP_PRIO, MP_FAIL, the DSS DATA_ACK, an infinite mapping, MP_FASTCLOSE, the payload
  (`*_data` when this segment carries a DSS mapping for it, `*_data_plain` otherwise),
  the DATA_FIN, the TCP FIN, the RST (with its MP_TCPRST reason), and last
  `recv_ack_of_fin` when a received segment acknowledges the FIN this endpoint sent.
  A segment that carries none of these is `send_ack` / `recv_ack` (a bare ACK);
- every label carries a few bounded parameters (data offsets in abstract units
  0..`Config.max_bytes`, address IDs 0..`Config.max_address_ids`-1, flags).

`LABEL_OPTIONS` says which RFC 8684 option subtype each label puts on (or reads from) the
wire, so tests can check that every subtype appears in some rule and invariants can name
"a label that sends an MPTCP option".
"""

from __future__ import annotations

from spec.core import Config, Label, Variable

APP, PEER, ENDPOINT, TIMER, PATH = "app", "peer", "endpoint", "timer", "path"

MP_CAPABLE = "MP_CAPABLE"
MP_JOIN = "MP_JOIN"
DSS = "DSS"
ADD_ADDR = "ADD_ADDR"
REMOVE_ADDR = "REMOVE_ADDR"
MP_PRIO = "MP_PRIO"
MP_FAIL = "MP_FAIL"
MP_FASTCLOSE = "MP_FASTCLOSE"
MP_TCPRST = "MP_TCPRST"
OPTION_SUBTYPES = (
    MP_CAPABLE, MP_JOIN, DSS, ADD_ADDR, REMOVE_ADDR, MP_PRIO, MP_FAIL, MP_FASTCLOSE, MP_TCPRST,
)

# Which option subtype a label carries on the wire. send_rst/recv_rst carry MP_TCPRST only
# when their `reason` parameter is >= 0 (-1 means a plain RST).
LABEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "send_syn_mpc": (MP_CAPABLE,), "recv_syn_mpc": (MP_CAPABLE,),
    "send_synack_mpc": (MP_CAPABLE,), "recv_synack_mpc": (MP_CAPABLE,),
    "send_ack_mpc": (MP_CAPABLE,), "recv_ack_mpc": (MP_CAPABLE,),
    "send_syn_join": (MP_JOIN,), "recv_syn_join": (MP_JOIN,),
    "send_synack_join": (MP_JOIN,), "recv_synack_join": (MP_JOIN,),
    "send_ack_join": (MP_JOIN,), "recv_ack_join": (MP_JOIN,),
    "send_data": (DSS,), "recv_data": (DSS,),
    "send_data_ack": (DSS,), "recv_data_ack": (DSS,),
    "send_data_fin": (DSS,), "recv_data_fin": (DSS,),
    "send_infinite_mapping": (DSS,), "recv_infinite_mapping": (DSS,),
    "send_add_addr": (ADD_ADDR,), "recv_add_addr": (ADD_ADDR,),
    "send_remove_addr": (REMOVE_ADDR,), "recv_remove_addr": (REMOVE_ADDR,),
    "send_mp_prio": (MP_PRIO,), "recv_mp_prio": (MP_PRIO,),
    "send_mp_fail": (MP_FAIL,), "recv_mp_fail": (MP_FAIL,),
    "send_fastclose": (MP_FASTCLOSE,), "recv_fastclose": (MP_FASTCLOSE,),
    "send_rst": (MP_TCPRST,), "recv_rst": (MP_TCPRST,),
}


def _bool(name: str, doc: str) -> Variable:
    return Variable(name, "bool", False, doc=doc)


def _int(name: str, lo: int, hi: int, doc: str) -> Variable:
    return Variable(name, "int", lo, lo, hi, doc=doc)


def build_labels(config: Config | None = None) -> dict[str, Label]:
    """Every label of the spec, keyed by name, with parameter bounds taken from `config`."""
    config = config if config is not None else Config()
    units = config.max_bytes
    dsn = _int("dsn", 0, units, "data sequence offset of the first unit (relative to IDSN+1)")
    length = _int("bytes", 0, units, "length in abstract units (0: none)")
    payload = _int("bytes", 1, units, "payload length in abstract units")
    ack = _int("ack", 0, units + 1, "DATA_ACK value (relative; the DATA_FIN takes one unit)")
    address_id = _int("address_id", 0, config.max_address_ids - 1, "MPTCP address ID")
    backup = _bool("backup", "the B (backup) flag")
    hmac_ok = _bool("hmac_ok", "the HMAC checked out (judged by the receiver)")
    reason = _int("reason", -1, 6, "MP_TCPRST reason code; -1 when the RST has no MP_TCPRST")
    echo = _bool("echo", "the E (echo) flag of ADD_ADDR")
    key_ok = _bool("key_ok", "MP_FASTCLOSE carried this endpoint's key")

    table: list[Label] = [
        # -- application calls (RFC 6897 API, Linux socket calls) ---------------------------
        Label("app_listen", APP, False, doc="listen(): passive open"),
        Label("app_connect", APP, False, doc="connect(): active open"),
        Label("app_accept", APP, False, doc="accept() returned this connection"),
        Label("app_send", APP, False, (payload,), doc="send(): the app wrote `bytes` units"),
        Label("app_recv", APP, False, (length,),
              doc="recv(): the app read `bytes` units (0 = end of stream)"),
        Label("app_shutdown", APP, False, doc="shutdown(SHUT_WR): no more data to send"),
        Label("app_close", APP, False, doc="close()"),
        Label("app_abort", APP, False, doc="abortive close (SO_LINGER 0, or an error)"),
        # -- MP_CAPABLE handshake of the initial subflow (RFC 8684 3.1) ---------------------
        Label("send_syn_mpc", ENDPOINT, doc="SYN with MP_CAPABLE"),
        Label("recv_syn_mpc", PEER, doc="SYN with MP_CAPABLE"),
        Label("send_synack_mpc", ENDPOINT, doc="SYN/ACK with MP_CAPABLE and our key"),
        Label("recv_synack_mpc", PEER, doc="SYN/ACK with MP_CAPABLE and the peer's key"),
        Label("send_ack_mpc", ENDPOINT, True, (length,),
              doc="third ACK with MP_CAPABLE and both keys, maybe with data at DSN 0"),
        Label("recv_ack_mpc", PEER, True, (length,),
              doc="third ACK with MP_CAPABLE and both keys, maybe with data at DSN 0"),
        # -- plain TCP handshake segments: no MPTCP option (fallback, RFC 8684 3.7) ----------
        Label("send_syn", ENDPOINT, doc="SYN without MPTCP option"),
        Label("recv_syn", PEER, doc="SYN without MPTCP option"),
        Label("send_synack", ENDPOINT, doc="SYN/ACK without MPTCP option"),
        Label("recv_synack", PEER, doc="SYN/ACK without MPTCP option"),
        # -- MP_JOIN handshake of an additional subflow (RFC 8684 3.2) ----------------------
        Label("send_syn_join", ENDPOINT, True, (address_id, backup),
              doc="SYN with MP_JOIN: token, nonce, our address ID"),
        Label("recv_syn_join", PEER, True, (address_id, backup),
              doc="SYN with MP_JOIN: token, nonce, the peer's address ID"),
        Label("send_synack_join", ENDPOINT, True, (address_id, backup),
              doc="SYN/ACK with MP_JOIN: truncated HMAC, nonce, our address ID"),
        Label("recv_synack_join", PEER, True, (address_id, backup, hmac_ok),
              doc="SYN/ACK with MP_JOIN: truncated HMAC, nonce, the peer's address ID"),
        Label("send_ack_join", ENDPOINT, doc="third ACK with MP_JOIN and the full HMAC"),
        Label("recv_ack_join", PEER, True, (hmac_ok,),
              doc="third ACK with MP_JOIN and the full HMAC"),
        # -- TCP segments without anything MPTCP cares about ---------------------------------
        Label("send_ack", ENDPOINT, doc="a bare ACK: no option, no payload, no FIN"),
        Label("recv_ack", PEER, doc="a bare ACK: no option, no payload, no FIN"),
        Label("send_fin", ENDPOINT, doc="TCP FIN on this subflow"),
        Label("recv_fin", PEER, doc="TCP FIN on this subflow"),
        Label("recv_ack_of_fin", PEER, doc="the segment acknowledges the FIN we sent"),
        Label("send_rst", ENDPOINT, True, (reason,), doc="RST, maybe with MP_TCPRST"),
        Label("recv_rst", PEER, True, (reason,), doc="RST, maybe with MP_TCPRST"),
        # -- data sequence signal (RFC 8684 3.3) ---------------------------------------------
        Label("send_data", ENDPOINT, True, (dsn, payload),
              doc="payload with a DSS mapping on this segment"),
        Label("recv_data", PEER, True, (dsn, payload),
              doc="payload with a DSS mapping on this segment"),
        Label("send_data_plain", ENDPOINT, True, (dsn, payload),
              doc="payload without a DSS mapping on this segment"),
        Label("recv_data_plain", PEER, True, (dsn, payload),
              doc="payload without a DSS mapping on this segment"),
        Label("send_data_ack", ENDPOINT, True, (ack,), doc="DSS with a DATA_ACK"),
        Label("recv_data_ack", PEER, True, (ack,), doc="DSS with a DATA_ACK"),
        Label("send_data_fin", ENDPOINT, True, (dsn,), doc="DSS with DATA_FIN at `dsn`"),
        Label("recv_data_fin", PEER, True, (dsn,), doc="DSS with DATA_FIN at `dsn`"),
        Label("send_infinite_mapping", ENDPOINT, doc="DSS mapping of data-level length 0"),
        Label("recv_infinite_mapping", PEER, doc="DSS mapping of data-level length 0"),
        # -- address management (RFC 8684 3.4) and subflow policy (3.3.8) -------------------
        Label("send_add_addr", ENDPOINT, True, (address_id, echo), doc="ADD_ADDR"),
        Label("recv_add_addr", PEER, True, (address_id, echo, hmac_ok), doc="ADD_ADDR"),
        Label("send_remove_addr", ENDPOINT, True, (address_id,), doc="REMOVE_ADDR (one ID)"),
        Label("recv_remove_addr", PEER, True, (address_id,), doc="REMOVE_ADDR (one ID)"),
        Label("send_mp_prio", ENDPOINT, True, (backup,), doc="MP_PRIO for this subflow"),
        Label("recv_mp_prio", PEER, True, (backup,), doc="MP_PRIO for this subflow"),
        # -- failures and abortive close (RFC 8684 3.5, 3.7) ---------------------------------
        Label("send_mp_fail", ENDPOINT, doc="MP_FAIL (a DSS checksum failed)"),
        Label("recv_mp_fail", PEER, doc="MP_FAIL (a DSS checksum failed at the peer)"),
        Label("send_fastclose", ENDPOINT, doc="MP_FASTCLOSE with the peer's key"),
        Label("recv_fastclose", PEER, True, (key_ok,), doc="MP_FASTCLOSE"),
        # -- timers ----------------------------------------------------------------------------
        Label("timeout_rto", TIMER, doc="the subflow's retransmission timer fired"),
        Label("timeout_connect", TIMER,
              doc="the subflow's SYN retries ran out: it is given up"),
        Label("timeout_time_wait", TIMER, doc="the subflow's TIME_WAIT (2 MSL) ended"),
        Label("timeout_close", TIMER, False,
              doc="the connection-level close timer fired (Linux: net.mptcp.close_timeout)"),
        Label("timeout_add_addr", TIMER, False,
              doc="ADD_ADDR retransmission timer (Linux: net.mptcp.add_addr_timeout)"),
        # -- path events -----------------------------------------------------------------------
        Label("path_address_added", PATH, False, (address_id,),
              doc="a local address (with this ID) became available"),
        Label("path_address_removed", PATH, False, (address_id,),
              doc="a local address (with this ID) went away"),
        Label("path_link_down", PATH, doc="the subflow's link went down"),
        Label("path_link_up", PATH, doc="the subflow's link came back"),
    ]
    labels = {label.name: label for label in table}
    assert len(labels) == len(table), "duplicate label name"
    return labels


def mptcp_send_labels(labels: dict[str, Label]) -> frozenset[str]:
    """Labels by which the endpoint puts an MPTCP option on the wire (send_rst only when
    its reason is >= 0, which invariants check separately)."""
    return frozenset(
        name for name, label in labels.items()
        if label.origin == ENDPOINT and name in LABEL_OPTIONS and name != "send_rst"
    )
