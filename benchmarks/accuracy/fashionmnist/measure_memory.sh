#!/usr/bin/env bash
# The study's memory column checked by measurement: one training step of each model at the study's
# shape (1x28x28, batch 128), e2e beside the module-wise regimes, in fresh processes (edgetrgl bench:
# MemTracker's tensor peak and the process's RSS above its baseline). A few minutes on one core.
# report.py puts the two side by side (results/tables.md, "Estimate against measurement").
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=benchmarks/accuracy/fashionmnist/results/measured
mkdir -p "$out"
run() {  # model K: the planner's estimate (fake tensors, seconds), then the measurement
    local shape=(--model "$1" --modules "$2" --image-size 28 --in-channels 1 --num-classes 10 --batch-size 128 --compare e2e)
    python -m edgetrgl bench "${shape[@]}" --estimate --json "$out/$1_k$2.estimate.json" >/dev/null
    python -m edgetrgl bench "${shape[@]}" --steps "${STEPS:-2}" --threads 1 --json "$out/$1_k$2.json"
}
run resnet20 4
run resnet20 9   # block-wise: one block per module
for model in resnet56 vgg11_bn vit_tiny; do run "$model" 4; done
