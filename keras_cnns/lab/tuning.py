"""Hyperparameter search for the reproductions, with keras-tuner, through the training engine.

``keras-cnns tune EXPERIMENT`` searches, for every variant of a reproduction (or one, with
``--variant``), the hyperparameters of the experiment's ``search_space`` around the preset's
``TrainConfig``. Each trial is an ordinary ``keras_cnns.training.train`` run (same data,
preprocessing, checkpoints, records), tagged ``{"tuning": True, "trial": id}``; its score is
the best validation accuracy over its epochs, on the split held out of the training set. The
test set plays no part in the choice.

Layout under ``OUT/EXPERIMENT/`` (``OUT`` defaults to ``runs``; ``--out results`` for the
committed searches)::

    tuning/<variant>/           keras-tuner's project (oracle.json, trial_*/trial.json) plus
                                the engine's records.jsonl and checkpoints of every trial
    tuning/<variant>/search.json  what the search was started with (space and its hash,
                                preset, tuner, base config id): checked on every resume
    tuning.md, tuning.csv       every trial, regenerated from keras-tuner's trial files
    tuning.png                  the search: score per trial, and against the first hyperparameter
    tuning_best.json            the best hyperparameters of each variant, read back by
                                ``load_best`` / ``best_overrides`` (``reproduce --from-tuning``)

Re-running the same command resumes: keras-tuner reloads its oracle, finished trials are
kept, an interrupted trial is run again (the engine resumes it from its last checkpoint) and
``--trials`` is the total to reach. A search space, preset or tuner that changed since a
search started is refused unless ``--overwrite``: keras-tuner would otherwise silently reload
trials drawn from the old space.

keras-tuner (and through it Keras) is imported only when a search runs. The search's report
and its best values are ``keras_cnns.lab.tuning_report``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from keras_cnns.errors import DivergedError, UserError
from keras_cnns.lab import experiments
from keras_cnns.lab.experiments import HyperParam
from keras_cnns.lab.tuning_report import (
    OBJECTIVE,
    SEARCH_FILE,
    TUNING_DIR,
    config_fields,
    space_hash,
    write_reports,
)
from keras_cnns.storage import DEFAULT_OUT_DIR, atomic_write_text, read_json
from keras_cnns.training.record import RECORDS_FILE

TUNERS = ("random", "hyperband", "bayesian")
DEFAULT_PRESET = "quick"
DEFAULT_TRIALS = 10
TUNING_VAL_SIZE = 5000  # held out for presets that have no validation split (see with_validation)

# keras-tuner stops a search after 3 consecutive failed trials by default. A diverged trial
# is a legitimate, informative result of a learning-rate search, so the search goes on.
_NEVER_STOP_ON_FAILURES = 2**31
_HYPERBAND_FACTOR = 3


# --- trial values <-> TrainConfig ---------------------------------------------------------------


def check_space(space: Sequence[HyperParam], config) -> None:
    """Check that every hyperparameter is a config field or a keyword of the model's builder.

    Raises:
        UserError: a name is neither (the space does not fit the experiment's model).
    """
    import inspect

    from keras_cnns import registry

    fields = config_fields()
    accepted = inspect.signature(registry.get_entry(config.model).builder).parameters
    for p in space:
        if p.name in ("model", "model_kwargs", "dataset"):
            raise UserError(f"the search space may not change {p.name!r}")
        if p.name not in fields and p.name not in accepted:
            raise UserError(
                f"search-space entry {p.name!r} is neither a TrainConfig field nor an option "
                f"of model {config.model!r}"
            )


def apply_values(config, values: Mapping[str, Any]):
    """``config`` with a trial's values: config fields replaced, other names in model_kwargs.

    keras-tuner's own entries (``tuner/...``) are ignored, except ``tuner/epochs``, the
    Hyperband budget, which sets ``epochs`` (see ``with_epochs``).
    """
    fields = config_fields()
    changes: dict[str, Any] = {}
    model_kwargs = dict(config.model_kwargs)
    for key, value in values.items():
        if key.startswith("tuner/"):
            continue
        if key in fields:
            changes[key] = value
        else:
            model_kwargs[key] = value
    if dict(config.model_kwargs) != model_kwargs:
        changes["model_kwargs"] = tuple(model_kwargs.items())
    config = config.replace(**changes) if changes else config
    if "tuner/epochs" in values:
        config = with_epochs(config, int(values["tuner/epochs"]))
    return config


def with_validation(config):
    """``config`` with a validation split to score trials on.

    A preset that trains on every training image (``val_size=0``, as LeNet-5's paper recipe)
    is tuned with ``TUNING_VAL_SIZE`` images held out (at most ``train_subset``): a trial's
    score never comes from the test set.
    """
    if config.val_size > 0:
        return config
    size = TUNING_VAL_SIZE if config.train_subset is None else min(TUNING_VAL_SIZE, config.train_subset)
    return config.replace(val_size=size)


def with_epochs(config, epochs: int):
    """``config`` trained for ``epochs``, its schedule (step boundaries, warm-up) scaled to fit.

    Hyperband gives trials a fraction of the preset's epochs; scaling keeps the shape of the
    schedule rather than cutting it off before the first learning-rate drop.
    """
    if epochs == config.epochs:
        return config
    ratio = epochs / config.epochs
    boundaries = sorted({max(1, round(b * ratio)) for b in config.lr_boundaries})
    boundaries = tuple(b for b in boundaries if b < epochs)
    changes: dict[str, Any] = {"epochs": epochs, "lr_boundaries": boundaries}
    if config.warmup_epochs:
        changes["warmup_epochs"] = config.warmup_epochs * ratio
    if config.early_stopping_patience is not None:
        changes["early_stopping_patience"] = max(1, math.ceil(config.early_stopping_patience * ratio))
    return config.replace(**changes)


# --- the search ---------------------------------------------------------------------------------


def search_space(name: str) -> tuple[HyperParam, ...]:
    """The search space of an experiment (its ``Experiment.search_space``).

    Raises:
        UserError: an unknown experiment, or one with nothing to search.
    """
    space = experiments.get_experiment(name).search_space
    if not space:
        tunable = [n for n in experiments.list_experiments() if experiments.get_experiment(n).search_space]
        raise UserError(f"no search space for experiment {name!r}; tunable experiments: {', '.join(tunable)}")
    return space


def _experiment_configs(name: str, preset: str) -> dict[str, Any]:
    """``{variant: TrainConfig}`` of a reproduction's preset."""
    return experiments.preset_configs(name, preset)


def _search_dir(out_dir: str | Path, name: str, variant: str) -> Path:
    return Path(out_dir) / name / TUNING_DIR / variant


def _search_meta(name, variant, preset, tuner, space, config) -> dict[str, Any]:
    return {
        "experiment": name,
        "variant": variant,
        "preset": preset,
        "tuner": tuner,
        "objective": OBJECTIVE,
        "space": [p.to_dict() for p in space],
        "space_hash": space_hash(space),
        "base_config": config.to_dict(),
        "base_run_id": config.run_id(),
    }


def _check_resume(directory: Path, meta: Mapping[str, Any]) -> None:
    """Refuse to resume a search that was started with another space, preset or tuner."""
    path = directory / SEARCH_FILE
    old = read_json(path, fix="delete it or re-run with --overwrite")
    if old is None:
        return
    name = meta["experiment"]
    if old.get("space_hash") != meta["space_hash"]:
        raise UserError(
            f"the search space of {name} changed since the search in {directory} was started: "
            "re-run with --overwrite to start again"
        )
    if (old.get("preset"), old.get("tuner")) != (meta["preset"], meta["tuner"]):
        raise UserError(
            f"the search in {directory} was started with --preset {old.get('preset')} "
            f"--tuner {old.get('tuner')}: re-run with those, or with --overwrite to start again"
        )
    if old.get("base_run_id") != meta["base_run_id"]:
        raise UserError(
            f"the {meta['preset']} preset of {name} (variant {meta['variant']}) changed since "
            f"the search in {directory} was started: re-run with --overwrite to start again"
        )


def _make_oracle(tuner: str, *, space: Sequence[HyperParam], trials: int, max_epochs: int, seed: int):
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for p in space:
        p.declare(hp)
    common = dict(
        objective=kt.Objective(OBJECTIVE, direction="max"),
        hyperparameters=hp,
        allow_new_entries=False,
        # The oracle treats seed 0 as "no seed"; offset it so every seed is reproducible.
        seed=seed + 1,
        max_consecutive_failed_trials=_NEVER_STOP_ON_FAILURES,
    )
    if tuner == "random":
        return kt.oracles.RandomSearchOracle(max_trials=trials, **common)
    if tuner == "bayesian":
        try:
            import sklearn  # noqa: F401 - the oracle's Gaussian process needs it
        except ImportError:
            raise UserError(
                "the bayesian tuner needs scikit-learn: pip install scikit-learn "
                "(or use --tuner random or hyperband)"
            ) from None
        return kt.oracles.BayesianOptimizationOracle(max_trials=trials, **common)
    oracle = kt.oracles.HyperbandOracle(
        max_epochs=max_epochs, factor=_HYPERBAND_FACTOR, hyperband_iterations=1, **common
    )
    # Hyperband sizes its brackets from max_epochs; --trials still caps the total.
    oracle.max_trials = trials
    return oracle


def _engine_tuner_class():
    """A ``keras_tuner`` BaseTuner whose trials are ``training.train`` runs."""
    from keras_tuner.engine.base_tuner import BaseTuner

    class EngineTuner(BaseTuner):
        def __init__(self, oracle, *, run: Callable[[Any], dict], **kwargs):
            super().__init__(oracle, hypermodel=None, **kwargs)
            self._run = run

        def run_trial(self, trial, *args, **kwargs):
            return self._run(trial)

    return EngineTuner


def run_trial(trial, *, base, out_dir: Path, data_dir, tags: Mapping[str, Any], verbose: int) -> dict[str, Any]:
    """Train one trial with the engine and return its metrics for the oracle.

    Args:
        trial: the ``keras_tuner`` trial (its ``hyperparameters.values``).
        base: the preset's ``TrainConfig`` for this variant.
        out_dir: the engine's output directory (records and checkpoints).
        data_dir: passed to ``training.train``.
        tags: the experiment/preset/variant tags of every trial's record.
        verbose: 0 silent, else one line per epoch.

    Returns:
        ``{"val_accuracy": best over epochs, "best_epoch", "epochs", "wall_time"}``.

    Raises:
        keras_tuner.errors.FailedTrialError: the run diverged (the search goes on).
        keras_tuner.errors.FatalError: anything else (a bug, bad data): the search stops and
            the original error is re-raised by ``tune``.
    """
    import keras_tuner as kt

    from keras_cnns import training

    config = apply_values(base, trial.hyperparameters.values)
    try:
        record = training.train(
            config,
            out_dir=out_dir,
            data_dir=data_dir,
            tags={**tags, "tuning": True, "trial": trial.trial_id},
            verbose=2 if verbose else 0,  # one line per epoch: keras-tuner prints around it
            evaluate_test=False,  # the choice is made on the validation split alone
        )
    except DivergedError as err:
        raise kt.errors.FailedTrialError(f"diverged: {err}") from err
    except Exception as err:  # noqa: BLE001 - re-raised by tune() as itself
        raise kt.errors.FatalError(str(err)) from err
    history = [h for h in record.history if _finite(getattr(h, OBJECTIVE))]
    if not history:
        raise kt.errors.FailedTrialError(f"no finite {OBJECTIVE} in the record of run {record.run_id}")
    best = max(history, key=lambda h: getattr(h, OBJECTIVE))
    return {
        OBJECTIVE: float(getattr(best, OBJECTIVE)),
        "best_epoch": int(best.epoch),
        "epochs": len(record.history),
        "wall_time": float(record.wall_time),
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def tune(
    name: str,
    *,
    tuner: str = "random",
    trials: int = DEFAULT_TRIALS,
    preset: str = DEFAULT_PRESET,
    variant: str | None = None,
    epochs: int | None = None,
    overwrite: bool = False,
    out_dir: str | Path = DEFAULT_OUT_DIR,
    data_dir: str | Path | None = None,
    verbose: int = 1,
) -> dict[str, Any]:
    """Search the hyperparameters of an experiment's variants, then write the reports.

    Args:
        name: the experiment (one with a ``search_space``).
        tuner: ``"random"``, ``"hyperband"`` or ``"bayesian"``.
        trials: the total number of trials per variant (a resumed search runs the rest).
        preset: the preset whose configs are the starting point (``smoke``, ``quick``, ...).
        variant: one variant only (default: each variant in turn).
        epochs: train each trial this many epochs, the preset's schedule scaled to fit
            (``with_epochs``); default: the preset's epochs. The budget of a search on a CPU:
            the values found feed the preset's full-length runs (``--from-tuning``).
        overwrite: delete the previous search of each variant and start again.
        out_dir: the results root; everything goes under ``out_dir/name``.
        data_dir: the data directory passed to the engine.
        verbose: 0 silent, 1 keras-tuner's trial tables and one line per epoch.

    Returns:
        The content of ``tuning_best.json``.

    Raises:
        UserError: unknown tuner, experiment, preset or variant; a non-positive trial count;
            a search space, preset or tuner that changed since the search started (without
            ``overwrite``).
    """
    if tuner not in TUNERS:
        raise UserError(f"unknown tuner {tuner!r}; choose one of {', '.join(TUNERS)}")
    if int(trials) < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    if epochs is not None and int(epochs) < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    search_space(name)  # an unknown experiment fails before any heavy import
    configs = {v: with_validation(c) for v, c in _experiment_configs(name, preset).items()}
    if epochs is not None:
        configs = {v: with_epochs(c, int(epochs)) for v, c in configs.items()}
    if variant is not None:
        if variant not in configs:
            raise UserError(
                f"unknown variant {variant!r} of {name} (preset {preset}); "
                f"choose one of {', '.join(configs)}"
            )
        configs = {variant: configs[variant]}
    for config in configs.values():
        check_space(search_space(name), config)
    try:
        for v, config in configs.items():
            _search_variant(
                name, v, config, tuner=tuner, trials=int(trials), preset=preset,
                overwrite=overwrite, out_dir=out_dir, data_dir=data_dir, verbose=verbose,
            )
    finally:
        # Also after an interruption: the reports show every trial finished so far.
        best = write_reports(name, out_dir)
    return best


def _search_variant(name, variant, config, *, tuner, trials, preset, overwrite, out_dir, data_dir, verbose):
    space = search_space(name)
    directory = _search_dir(out_dir, name, variant)
    meta = _search_meta(name, variant, preset, tuner, space, config)
    if overwrite and directory.exists():
        shutil.rmtree(directory)
    _check_resume(directory, meta)
    created = []  # the folders this call makes, deepest first
    missing = directory
    while not missing.exists() and missing != missing.parent:
        created.append(missing)
        missing = missing.parent
    directory.mkdir(parents=True, exist_ok=True)
    try:
        _run_search(name, variant, config, directory, meta, tuner=tuner, trials=trials, preset=preset,
                    data_dir=data_dir, verbose=verbose)  # fmt: skip
    except UserError:
        # A new search whose first trial could not start (data that cannot be read, a bad
        # option) leaves nothing behind: no trial has a record yet, so nothing is lost.
        if created and not (directory / RECORDS_FILE).exists():
            shutil.rmtree(directory)
            for folder in created[1:]:
                try:
                    folder.rmdir()
                except OSError:
                    break
        raise


def _run_search(name, variant, config, directory, meta, *, tuner, trials, preset, data_dir, verbose):
    import keras_tuner as kt

    space = search_space(name)
    if not (directory / SEARCH_FILE).exists():
        atomic_write_text(directory / SEARCH_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")

    oracle = _make_oracle(tuner, space=space, trials=trials, max_epochs=config.epochs, seed=config.seed)
    tags = {"experiment": name, "preset": preset, "variant": variant}

    def run(trial):
        return run_trial(trial, base=config, out_dir=directory, data_dir=data_dir, tags=tags, verbose=verbose)

    # keras-tuner announces "Reloading Tuner from ..." on stdout; silent when asked to be.
    with contextlib.redirect_stdout(io.StringIO()) if not verbose else contextlib.nullcontext():
        engine_tuner = _engine_tuner_class()(
            oracle, run=run, directory=str(directory.parent), project_name=directory.name, overwrite=False
        )
    # The oracle's max_trials is a constructor argument, not reloaded state: a resumed search
    # takes this run's --trials as the new total.
    engine_tuner.oracle.max_trials = trials
    engine_tuner.oracle.verbose = verbose
    # keras-tuner prints the traceback of every failed trial while its DEBUG flag is on (the
    # default); a diverged trial is an expected outcome, already reported by the engine and
    # kept in the trial's message. Restored afterwards.
    from keras_tuner.src import config as kt_config

    debug, kt_config.DEBUG = kt_config.DEBUG, False
    try:
        engine_tuner.search()
    except kt.errors.FatalError as err:
        # Report the engine's own error (a UserError prints as one line), not keras-tuner's.
        if err.__cause__ is not None:
            raise err.__cause__ from None
        raise
    finally:
        kt_config.DEBUG = debug


# --- files --------------------------------------------------------------------------------------


