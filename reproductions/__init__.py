"""The reproductions: one module per paper claim, each holding one ``EXPERIMENT``.

A module is data only: a header docstring (paper, table or figure, claim, the paper's numbers,
what is measured, runtimes, the command) and an ``keras_cnns.experiments.Experiment`` whose
``paper`` preset is the paper's recipe and whose ``quick`` and ``smoke`` presets are derived
from it with ``dataclasses.replace``. Nothing runs at import; ``keras-cnns reproduce NAME``
(``keras_cnns.reproduce.run_experiment``) runs them.
"""
