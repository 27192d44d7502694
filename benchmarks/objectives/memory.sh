#!/usr/bin/env bash
# Memory of every local objective: measured on the bench's default setting (ResNet-20, 3x32x32,
# batch 64, K=4, CPU) and estimated with fake tensors on the paper's ResNet-110, 96x96, batch 64, K=8.
# usage: benchmarks/objectives/memory.sh [python]   -> measured.json, estimated.json, *.png here
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${1:-python}"
methods="e2e,sequential-infopro,sequential-infopro-c,sequential-dgl,sequential-predsim"
nice -n 15 "$py" -m edgetrgl bench --estimate --model resnet110 --image-size 96 --modules 8 --compare "$methods" \
  --json "$here/estimated.json" --plot "$here/estimated.png"
nice -n 15 "$py" -m edgetrgl bench --compare "$methods" --json "$here/measured.json" --plot "$here/measured.png"
