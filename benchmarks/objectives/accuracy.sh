#!/usr/bin/env bash
# Accuracy of every local objective on the default setting (ResNet-20, bundled MNIST sample,
# sequential, K=4), one epoch per module, seeds 0,1,2. One run at a time, under nice; each run
# appends one row to results.csv, and a row already there is not run again (a stopped study resumes).
# usage: benchmarks/objectives/accuracy.sh [python]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-python}"
out="$here/results.csv"
[ -f "$out" ] || echo "method,seed,best_module,best_accuracy,last_accuracy,wall_time_s,transport" > "$out"
for seed in 0 1 2; do
  for method in trgl vangl infopro infopro-c dgl predsim; do
    grep -q "^$method,$seed," "$out" && continue
    run="$(mktemp -d)/run"
    nice -n 15 "$py" -m edgetrgl train --method "$method" --epochs 1 --seed "$seed" --out "$run" --quiet
    "$py" - "$run/summary.json" "$method" "$seed" >> "$out" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]},{sys.argv[3]},{s['best_module']['module']},{s['best_module']['test_accuracy']:.4f},"
      f"{s['last_module']['test_accuracy']:.4f},{s['wall_time_s']:.1f},{s['objective']['transport']}")
PY
    rm -rf "$(dirname "$run")"
  done
done
