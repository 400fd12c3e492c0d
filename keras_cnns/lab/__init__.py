"""The lab: what re-runs the papers' experiments and reports them beside the papers' numbers.

* ``experiments``: an experiment as data (``Experiment``, ``Preset``, ``Ordering``, ...), with its
  search space and each preset's measured runtime; the registry of reproductions.
* ``runner``: plans an experiment's runs and trains the ones not done (``run_experiment``).
* ``tuning``: keras-tuner searches on the validation split, through the same engine.
* ``runs``: run records -> one row per run, and statistics over seeds.
* ``claims``: the paper's claims checked on the rows, each read against its noise.
* ``report``: the pages: tables, verdicts and plots, the index and the README's results block.
* ``tuning_report``: a search's table, plot and best values.
* ``writer``: the one markdown-table, page and plot writer (reports, searches, benchmarks).

The library (``keras_cnns.models``, ``layers``, ``data``, ``training``, ...) never imports the
lab; the reproductions themselves live in ``reproductions/``, one module per paper claim.
"""
