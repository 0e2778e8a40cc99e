"""The executable specification of MPTCP v1 (RFC 8684): the source of truth.

Connection and subflow lifecycles live here as data tables of named rules
(name, source, event, guard, effect, target, rfc_section), with the event types, the
guard/effect shim that evaluates on Python values and on Z3 terms, the named invariants,
the `transitions` machines built from the tables, the trace monitor and the diagram
generator. Nothing here does I/O on the network and nothing here imports `impl`.
"""
