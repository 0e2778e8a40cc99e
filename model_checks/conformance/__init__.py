"""Conformance of captured traffic: `mptcp-ref monitor FILE.pcap` (docs/monitor.md).

A capture is judged against the spec from one endpoint's point of view, in three steps:

    capture.py      read the pcap (Wireshark frame numbers kept), parse every packet with
                    our codec, group packets into subflows and subflows into connections
                    (MP_CAPABLE keys -> tokens; an MP_JOIN SYN names its connection's token)
    abstraction.py  one connection's packets -> `spec.events` segments, seen by one side:
                    real DSNs and DATA_ACKs made relative to the IDSNs, payload DSNs from the
                    DSS mappings, HMACs and MP_FASTCLOSE keys judged, address IDs renamed
                    densely, plus the application/path events a capture cannot show but
                    that are determined by it (connect, listen, send, address added)
    judge.py        run `spec.monitor.Monitor` over them, trying the few documented hidden
                    events (close, shutdown, abort, close timer) where a packet needs them,
                    and report per connection: accepted, or the first divergence with the
                    packet number, the possible spec states and the enabled rules
"""
