"""Checks of the specification itself, and the bridge from it to real runs.

Z3 encodings generated from the spec tables (bounded model checking, k-induction,
coverage witnesses, structural checks), Hypothesis stateful exploration, seeded mutants,
the coupled-congestion-control proofs, and (later) replay of generated traces over real
sockets. Entry point: `mptcp-ref check`.
"""
