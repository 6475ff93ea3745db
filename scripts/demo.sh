#!/usr/bin/env bash
# Set everything up, then run the end-to-end demo (`cosim demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# one BLAS thread unless asked otherwise: training is chaotic enough that the rounding of a
# two-thread BLAS moves the final accuracies (95.6 % / 95.3 % instead of the README's
# 95.0 % / 95.6 %); with one thread the demo reproduces them, about as fast at its sizes
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
exec .venv/bin/cosim demo "$@"
