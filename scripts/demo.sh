#!/usr/bin/env bash
# The main job (`make demo`): model checks of the spec, the diagrams drawn from it, and a
# live MP_CAPABLE handshake with the Linux kernel over a TUN device in a fresh namespace.
# Outputs land in out/ (report.json, handshake.pcap) and diagrams/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
bin=.venv/bin

echo "== 1/3 model checks of the spec (mptcp-ref check) =="
"$bin/mptcp-ref" check --json out/report.json --mutants

echo "== 2/3 state diagrams from the spec tables (mptcp-ref diagrams) =="
"$bin/mptcp-ref" diagrams --out diagrams

echo "== 3/3 live handshake with the Linux kernel (mptcp-ref lab handshake) =="
"$bin/mptcp-ref" lab handshake --pcap out/handshake.pcap
