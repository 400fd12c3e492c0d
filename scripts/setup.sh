#!/usr/bin/env bash
# Create .venv and install keras-cnns with its test tools, as the README says.
#   bash scripts/setup.sh            TensorFlow (the CPU default) only
#   BACKENDS="jax torch" bash scripts/setup.sh   also the JAX and PyTorch CPU builds
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip >/dev/null 2>&1 || true
pip install -q -e ".[dev]"
for b in ${BACKENDS:-}; do
  case "$b" in
    jax) pip install -q "jax[cpu]" ;;
    # The CPU build; a bare 'torch' pulls gigabytes of CUDA libraries.
    torch) pip install -q "torch==2.13.0" || pip install -q torch --index-url https://download.pytorch.org/whl/cpu ;;
    tensorflow) ;;
    *) echo "setup.sh: unknown backend '$b' (choose from tensorflow, jax, torch)" >&2; exit 2 ;;
  esac
done
echo "setup.sh: .venv ready (backends: tensorflow ${BACKENDS:-})"
