"""Hyperparameter search for the reproductions, with keras-tuner, through the training engine.

``keras-cnns tune EXPERIMENT`` searches, for every variant of a reproduction (or one, with
``--variant``), the hyperparameters of ``SEARCH_SPACES[EXPERIMENT]`` around the preset's
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

keras-tuner (and through it Keras) is imported only when a search runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_cnns import experiments
from keras_cnns.errors import DataError, DivergedError, UserError
from keras_cnns.records import (
    DEFAULT_OUT_DIR,
    atomic_write_bytes,
    atomic_write_text,
    read_records,
    set_aside_torn_tail,
)

TUNERS = ("random", "hyperband", "bayesian")
KINDS = ("float", "int", "choice")
OBJECTIVE = "val_accuracy"  # maximised; the held-out validation split, never the test set
DEFAULT_PRESET = "quick"
DEFAULT_TRIALS = 10
TUNING_VAL_SIZE = 5000  # held out for presets that have no validation split (see with_validation)

TUNING_DIR = "tuning"
SEARCH_FILE = "search.json"
REPORT_MD = experiments.TUNING_REPORT_FILE
REPORT_CSV = "tuning.csv"
BEST_JSON = "tuning_best.json"
REPORT_PNG = "tuning.png"

# keras-tuner stops a search after 3 consecutive failed trials by default. A diverged trial
# is a legitimate, informative result of a learning-rate search, so the search goes on.
_NEVER_STOP_ON_FAILURES = 2**31
_HYPERBAND_FACTOR = 3


@dataclass(frozen=True)
class HyperParam:
    """One searched hyperparameter.

    Attributes:
        name: a ``TrainConfig`` field (``learning_rate``) or a model builder keyword that goes
            into ``TrainConfig.model_kwargs`` (``dropout``).
        kind: ``"float"``, ``"int"`` or ``"choice"``.
        low: smallest value (float and int).
        high: largest value (float and int).
        choices: the values to choose from (choice).
        log: sample uniformly in log space (float and int; needs ``low > 0``).
    """

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    log: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "choice":
            if not self.choices or self.low is not None or self.high is not None or self.log:
                raise ValueError(f"{self.name}: a choice takes choices only")
            if len({type(c) for c in self.choices}) != 1:
                raise ValueError(f"{self.name}: choices must share one type")
        else:
            if self.low is None or self.high is None or not self.low < self.high or self.choices:
                raise ValueError(f"{self.name}: a {self.kind} needs low < high and no choices")
            if self.log and self.low <= 0:
                raise ValueError(f"{self.name}: log sampling needs low > 0")
            if self.kind == "int" and (int(self.low) != self.low or int(self.high) != self.high):
                raise ValueError(f"{self.name}: an int range needs integer bounds")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description (also what the space hash is computed from)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "choices": list(self.choices),
            "log": self.log,
        }

    def describe(self) -> str:
        """One phrase for the report, for example ``learning_rate: float in [0.001, 0.3], log``."""
        if self.kind == "choice":
            text = f"{self.name}: one of {', '.join(str(c) for c in self.choices)}"
        else:
            text = f"{self.name}: {self.kind} in [{self.low:g}, {self.high:g}]"
            text += ", log" if self.log else ""
        return text

    def declare(self, hp) -> None:
        """Declare this hyperparameter on a ``keras_tuner.HyperParameters``."""
        sampling = "log" if self.log else "linear"
        if self.kind == "float":
            hp.Float(self.name, float(self.low), float(self.high), sampling=sampling)
        elif self.kind == "int":
            hp.Int(self.name, int(self.low), int(self.high), sampling=sampling)
        else:
            hp.Choice(self.name, list(self.choices))


def _lr(low: float, high: float) -> HyperParam:
    return HyperParam("learning_rate", "float", low, high, log=True)


# The L2 convention of TrainConfig: the papers' "weight decay 1e-4" is l2 5e-5 in Keras.
_RESNET_SPACE = (
    _lr(0.01, 0.5),
    HyperParam("weight_decay", "float", 1e-5, 1e-3, log=True),
)

# The searched hyperparameters of each reproduction. Ranges bracket the papers' recipes
# (papers.md) by about an order of magnitude each way; what the papers fix and the claim
# depends on (architecture, dropout placement, epochs, augmentation) is not searched.
SEARCH_SPACES: dict[str, tuple[HyperParam, ...]] = {
    # Srivastava et al. 2014: momentum 0.95; lr and schedule unstated. The dropout placement
    # is what the variants compare, and the rates are fixed in the builder's spec (Appendix
    # B.2), not builder options, so neither is searched.
    "dropout-cifar": (
        _lr(1e-3, 0.1),
        HyperParam("momentum", "float", 0.8, 0.99),
    ),
    # Krizhevsky et al. 2012, Fig. 1: "the learning rates for each network were chosen
    # independently": one search per activation (variant).
    "relu-vs-tanh": (_lr(1e-3, 0.3),),
    # He et al. 2016: lr 0.1, weight decay 1e-4 (l2 5e-5).
    "plain-vs-residual": _RESNET_SPACE,
    # Huang et al. 2016: the same recipe as the ResNet baseline.
    "stochastic-depth": _RESNET_SPACE,
    # LeCun et al. 1998 used SDLM; plain SGD or Adam stand in for it.
    "lenet5-mnist": (
        _lr(1e-4, 0.1),
        HyperParam("optimizer", "choice", choices=("sgd", "adam")),
    ),
    # He et al. 2016 / Goyal et al. 2017: lr 0.1 at batch 256, weight decay 1e-4 (l2 5e-5).
    "resnet50-imagenet": _RESNET_SPACE,
}


def search_space(name: str) -> tuple[HyperParam, ...]:
    """The search space of an experiment.

    Raises:
        UserError: no search space is declared for ``name``.
    """
    if name not in SEARCH_SPACES:
        experiments.get_experiment(name)  # an unknown name: the error names the closest
        raise UserError(
            f"no search space for experiment {name!r}; tunable experiments: "
            f"{', '.join(sorted(SEARCH_SPACES))}"
        )
    return SEARCH_SPACES[name]


def space_hash(space: Sequence[HyperParam]) -> str:
    """A short stable hash of a search space: any change to a range or choice changes it."""
    text = json.dumps([p.to_dict() for p in space], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- trial values <-> TrainConfig ---------------------------------------------------------------


def _config_fields() -> set[str]:
    from keras_cnns.experiment import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def check_space(space: Sequence[HyperParam], config) -> None:
    """Check that every hyperparameter is a config field or a keyword of the model's builder.

    Raises:
        UserError: a name is neither (the space does not fit the experiment's model).
    """
    import inspect

    from keras_cnns import registry

    fields = _config_fields()
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
    fields = _config_fields()
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


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def values_to_overrides(values: Mapping[str, Any]) -> list[str]:
    """``key=value`` strings for ``TrainConfig.with_overrides``.

    Config fields are written as ``name=value``; model builder options as
    ``model_kwargs.name=value``.
    """
    fields = _config_fields()
    out = []
    for key, value in values.items():
        if key.startswith("tuner/"):
            continue
        prefix = "" if key in fields else "model_kwargs."
        out.append(f"{prefix}{key}={_format_value(value)}")
    return out


# --- the search ---------------------------------------------------------------------------------


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
    old = _read_json(path)
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


def run_trial(trial, *, base, out_dir: Path, data_dir, tags: Mapping[str, Any], verbose: int) -> dict:
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
    history = [h for h in record["history"] if _finite(h.get(OBJECTIVE))]
    if not history:
        raise kt.errors.FailedTrialError(f"no finite {OBJECTIVE} in the record of run {record['run_id']}")
    best = max(history, key=lambda h: h[OBJECTIVE])
    return {
        OBJECTIVE: float(best[OBJECTIVE]),
        "best_epoch": int(best["epoch"]),
        "epochs": len(record["history"]),
        "wall_time": float(record.get("wall_time") or 0.0),
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
        name: the experiment (a key of ``SEARCH_SPACES`` and of the reproductions).
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
        if created and not (directory / experiments.RECORDS_FILE).exists():
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


# --- reports ------------------------------------------------------------------------------------


def _load_trials(directory: Path) -> list:
    """keras-tuner's trials of one search, from its own trial files."""
    from keras_tuner.engine.trial import Trial

    return [Trial.load(str(p)) for p in sorted(directory.glob("trial_*/trial.json"))]


def _engine_records(directory: Path) -> dict[str, dict]:
    """The engine's last record of each trial (diverged trials report nothing to keras-tuner)."""
    path = directory / "records.jsonl"
    if not path.exists():
        return {}
    set_aside_torn_tail(path)  # a trial killed mid-append: the report goes on
    return {str(r["tags"].get("trial")): r for r in read_records(path, tuning=True)}


def trial_number(trial_id: str) -> int:
    """The number keras-tuner shows a trial under (``Search: Running Trial #N``): its id + 1."""
    return int(trial_id) + 1


def _trial_rows(directory: Path, meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per trial of a search, best score first (failed and unfinished trials last)."""
    names = [p["name"] for p in meta["space"]]
    records = _engine_records(directory)
    rows = []
    for trial in _load_trials(directory):
        values = trial.hyperparameters.values
        status = str(trial.status).lower()
        # Completed trials report to keras-tuner; the engine's record covers diverged ones.
        record = records.get(trial.trial_id)
        info = {"epochs": len(record["history"]), "wall_time": record.get("wall_time")} if record else {}
        for key in ("epochs", "wall_time", "best_epoch"):
            if trial.metrics.exists(key):
                info[key] = trial.metrics.get_last_value(key)
        epochs = info.get("epochs", values.get("tuner/epochs"))
        rows.append(
            {
                "variant": meta["variant"],
                "trial": trial_number(trial.trial_id),
                **{n: values.get(n) for n in names},
                OBJECTIVE: trial.score if status == "completed" else None,
                "best_epoch": None if "best_epoch" not in info else int(info["best_epoch"]),
                "epochs": None if epochs is None else int(epochs),
                "time_s": None if info.get("wall_time") is None else round(info["wall_time"], 1),
                "status": _status(status, trial.message),
                "preset": meta["preset"],
                "tuner": meta["tuner"],
                "space_hash": meta["space_hash"],
            }
        )
    rows.sort(key=lambda r: (r[OBJECTIVE] is None, -(r[OBJECTIVE] or 0.0), int(r["trial"])))
    for i, row in enumerate(rows):
        row["best"] = i == 0 and row[OBJECTIVE] is not None
    return rows


def _status(status: str, message: str | None) -> str:
    if status == "failed" and message and "diverged" in message:
        return "diverged"
    if status == "running":
        return "unfinished"  # interrupted (or running in another process): resumed next time
    return status


def _searches(out_dir: str | Path, name: str) -> list[tuple[Path, dict]]:
    root = Path(out_dir) / name / TUNING_DIR
    found = []
    for path in sorted(root.glob(f"*/{SEARCH_FILE}")):
        meta = _read_json(path)
        if meta is not None:
            found.append((path.parent, meta))
    return found


def report_paths(name: str, out_dir: str | Path = DEFAULT_OUT_DIR) -> str:
    """The generated files of a search, for messages."""
    exp_dir = Path(out_dir) / name
    return ", ".join(str(exp_dir / f) for f in (REPORT_MD, REPORT_CSV, REPORT_PNG, BEST_JSON))


def has_search(name: str, out_dir: str | Path = DEFAULT_OUT_DIR) -> bool:
    """Whether ``keras-cnns tune NAME`` has started a search under ``out_dir``."""
    return bool(_searches(out_dir, name))


def write_reports(name: str, out_dir: str | Path = DEFAULT_OUT_DIR) -> dict[str, Any]:
    """Regenerate tuning.md, tuning.csv and tuning_best.json from keras-tuner's trial files.

    Args:
        name: the experiment.
        out_dir: the results root.

    Returns:
        The content written to ``tuning_best.json``.
    """
    import pandas as pd

    exp_dir = Path(out_dir) / name
    best: dict[str, Any] = {"experiment": name, "objective": OBJECTIVE, "variants": {}}
    sections, frames, spaces = [], [], []
    for directory, meta in _searches(out_dir, name):
        names = [p["name"] for p in meta["space"]]
        rows = _trial_rows(directory, meta)
        columns = ["variant", "trial", "best", *names, OBJECTIVE, "best_epoch", "epochs", "time_s",
                   "status", "preset", "tuner", "space_hash"]  # fmt: skip
        frame = pd.DataFrame(rows, columns=columns)
        frames.append(frame)
        spaces.append(meta["space"])
        sections.append(_markdown_section(meta, frame))
        if rows and rows[0]["best"]:
            top = rows[0]
            values = {n: top[n] for n in names if top[n] is not None}
            best["variants"][meta["variant"]] = {
                "trial": top["trial"],
                OBJECTIVE: top[OBJECTIVE],
                "best_epoch": top["best_epoch"],
                "epochs": top["epochs"],
                "hyperparameters": values,
                "overrides": values_to_overrides(values),
                "preset": meta["preset"],
                "tuner": meta["tuner"],
                "space_hash": meta["space_hash"],
                "trials": len(rows),
            }
    if not frames:
        return best
    head = (
        f"# Hyperparameter search: {name}\n\n"
        f"Generated by `keras-cnns tune {name}` from keras-tuner's trial files under "
        f"`{exp_dir / TUNING_DIR}`; do not edit. Score: the best `{OBJECTIVE}` over a trial's "
        "epochs, on the validation split held out of the training set; the test set plays no "
        f"part. `keras-cnns reproduce {name} --from-tuning` trains each variant with its best "
        f"values ({BEST_JSON}). Trials are numbered as keras-tuner announces them (`Running Trial "
        f"#N`); trial N's files are its `trial_<N-1>/`.\n\n![the search]({REPORT_PNG})\n"
    )
    atomic_write_bytes(exp_dir / REPORT_PNG, plot_search(name, frames, spaces))
    atomic_write_text(exp_dir / REPORT_MD, "\n".join([head, *sections]))
    atomic_write_text(exp_dir / REPORT_CSV, pd.concat(frames, ignore_index=True).to_csv(index=False))
    atomic_write_text(exp_dir / BEST_JSON, json.dumps(best, indent=2, sort_keys=True) + "\n")
    return best


def plot_search(name: str, frames: Sequence[Any], spaces: Sequence[Sequence[Mapping[str, Any]]]) -> bytes:
    """A PNG of a search: each variant's score per trial (with its running best), and the
    score against the space's first hyperparameter (log axis for a log-sampled one).

    The score is drawn as validation error, ``100 * (1 - val_accuracy)`` %, on a log axis, so
    that a 1.3% against 1.5% difference stays visible beside a trial that did not learn.
    Failed, diverged and unfinished trials have no score and are left out of both panels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    by_trial, by_value = fig.subplots(1, 2)
    main = spaces[0][0] if spaces and spaces[0] else None
    for i, (frame, space) in enumerate(zip(frames, spaces, strict=True)):
        done = frame[frame[OBJECTIVE].notna()].copy()
        if done.empty:
            continue
        variant, colour = str(frame["variant"].iloc[0]), f"C{i}"
        done["order"] = done["trial"].astype(int)
        done = done.sort_values("order")
        error = 100.0 * (1.0 - done[OBJECTIVE].astype(float))
        by_trial.plot(done["order"], error, "o", color=colour, label=f"{variant} trials")
        by_trial.plot(done["order"], error.cummin(), "-", drawstyle="steps-post", color=colour,
                      linewidth=1.0, label=f"{variant} best so far")  # fmt: skip
        first = space[0]["name"] if space else None
        if first is not None and first in done and main is not None and first == main["name"]:
            if main["kind"] == "choice":
                labels = [str(c) for c in main["choices"]]
                xs = [labels.index(str(v)) for v in done[first]]
                by_value.set_xticks(range(len(labels)), labels)
            else:
                xs = list(done[first])
            # A second, categorical hyperparameter (the optimizer) gets one marker per value.
            second = space[1] if len(space) > 1 and space[1]["kind"] == "choice" else None
            groups = [(None, [True] * len(done))] if second is None else [
                (c, [str(v) == str(c) for v in done[second["name"]]]) for c in second["choices"]
            ]  # fmt: skip
            for k, (choice, mask) in enumerate(groups):
                picked = [(x, y) for x, y, m in zip(xs, error, mask, strict=True) if m]
                if picked:
                    label = variant if second is None else f"{variant}, {second['name']}={choice}"
                    by_value.plot(*zip(*picked, strict=True), "osD^v"[k % 5], color=colour, label=label)
    by_trial.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_trial.set_xlabel("trial")
    by_trial.set_title("score per trial", fontsize=10)
    if main is not None:
        if main.get("log") and main["kind"] != "choice":
            by_value.set_xscale("log")
        by_value.set_xlabel(main["name"])
    by_value.set_title(f"score against {main['name'] if main else 'the hyperparameter'}", fontsize=10)
    for ax in (by_trial, by_value):
        ax.set_yscale("log")
        ax.set_ylabel("validation error % (1 - val_accuracy), log scale")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{name}: keras-tuner search", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _markdown_section(meta: Mapping[str, Any], frame) -> str:
    space = [HyperParam(**{**p, "choices": tuple(p["choices"])}) for p in meta["space"]]
    done = int((frame["status"] == "completed").sum())
    text = (
        f"## {meta['variant']}\n\n"
        f"Preset `{meta['preset']}`, tuner `{meta['tuner']}`, {len(frame)} trials ({done} "
        f"completed), search space `{meta['space_hash']}`: "
        + "; ".join(p.describe() for p in space)
        + f". Validation split: {meta['base_config']['val_size']} images held out of the "
        f"training set. Each trial trains up to {meta['base_config']['epochs']} epochs.\n"
    )
    if meta["tuner"] == "hyperband":
        text += (
            "Hyperband budgets are epochs; each trial trains from scratch for its budget (the "
            "preset's schedule scaled to fit), where keras-tuner's own Hyperband would continue "
            "the previous round's weights.\n"
        )
    if frame.empty:
        return text + "\nNo trials yet.\n"
    shown = frame.drop(columns=["variant", "preset", "tuner", "space_hash"])
    shown["best"] = ["**best**" if b else "" for b in shown["best"]]
    shown = shown.rename(columns={"time_s": "time (s)", "best_epoch": "best epoch"})
    return text + "\n" + _markdown_table(shown) + "\n"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _markdown_table(frame) -> str:
    """A GitHub markdown table (pandas' to_markdown needs tabulate, which we do not depend on)."""
    lines = [
        "| " + " | ".join(str(c) for c in frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    for row in frame.astype(object).itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


# --- feeding the results back -------------------------------------------------------------------


def load_best(name: str, out_dir: str | Path = DEFAULT_OUT_DIR) -> dict[str, Any] | None:
    """The content of ``out_dir/name/tuning_best.json``, or None if no search has finished a trial.

    Each variant's entry carries ``stale: True`` when the current search space of ``name``
    differs from the one its values were found in.

    Raises:
        DataError: the file exists but is not valid JSON.
    """
    best = _read_json(Path(out_dir) / name / BEST_JSON)
    if best is None:
        return None
    current = space_hash(SEARCH_SPACES[name]) if name in SEARCH_SPACES else None
    for entry in best.get("variants", {}).values():
        entry["stale"] = entry.get("space_hash") != current
    return best


def best_overrides(name: str, out_dir: str | Path = DEFAULT_OUT_DIR, *, variant: str | None = None) -> list[str]:
    """The best values of a search as ``key=value`` strings for ``TrainConfig.with_overrides``.

    Args:
        name: the experiment.
        out_dir: the results root the search wrote to.
        variant: the variant whose values to use; may be left out when one variant was tuned.

    Raises:
        UserError: no search results for ``name`` (or for ``variant``), or several variants
            were tuned and ``variant`` was not given.
    """
    best = load_best(name, out_dir)
    path = Path(out_dir) / name / BEST_JSON
    if not best or not best.get("variants"):
        raise UserError(f"no tuning results in {path}: run 'keras-cnns tune {name}' first")
    variants = best["variants"]
    if variant is None:
        if len(variants) != 1:
            raise UserError(
                f"{path} holds tuned values for variants {', '.join(sorted(variants))}: name one"
            )
        variant = next(iter(variants))
    if variant not in variants:
        raise UserError(
            f"no tuned values for variant {variant!r} of {name} in {path}: run "
            f"'keras-cnns tune {name} --variant {variant}'"
        )
    return list(variants[variant]["overrides"])


# --- files --------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is damaged ({err}): delete it or re-run with --overwrite") from None
