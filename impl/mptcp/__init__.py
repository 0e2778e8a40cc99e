"""Sans-I/O MPTCP connection (RFC 8684): handshakes, DSS mapping, reassembly, DATA_ACK and
DATA_FIN, path manager, scheduler, fallback, and `project()` onto the spec state.
Not built yet (issue: the MPTCP endpoint).
"""
