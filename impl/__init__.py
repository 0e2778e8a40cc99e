"""The runnable MPTCP endpoint.

Layers point down: `wire` <- `tcp`/`cc` <- `mptcp` <- `io`, `lab`, `api`, `cli`.
The core (`wire`, `tcp`, `cc`, `mptcp`, `crypto`) is sans-I/O: it never imports `io`,
`lab`, `api` or `cli`, and never touches sockets, threads or clocks.
"""
