#!/usr/bin/env bash
# Baseline cgroup figures for issue 9 (before --device-profile exists). Run as root from the repo root:
#   bash benchmarks/devices/run_baseline.sh [results.jsonl]
# Every line of the output file is one cgroup_proof.py result (limit, peak, OOM kills, exit code, wall time).
set -u
OUT=${1:-benchmarks/devices/baseline.jsonl}
PY=${PYTHON:-python}
PROOF="$PY benchmarks/devices/cgroup_proof.py --timeout 3000 --json $OUT"
TRAIN="$PY -m edgetrgl.cli train --quiet --overwrite"
RUNS=$(mktemp -d /tmp/edgetrgl-proof.XXXXXX)
trap 'rm -rf "$RUNS"' EXIT

$PROOF --limit 800MiB -- $TRAIN --epochs 1 --out "$RUNS/a"
$PROOF --limit 1GiB   -- $TRAIN --epochs 1 --out "$RUNS/b"
$PROOF --limit 700MiB -- $TRAIN --epochs 1 --cache disk --offload disk --out "$RUNS/c"
CFG=benchmarks/devices/resnet110_synthetic32.toml
$PROOF --limit 1800MiB -- $TRAIN --config $CFG --regime e2e --out "$RUNS/d"
$PROOF --limit 1800MiB -- $TRAIN --config $CFG --regime sequential --out "$RUNS/e"
