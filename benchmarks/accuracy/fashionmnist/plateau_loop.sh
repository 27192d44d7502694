#!/usr/bin/env bash
# The plateau parts to the end on this machine: the lr grid, then the epoch sweep one run at a time
# (its next cells exist only once the last ones have run). Start it once per core: the loops share
# the grid through claims (results/.claims), never running a cell twice.
set -uo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-python}
run() { nice -n "${NICE:-10}" "$PY" benchmarks/accuracy/run.py fashionmnist --record "$@"; }
while [ -n "$(run --part plateau_lr --part plateau --dry-run 2>/dev/null)" ]; do
    run --part plateau_lr --part plateau --max-runs 1 2>&1 | grep -v "run(s) to do" || sleep 60  # the rest is another loop's
done
