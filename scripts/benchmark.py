"""Training throughput benchmark: ``keras-cnns benchmark`` as a script (see keras_cnns/benchmark/).

python scripts/benchmark.py --cpu-sizes --out /tmp/bench      # a one-minute check on a CPU
python scripts/benchmark.py --gpu-sizes --backends jax         # the GPU run (see the package docstring)
"""

import sys
from pathlib import Path

# Runs from a checkout without an install (say, a GPU machine with only Keras and JAX): the
# package is beside this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_cnns.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
