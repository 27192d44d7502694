#!/usr/bin/env bash
# GPU validation in one command (see benchmarks/gpu/run.py for the steps and options):
#   bash benchmarks/gpu/run.sh                         # a CUDA GPU: about 5 minutes on an H100
#   bash benchmarks/gpu/run.sh --device cpu --quick    # tiny, on the CPU: the CI run
# Python: $PYTHON if set, else .venv/bin/python if it exists, else python3. No network, no installs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# this checkout's edgetrgl wins over any installed copy, in this process and in every child
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export EDGETRGL_GPU_BENCH_WRAPPER="benchmarks/gpu/run.sh"
exec "$PYTHON" benchmarks/gpu/run.py "$@"
