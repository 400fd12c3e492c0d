"""Reproductions as data, and the one loop that runs them.

An ``Experiment`` is what a paper claims and how it is re-run: its variants as
``TrainConfig``\\ s for the ``paper`` preset (the paper's recipe, with every unstated choice
written down as a deviation), the paper's numbers, the metric compared, and two smaller
presets derived from the paper's with ``dataclasses.replace``: ``quick`` (one GPU, about ten
minutes of training) and ``smoke`` (CPU, under two minutes, a real-data subset).

``run_experiment`` trains every variant x dataset x seed through
``keras_cnns.training.train`` into ``<out>/<experiment>/`` (records in ``records.jsonl``,
checkpoints beside them) and then regenerates that experiment's report
(``keras_cnns.results``). A run whose config (``TrainConfig.run_id``) already has a completed
record with the same tags is skipped, so re-running a command resumes it.

A ``Sweep`` makes a small search part of an experiment (Krizhevsky et al. tuned each net's
learning rate for speed): each value is trained first, the best is chosen from the records
(``keras_cnns.results.pick_sweep``), and the main runs use it.

The reproductions themselves live in ``reproductions/``, one module per paper claim, each
holding one ``EXPERIMENT``. Keras is imported only when a run starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from keras_cnns.errors import DivergedError, UserError
from keras_cnns.experiment import TrainConfig

# From the most to the least complete: the paper's recipe, one GPU for about ten minutes, two CPU
# cores for a few hours (the claim's regime, scaled down), a CPU check of the pipeline.
PRESETS = ("paper", "quick", "cpu", "smoke")
# Every experiment has these; "quick" and "cpu" may be left out where they make no sense (a
# paper recipe that already fits on a CPU, an ImageNet run).
REQUIRED_PRESETS = ("paper", "smoke")
METRICS = ("test_error", "epochs_to_train_error")
QUANTITIES = ("metric", "final_train_error", "seconds_to_target", "epoch_time")
RECORDS_FILE = "records.jsonl"

# Experiment name -> the module that defines its EXPERIMENT (imported on first use).
EXPERIMENTS: dict[str, str] = {
    "dropout-cifar": "reproductions.dropout_cifar",
    "relu-vs-tanh": "reproductions.relu_vs_tanh",
    "plain-vs-residual": "reproductions.plain_vs_residual",
    "stochastic-depth": "reproductions.stochastic_depth",
    "lenet5-mnist": "reproductions.lenet5_mnist",
    "resnet50-imagenet": "reproductions.resnet50_imagenet",
}

# The tags that identify a run in the records: two records with the same values and run_id
# are the same run. ("host" is informative only.)
MATCH_TAGS = ("experiment", "preset", "variant", "dataset", "seed", "phase", "overrides", "tuned", "sweep_value")


@dataclass(frozen=True)
class Sweep:
    """A small search over one ``TrainConfig`` field, run before the main runs.

    Attributes:
        param: the field searched, for example ``"learning_rate"``.
        values: variant -> the values tried for it.
        epochs: epochs of each sweep run.
        seed: the seed of the sweep runs.
    """

    param: str
    values: Mapping[str, tuple[Any, ...]]
    epochs: int
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "values", MappingProxyType({k: tuple(v) for k, v in self.values.items()}))
        if self.param not in {f.name for f in dataclasses.fields(TrainConfig)}:
            raise ValueError(f"sweep param {self.param!r} is not a TrainConfig field")
        if self.epochs <= 0 or any(not v for v in self.values.values()):
            raise ValueError("a sweep needs positive epochs and at least one value per variant")


@dataclass(frozen=True)
class Preset:
    """One way of running an experiment.

    Attributes:
        configs: variant -> ``TrainConfig`` (its ``dataset`` is replaced by each of
            ``datasets`` in turn; ``seed`` by each seed).
        datasets: the datasets every variant runs on.
        purpose: one line: what the preset is for.
        runtime: measured runtime with the hardware it was measured on (or "not yet measured").
        deviations: where this preset departs from the paper beyond the experiment's own
            deviations (shorter schedules, subsets, smaller nets); they reach the table notes.
        sweep: a search run before the main runs, or ``None``.
    """

    configs: Mapping[str, TrainConfig]
    datasets: tuple[str, ...]
    purpose: str
    runtime: str
    deviations: tuple[str, ...] = ()
    sweep: Sweep | None = None

    def __post_init__(self):
        object.__setattr__(self, "configs", MappingProxyType(dict(self.configs)))
        object.__setattr__(self, "datasets", tuple(self.datasets))
        object.__setattr__(self, "deviations", tuple(self.deviations))
        if not self.configs or not self.datasets:
            raise ValueError("a preset needs at least one variant and one dataset")
        for variant, config in self.configs.items():
            if not isinstance(config, TrainConfig):
                raise TypeError(f"variant {variant!r}: expected a TrainConfig, got {type(config).__name__}")
            for dataset in self.datasets:
                config.replace(dataset=dataset)  # every combination must validate
        if self.sweep is not None:
            unknown = set(self.sweep.values) - set(self.configs)
            if unknown:
                raise ValueError(f"sweep values for unknown variants: {sorted(unknown)}")


@dataclass(frozen=True)
class Ordering:
    """A claim of the paper: ``lower`` has a lower ``quantity`` than ``higher``.

    ``quantity``: ``"metric"`` (the experiment's metric) or ``"final_train_error"``.
    """

    lower: str
    higher: str
    quantity: str = "metric"


@dataclass(frozen=True)
class Ratio:
    """A ratio the paper states, ``quantity(numerator) / quantity(denominator)``.

    Attributes:
        numerator: variant.
        denominator: variant.
        quantity: one of ``QUANTITIES``.
        label: what the ratio means, for the report.
        paper: the paper's value, or ``None`` where it gives none.
    """

    numerator: str
    denominator: str
    quantity: str
    label: str
    paper: float | None = None


@dataclass(frozen=True)
class Experiment:
    """A paper's claim and how it is re-run (see the module docstring).

    Attributes:
        name: command-line name, for example ``"plain-vs-residual"``.
        title: a short heading.
        paper: citation with table or figure.
        claim: the claim in one sentence.
        metric: ``"test_error"`` (percent) or ``"epochs_to_train_error"`` (the first epoch
            whose training error, as Keras reports it during the epoch, is at most
            ``target_train_error``).
        paper_numbers: variant -> dataset -> the paper's value of ``metric``.
        presets: ``"paper"`` and ``"smoke"``, and ``"quick"`` and ``"cpu"`` where they make
            sense; in the order of ``PRESETS``.
        deviations: departures from the paper common to every preset.
        target_train_error: the training error (percent) of ``epochs_to_train_error``.
        orderings: orderings the paper claims, checked in the report.
        ratios: ratios the paper states, computed in the report.
        panels: plot panel title -> the variants drawn in it (default: one panel, all).
        curves: what the curve plots draw: ``"train"`` and/or ``"val"`` error per epoch.
        notes: further lines for the report (what stands in for what).
    """

    name: str
    title: str
    paper: str
    claim: str
    metric: str
    paper_numbers: Mapping[str, Mapping[str, float]]
    presets: Mapping[str, Preset]
    deviations: tuple[str, ...] = ()
    target_train_error: float = 25.0
    orderings: tuple[Ordering, ...] = ()
    ratios: tuple[Ratio, ...] = ()
    panels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    curves: tuple[str, ...] = ("train", "val")
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        freeze = object.__setattr__
        freeze(self, "paper_numbers", MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self.paper_numbers.items()}))
        freeze(self, "presets", MappingProxyType(dict(self.presets)))
        freeze(self, "panels", MappingProxyType({k: tuple(v) for k, v in self.panels.items()}))
        if self.metric not in METRICS:
            raise ValueError(f"{self.name}: metric must be one of {METRICS}")
        if tuple(self.presets) != tuple(p for p in PRESETS if p in self.presets) or not set(
            REQUIRED_PRESETS
        ) <= set(self.presets):
            raise ValueError(
                f"{self.name}: presets must include {', '.join(REQUIRED_PRESETS)} and come from "
                f"{', '.join(PRESETS)}, in that order"
            )
        variants = set(self.variants)
        for preset_name, preset in self.presets.items():
            extra = set(preset.configs) - variants
            if extra:
                raise ValueError(f"{self.name}: preset {preset_name} has variants not in the paper preset: {sorted(extra)}")
        named = set(self.paper_numbers) | {v for o in self.orderings for v in (o.lower, o.higher)}
        named |= {v for r in self.ratios for v in (r.numerator, r.denominator)}
        named |= {v for vs in self.panels.values() for v in vs}
        if named - variants:
            raise ValueError(f"{self.name}: unknown variants named: {sorted(named - variants)}")
        if any(o.quantity not in QUANTITIES for o in self.orderings) or any(
            r.quantity not in QUANTITIES for r in self.ratios
        ):
            raise ValueError(f"{self.name}: quantities must be among {QUANTITIES}")
        if not set(self.curves) <= {"train", "val"} or not self.curves:
            raise ValueError(f"{self.name}: curves must be 'train' and/or 'val'")

    @property
    def variants(self) -> tuple[str, ...]:
        """The variants of the paper preset (every other preset uses a subset)."""
        return tuple(self.presets["paper"].configs)

    def preset(self, name: str) -> Preset:
        """The preset ``name``; an unknown name is a ``UserError`` listing the presets."""
        try:
            return self.presets[name]
        except KeyError:
            raise UserError(
                f"unknown preset {name!r} for {self.name}; the presets are: {', '.join(self.presets)}"
            ) from None

    def metric_label(self) -> str:
        """The compared metric in words, for tables and plots."""
        if self.metric == "test_error":
            return "test error %"
        return f"epochs to {self.target_train_error:g}% training error"


# --- the experiments ------------------------------------------------------------------------------


def list_experiments() -> list[str]:
    """The experiment names, in a fixed order."""
    return list(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    """The ``Experiment`` called ``name``.

    Raises:
        UserError: no such experiment (the message names the closest).
    """
    try:
        module = EXPERIMENTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(EXPERIMENTS), n=1, cutoff=0.3)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UserError(
            f"unknown experiment {name!r}{hint} (the experiments are: {', '.join(EXPERIMENTS)})"
        ) from None
    return importlib.import_module(module).EXPERIMENT


def preset_configs(name: str, preset: str) -> dict[str, TrainConfig]:
    """``{variant: TrainConfig}`` of an experiment's preset, on the preset's first dataset.

    Used by ``keras_cnns.tuning`` as the starting points of a search.
    """
    p = get_experiment(name).preset(preset)
    return {v: c.replace(dataset=p.datasets[0]) for v, c in p.configs.items()}


# --- planning ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    """One training run of an experiment: its config and the tags of its record."""

    config: TrainConfig
    tags: Mapping[str, Any]

    @property
    def run_id(self) -> str:
        return self.config.run_id()


def _seeds(seeds: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(seeds, bool):
        raise UserError(f"seeds must be a positive number of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds <= 0:
            raise UserError(f"--seeds must be a positive number of seeds, got {seeds}")
        return tuple(range(seeds))
    seeds = tuple(int(s) for s in seeds)
    if not seeds or any(s < 0 for s in seeds):
        raise UserError(f"seeds must be non-negative and at least one, got {seeds}")
    return seeds


def _variants(experiment: Experiment, preset: Preset, variants: Iterable[str] | str | None) -> list[str]:
    if variants is None:
        return list(preset.configs)
    if isinstance(variants, str):
        variants = [v.strip() for v in variants.split(",") if v.strip()]
    chosen = list(dict.fromkeys(variants))
    unknown = [v for v in chosen if v not in preset.configs]
    if unknown or not chosen:
        raise UserError(
            f"unknown variant {unknown[0] if unknown else '(none)'!r} for {experiment.name}; "
            f"this preset's variants are: {', '.join(preset.configs)}"
        )
    return chosen


def _check_overrides(overrides: Sequence[str]) -> tuple[str, ...]:
    overrides = tuple(str(o).strip() for o in overrides if str(o).strip())
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in ("seed", "dataset", "model"):
            what = {"seed": "--seeds N", "dataset": "the experiment's datasets", "model": "--variants"}[key]
            raise UserError(f"--set {key}=... is not allowed in a reproduction: use {what} instead")
    return overrides


def _host() -> str:
    """The machine, in a few words (the record's ``device`` names the accelerator)."""
    return f"{platform.machine() or 'unknown'}, {os.cpu_count()} CPU cores"


def plan_runs(
    experiment: Experiment,
    preset_name: str,
    *,
    seeds: int | Sequence[int] = 1,
    variants: Iterable[str] | str | None = None,
    overrides: Sequence[str] = (),
    variant_overrides: Mapping[str, Sequence[str]] | None = None,
    sweep_choice: Mapping[tuple[str, str], Any] | None = None,
) -> list[PlannedRun]:
    """The main runs of a preset: every chosen variant x dataset x seed, validated.

    Args:
        experiment: the experiment.
        preset_name: ``"paper"``, ``"quick"`` or ``"smoke"``.
        seeds: a number of seeds (``0 .. N-1``) or the seeds themselves.
        variants: variant names (a list or a comma-separated string); ``None`` for all.
        overrides: ``key=value`` items for ``TrainConfig.with_overrides``.
        variant_overrides: further overrides per variant, applied first (tuned values).
        sweep_choice: ``(variant, dataset) -> value`` of the preset's sweep parameter.

    Raises:
        UserError: unknown preset, variant or override; an invalid resulting config.
    """
    preset = experiment.preset(preset_name)
    chosen = _variants(experiment, preset, variants)
    overrides = _check_overrides(overrides)
    runs = []
    for variant in chosen:
        extra = tuple((variant_overrides or {}).get(variant, ()))
        for dataset in preset.datasets:
            base = preset.configs[variant].replace(dataset=dataset).with_overrides([*extra, *overrides])
            if sweep_choice and (variant, dataset) in sweep_choice:
                base = base.replace(**{preset.sweep.param: sweep_choice[(variant, dataset)]})
            for seed in _seeds(seeds):
                config = base.replace(seed=seed)
                runs.append(PlannedRun(config, _tags(experiment, preset_name, variant, config, "main", overrides, extra)))
    return runs


def plan_sweep(
    experiment: Experiment,
    preset_name: str,
    *,
    variants: Iterable[str] | str | None = None,
    overrides: Sequence[str] = (),
    variant_overrides: Mapping[str, Sequence[str]] | None = None,
) -> list[PlannedRun]:
    """The sweep runs of a preset (empty if it has no sweep or an override fixes its parameter)."""
    preset = experiment.preset(preset_name)
    sweep = preset.sweep
    overrides = _check_overrides(overrides)
    if sweep is None:
        return []
    runs = []
    for variant in _variants(experiment, preset, variants):
        extra = tuple((variant_overrides or {}).get(variant, ()))
        fixed = {o.partition("=")[0].strip() for o in (*extra, *overrides)}
        if sweep.param in fixed or variant not in sweep.values:
            continue
        for dataset in preset.datasets:
            base = preset.configs[variant].replace(dataset=dataset).with_overrides([*extra, *overrides])
            for value in sweep.values[variant]:
                config = base.replace(**{sweep.param: value, "epochs": sweep.epochs, "seed": sweep.seed})
                tags = _tags(experiment, preset_name, variant, config, "sweep", overrides, extra)
                tags.update(sweep_param=sweep.param, sweep_value=value)
                runs.append(PlannedRun(config, tags))
    return runs


def _tags(experiment, preset_name, variant, config, phase, overrides, tuned) -> dict[str, Any]:
    tags = {
        "experiment": experiment.name,
        "preset": preset_name,
        "variant": variant,
        "dataset": config.dataset,
        "seed": config.seed,
        "phase": phase,
        "overrides": list(overrides),
        "host": _host(),
    }
    if tuned:
        tags["tuned"] = list(tuned)  # the variant's values from keras-cnns tune
    return tags


def match_key(tags: Mapping[str, Any]) -> tuple:
    """The identity of a run within an experiment's records (see ``MATCH_TAGS``)."""
    out = []
    for name in MATCH_TAGS:
        value = tags.get(name)
        if name == "phase" and value is None:
            value = "main"
        if name in ("overrides", "tuned"):
            value = tuple(value or ())
        out.append(value)
    return tuple(out)


# --- running ----------------------------------------------------------------------------------------


def run_experiment(
    name: str,
    *,
    preset: str = "smoke",
    seeds: int | Sequence[int] = 1,
    out_dir: str | os.PathLike = "results",
    data_dir: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    variants: Iterable[str] | str | None = None,
    from_tuning: bool = False,
    devices: int | str = 1,
    verbose: int = 2,
) -> list[dict]:
    """Run an experiment's preset: the sweep (if any), then every variant x dataset x seed.

    Records go to ``<out_dir>/<name>/records.jsonl`` (checkpoints to
    ``<out_dir>/<name>/checkpoints/``); the experiment's report and the results index are
    regenerated at the end (also when some runs diverged). Runs already completed with the
    same config and tags are skipped; a completed run of the same config under other tags (a
    sweep run that equals a main run) is reused: its record is copied under the new tags.

    Args:
        name: experiment name (``keras-cnns reproduce --help`` lists them).
        preset: ``"paper"``, ``"quick"`` or ``"smoke"``.
        seeds: ``N`` runs seeds ``0 .. N-1`` (or pass the seeds).
        out_dir: the results root.
        data_dir: local dataset archives (default: ``$KERAS_CNNS_DATA_DIR``, else tfds).
        overrides: ``key=value`` config overrides applied to every run (``seed``, ``dataset``
            and ``model`` are refused: use seeds and variants).
        variants: run only these variants.
        from_tuning: start from the best values of ``keras-cnns tune`` for each variant.
        devices: data-parallel devices of every run (``TrainConfig.devices``): where the runs
            execute, not what they compute, so neither their ids nor their tags change.
        verbose: 0 silent, 1 progress bars, 2 one line per epoch.

    Returns:
        The records of the main runs (completed or diverged), in plan order.

    Raises:
        UserError: an unknown experiment, preset, variant or override.
        DataError: a dataset that cannot be found.
    """
    experiment = get_experiment(name)
    variant_overrides = _tuned_overrides(experiment, preset, out_dir, variants) if from_tuning else None
    # Plan everything first: a bad preset, variant or override fails before any training.
    sweep_runs = plan_sweep(experiment, preset, variants=variants, overrides=overrides, variant_overrides=variant_overrides)
    planned = plan_runs(experiment, preset, seeds=seeds, variants=variants, overrides=overrides, variant_overrides=variant_overrides)
    for run in [*sweep_runs, *planned]:
        run.config.replace(devices=devices)  # a batch that does not split over them fails now

    from keras_cnns import results

    exp_dir = Path(out_dir) / experiment.name
    ledger = _Ledger(exp_dir / RECORDS_FILE, devices=devices)
    try:
        for run in sweep_runs:
            ledger.run(run, data_dir=data_dir, verbose=verbose)
        choice = {}
        if sweep_runs:
            sweep = experiment.preset(preset).sweep
            by_cell: dict[tuple[str, str], list[dict]] = {}
            for run in sweep_runs:
                record = ledger.find(run)
                if record is not None:
                    by_cell.setdefault((run.tags["variant"], run.tags["dataset"]), []).append(record)
            for cell, records in by_cell.items():
                value, reason = results.pick_sweep(records, sweep.param, experiment.target_train_error)
                if value is None:
                    raise UserError(f"every {sweep.param} of the {cell[0]} sweep diverged; nothing to choose from")
                choice[cell] = value
                if verbose:
                    print(f"keras-cnns: {experiment.name} {cell[0]} ({cell[1]}): {sweep.param}={value:g} ({reason})", flush=True)
        main_runs = plan_runs(
            experiment, preset, seeds=seeds, variants=variants, overrides=overrides,
            variant_overrides=variant_overrides, sweep_choice=choice,
        )
        done = [ledger.run(run, data_dir=data_dir, verbose=verbose) for run in main_runs]
    finally:
        # Whatever happened (an interrupt, a missing dataset), the report shows what is there.
        if ledger.path.is_file():
            results.write_report(experiment.name, out_dir)
            results.write_index(out_dir)
    return [r for r in done if r is not None]


def _tuned_overrides(experiment, preset, out_dir, variants) -> dict[str, list[str]]:
    from keras_cnns import tuning

    chosen = _variants(experiment, experiment.preset(preset), variants)
    return {v: tuning.best_overrides(experiment.name, out_dir, variant=v) for v in chosen}


class _Ledger:
    """An experiment's records file: which runs are done, and running the rest."""

    def __init__(self, path: Path, devices: int | str = 1):
        self.path = path
        self.devices = devices
        self.records: list[dict] = []
        if path.is_file():
            from keras_cnns.records import read_records

            self.records = read_records(path)

    def find(self, run: PlannedRun, *, any_tags: bool = False) -> dict | None:
        """The last record of ``run`` (completed before diverged), or ``None``."""
        rid, key = run.run_id, match_key(run.tags)
        mine = [r for r in self.records if r.get("run_id") == rid and (any_tags or match_key(r.get("tags") or {}) == key)]
        completed = [r for r in mine if r.get("status") == "completed"]
        return (completed or mine or [None])[-1]

    def run(self, run: PlannedRun, *, data_dir, verbose: int) -> dict | None:
        """Train ``run`` unless it is done; returns its record (``None`` only on a bug)."""
        from keras_cnns.records import append_record

        label = _label(run)
        done = self.find(run)
        if done is not None and done.get("status") == "completed":
            if verbose:
                print(f"keras-cnns: {label}: already completed ({run.run_id}), skipped", flush=True)
            return done
        same_config = self.find(run, any_tags=True)
        if same_config is not None and same_config.get("status") == "completed":
            # The same computation ran under other tags (a sweep run equal to a main run):
            # reuse its result rather than train it again.
            record = {**same_config, "tags": dict(run.tags), "reused_from": same_config.get("tags")}
            append_record(self.path, record)
            self.records.append(record)
            if verbose:
                print(f"keras-cnns: {label}: same config already trained ({run.run_id}), record reused", flush=True)
            return record

        from keras_cnns import training

        if verbose:
            print(f"keras-cnns: {label}: training {run.run_id}", flush=True)
        try:
            config = run.config.replace(devices=self.devices)  # same run_id: placement only
            record = training.train(config, out_dir=self.path.parent, data_dir=data_dir, tags=run.tags, verbose=verbose)
        except DivergedError as err:
            print(f"keras-cnns: {label}: diverged: {err}", flush=True)
            from keras_cnns.records import read_records

            self.records = read_records(self.path)
            return self.find(run)
        if match_key(record.get("tags") or {}) != match_key(run.tags):
            # The engine returned a record kept in its checkpoint under older tags.
            record = {**record, "tags": dict(run.tags), "reused_from": record.get("tags")}
            append_record(self.path, record)
        self.records.append(record)
        return record


def _label(run: PlannedRun) -> str:
    t = run.tags
    text = f"{t['experiment']} [{t['preset']}] {t['variant']} on {t['dataset']}, seed {t['seed']}"
    if t.get("phase") == "sweep":
        text += f", sweep {t['sweep_param']}={t['sweep_value']:g}"
    return text
