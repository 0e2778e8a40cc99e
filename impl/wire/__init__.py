"""Packet codecs: IPv4/IPv6 headers, TCP headers and checksums, TCP options and every
MPTCP option of RFC 8684 section 3 (kind 30).

Values are typed and immutable; parsing reads from `memoryview`s without copying payloads;
malformed input raises `WireError` (and nothing else) naming the field and offset.
"""
