"""The worker protocol only: ``python -m keras_cnns.benchmark --worker SPEC.json``.

``keras_cnns.benchmark.runner`` starts one such process per group of cases; users run
``keras-cnns benchmark``.
"""

import sys

from keras_cnns.benchmark.runner import worker_main

if len(sys.argv) != 3 or sys.argv[1] != "--worker":
    sys.exit("usage: python -m keras_cnns.benchmark --worker SPEC.json (use 'keras-cnns benchmark')")
sys.exit(worker_main(sys.argv[2]))
