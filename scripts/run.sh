#!/usr/bin/env bash
# The main job: set up .venv (first time only), then train a reproduction you can watch, one
# line per epoch, ending with its paper-vs-ours table. Like every keras-cnns command, it writes
# to runs/ (git-ignored), so the committed records in results/ stay as they are; re-running a
# finished command skips its runs (delete runs/ to train again).
#   bash scripts/run.sh                                   LeNet-5 on MNIST, smoke preset (offline)
#   bash scripts/run.sh plain-vs-residual --preset quick  any experiment, any preset
#   bash scripts/run.sh lenet5-mnist --out results        add to the committed records instead
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/keras-cnns ] || bash scripts/setup.sh
if [ $# -eq 0 ]; then set -- lenet5-mnist --preset smoke; fi
exec .venv/bin/keras-cnns reproduce "$@"
