#!/usr/bin/env bash
# GPU validation in one command, at most 8 minutes (see benchmarks/gpu/run.py for the steps and options):
#   bash benchmarks/gpu/run.sh                         # a CUDA GPU: 440 s (--budget-s), H100/H200
#   bash benchmarks/gpu/run.sh --device cpu --quick    # every step at a tiny size, on the CPU (tests/test_gpu_bench.py)
# Python: $PYTHON if set, else .venv/bin/python if it exists, else python3. No network, no installs
# (nvidia-ml-py, psutil, rich and pytest are expected; matplotlib is optional: without it no chart).
#
# On a lent GPU machine (the `run` tool: a copy of the working tree, tracked files and untracked ones
# that git does not ignore, results back from $OUT):
#   1. here, first, so the copy carries the Fashion-MNIST files for the accuracy step (30 MB):
#        mkdir -p data-local && cp -r /usr/share/datasets/fashion-mnist data-local/
#      (data-local/ is untracked and not ignored: keep it out of commits; $FASHION_MNIST_DIR overrides it)
#   2. run, timeout_s 560 (440 s of steps, then the tests' tail and the writing):
#        bash benchmarks/gpu/run.sh --out "$OUT/results"
#   3. copy what came back into benchmarks/results/: gpu-<name>.json/.md, gpu-<name>-pareto.png,
#      step_time_model_cuda-<name>.json/.md, gpu-<name>-accuracy/; and, to ship the fitted rates,
#        cp <files_at>/results/gpu-<name>-cuda_rates.json edgetrgl/planning/cuda_rates.json
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# this checkout's edgetrgl wins over any installed copy, in this process and in every child
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export EDGETRGL_GPU_BENCH_WRAPPER="benchmarks/gpu/run.sh"
exec "$PYTHON" benchmarks/gpu/run.py "$@"
