#!/usr/bin/env bash
# The main job: set up .venv (first time only) and re-run a reproduction.
#   bash scripts/run.sh                                   LeNet-5 on MNIST, smoke preset (offline)
#   bash scripts/run.sh plain-vs-residual --preset quick  any experiment, any preset
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/keras-cnns ] || bash scripts/setup.sh
if [ $# -eq 0 ]; then set -- lenet5-mnist --preset smoke; fi
exec .venv/bin/keras-cnns reproduce "$@"
