#!/usr/bin/env bash
# Set up everything bzlogger's demo and tests need on a fresh Debian / Raspberry Pi OS
# machine: system packages (dbus-daemon for the simulated BlueZ bus, systemd-analyze for
# the unit's security score) and a virtual environment in .venv with the package and its
# development extras. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# The door display's browser test drives Debian's Chromium (never a downloaded build).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
    echo "bootstrap: installing system packages: ${need[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.bzlogger-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
fi
