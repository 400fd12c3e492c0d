"""The reproductions: one module per paper claim, each holding one ``EXPERIMENT``.

A module is data only: a header docstring (paper, table or figure, claim, the paper's numbers,
what is measured, the command) and a ``keras_cnns.lab.experiments.Experiment`` whose ``paper``
preset is the paper's recipe and whose other presets are derived from it with
``dataclasses.replace``; each preset's measured runtime is its ``runtime`` field, shown in the
report. Nothing runs at import; ``keras-cnns reproduce NAME``
(``keras_cnns.lab.runner.run_experiment``) runs them.
"""
