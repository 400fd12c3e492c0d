#!/usr/bin/env bash
# The test command: install (if needed), unpack the real data, run the whole suite on
# TensorFlow (the default backend) and the smoke subset on JAX and PyTorch.
#   bash scripts/test.sh               everything CI runs
#   BACKENDS=tensorflow bash scripts/test.sh     TensorFlow only
set -euo pipefail
cd "$(dirname "$0")/.."
BACKENDS=${BACKENDS:-"tensorflow jax torch"}
BACKENDS="$BACKENDS" bash scripts/setup.sh
. .venv/bin/activate
if [ -z "${KERAS_CNNS_DATA_DIR:-}" ]; then
  bash scripts/data.sh
  export KERAS_CNNS_DATA_DIR=$PWD/.data
fi
export KERAS_CNNS_REQUIRE_DATA=1   # a test that needs the real data fails instead of skipping
ruff check keras_cnns reproductions tests scripts
status=0
for b in $BACKENDS; do
  echo "== tests on the $b backend"
  if [ "$b" = tensorflow ]; then
    KERAS_BACKEND=$b python -m pytest -q -p no:cacheprovider "$@" || status=1
  else
    KERAS_BACKEND=$b python -m pytest -q -p no:cacheprovider -m "smoke and not slow and not gpu" "$@" || status=1
  fi
done
exit $status
