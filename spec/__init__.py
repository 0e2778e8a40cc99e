"""The executable specification of MPTCP v1 (RFC 8684): the source of truth.

Connection and subflow lifecycles live here as data tables of named rules
(name, source, event, guard, effect, target, rfc_section), with the event types, the
guard/effect shim that evaluates on Python values and on Z3 terms, the named invariants,
the `transitions` machines built from the tables, the trace monitor and the diagram
generator. Nothing here does I/O on the network and nothing here imports `impl`.

Where things are:

- `core`: the vocabulary (Variable, Label, Rule, MachineSpec, SystemSpec, Invariant, Step)
  and the one step semantics, `SystemSpec.step_candidates`; `logic`: the And/Or/If shim.
- `labels`: the alphabet, one endpoint seen from outside (app calls, segments sent and
  received, timers, path events), and which RFC 8684 option each label carries.
- `subflow`, `connection` (+ `connection_data`): the two tables; `helpers`: their shared
  state groups and guard helpers; `system`: `build_system(config)` and `SYSTEM`.
- `invariants`: the named safety properties, with RFC sections.
- `events`: the concrete events (frozen dataclasses) and `to_steps`/`from_step`;
  `trace`: the versioned JSON-lines trace format.
- `monitor`: `check_trace` and the incremental `Monitor`; `machines`: `transitions`
  machines and the `SystemRunner`; `diagrams`: DOT/SVG of the tables.
- `scenarios`: textbook traces with broken twins; `explore`: a small explicit-state
  explorer for sanity checks.
"""
