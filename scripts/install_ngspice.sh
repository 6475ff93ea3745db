#!/usr/bin/env bash
# Install ngspice 46 (with the KLU solver) from Debian bookworm-backports.
# Debian 12's own ngspice 39 has no KLU and is ~150x slower on a 128x128 array.
# Idempotent: does nothing when an ngspice >= 46 is already installed.
set -euo pipefail

have_version() {
    command -v ngspice >/dev/null 2>&1 || return 1
    local v
    v=$(ngspice -v 2>/dev/null | grep -o 'ngspice-[0-9]*' | head -n1 | cut -d- -f2)
    [ -n "$v" ] && [ "$v" -ge 46 ]
}

if have_version && [ -e /usr/lib/x86_64-linux-gnu/libngspice.so.0 -o -n "$(ldconfig -p 2>/dev/null | grep libngspice.so.0)" ]; then
    echo "ngspice: $(ngspice -v 2>/dev/null | grep -o 'ngspice-[0-9]*' | head -n1) already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "ngspice: not root and no sudo; install ngspice 46 (bookworm-backports) by hand" >&2
        exit 1
    fi
fi

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [ "$codename" = "bookworm" ]; then
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "ngspice: adding bookworm-backports to the apt sources"
        $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports ngspice libngspice0 >/dev/null
else
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ngspice libngspice0 >/dev/null
fi
echo "ngspice: installed $(ngspice -v 2>/dev/null | grep -o 'ngspice-[0-9]*' | head -n1)"
