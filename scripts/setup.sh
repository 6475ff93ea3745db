#!/usr/bin/env bash
# Set up cosim on a fresh Debian 12 machine with Python 3.11: ngspice 46 (KLU) from
# bookworm-backports, a virtual environment in .venv, and the package in editable mode.
# Safe to run again: every step skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_ngspice.sh || echo "setup: WARNING: ngspice could not be installed; the spice backend will be unavailable" >&2

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then PYTHON=$candidate; break; fi
    done
fi
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: cosim needs Python >= 3.11, found {sys.version.split()[0]}")
PY

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# pip's own chatter goes to a log; it is shown only when the install fails
if ! .venv/bin/python -m pip install -q -e ".[test]" > .venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    echo "setup: pip install failed (log above, kept in .venv/pip-install.log)" >&2
    exit 1
fi
.venv/bin/python -c "import cosim, numpy, scipy, sklearn, matplotlib, tqdm" \
    || { echo "setup: the cosim environment is incomplete" >&2; exit 1; }
echo "setup: ready (.venv, $(.venv/bin/python --version))"
