#!/usr/bin/env bash
# Unpack the real MNIST / CIFAR archives kept beside the project (../shared/data) into .data/,
# the local-archive layout keras-cnns reads with --data-dir or KERAS_CNNS_DATA_DIR.
#   bash scripts/data.sh [cifar10 cifar100 mnist]
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${KERAS_CNNS_SHARED_DATA:-../shared/data}
if [ ! -f "$SRC/unpack.py" ]; then
  echo "data.sh: no $SRC/unpack.py here; pass KERAS_CNNS_SHARED_DATA=DIR or use tensorflow-datasets" >&2
  exit 3
fi
PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
"$PY" "$SRC/unpack.py" --out .data "$@"
