#!/usr/bin/env bash
# Installs what mptcp-ref needs on a fresh Debian machine, as root: the Debian packages
# (graphviz for diagrams, tshark as an independent dissector, iproute2/nstat for the lab,
# mptcpize/iperf3/tcpdump/nftables/curl for interop runs), then a virtual environment in .venv
# with the project and its dev extras. Idempotent: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(graphviz tshark tcpdump mptcpize iperf3 nftables iproute2 curl)
missing=()
for pkg in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer for it.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$python" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
