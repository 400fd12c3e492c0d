"""The runner: plans an experiment's runs and trains the ones not done yet.

The experiments themselves are data in ``keras_cnns.lab.experiments`` (``Experiment``, ``Preset``,
``Sweep``; the reproductions in ``reproductions/``). ``plan_runs`` and ``plan_sweep`` turn a
preset into ``PlannedRun``\\ s, every variant x dataset x seed, validated before anything trains.

``run_experiment`` trains them through ``keras_cnns.training.train`` into
``<out>/<experiment>/`` (records in ``records.jsonl``, checkpoints beside them) and then
regenerates that experiment's report (``keras_cnns.lab.report``). A run that already has a
completed record (``RunRecord.same_run``: the same run_id under the same tags) is skipped, so
re-running a command resumes it. A preset's ``Sweep`` runs first: the best value is chosen
from its records (``keras_cnns.lab.runs.pick_sweep``), and the main runs use it.

Import order, bottom to top: ``experiments`` <- ``runs`` <- ``claims`` <- ``report``,
``tuning`` <- ``runner`` (this module) <- ``cli``. Keras is imported only when a run starts.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_cnns.errors import DivergedError, UserError
from keras_cnns.lab.experiments import Experiment, Preset, get_experiment
from keras_cnns.lab.writer import duration
from keras_cnns.storage import DEFAULT_OUT_DIR
from keras_cnns.training.config import TrainConfig
from keras_cnns.training.record import RECORDS_FILE, RunRecord, tag_key

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


# --- running ----------------------------------------------------------------------------------------


def run_experiment(
    name: str,
    *,
    preset: str = "smoke",
    seeds: int | Sequence[int] = 1,
    out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
    data_dir: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    variants: Iterable[str] | str | None = None,
    from_tuning: bool = False,
    devices: int | str = 1,
    verbose: int = 2,
) -> list[RunRecord]:
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

    from keras_cnns.lab import report

    exp_dir = Path(out_dir) / experiment.name
    ledger = _Ledger(exp_dir / RECORDS_FILE, devices=devices)
    try:
        for run in sweep_runs:
            ledger.run(run, data_dir=data_dir, verbose=verbose)
        choice = _sweep_choice(experiment, preset, sweep_runs, ledger, verbose=verbose)
        main_runs = plan_runs(
            experiment, preset, seeds=seeds, variants=variants, overrides=overrides,
            variant_overrides=variant_overrides, sweep_choice=choice,
        )
        done = [ledger.run(run, data_dir=data_dir, verbose=verbose) for run in main_runs]
    finally:
        # Whatever happened (an interrupt, a missing dataset), the report shows what is there.
        if ledger.path.is_file():
            report.write_report(experiment.name, out_dir)
            report.write_index(out_dir)
    return [r for r in done if r is not None]


def _sweep_choice(experiment, preset, sweep_runs, ledger, *, verbose: int = 0) -> dict[tuple[str, str], Any] | None:
    """``(variant, dataset) -> value`` the sweep chose, from its runs' records; ``None`` while
    one of them has no record yet (the main runs cannot be planned before it)."""
    if not sweep_runs:
        return {}
    from keras_cnns.lab import runs

    sweep = experiment.preset(preset).sweep
    by_cell: dict[tuple[str, str], list[RunRecord]] = {}
    for run in sweep_runs:
        record = ledger.find(run)
        if record is None:
            return None
        by_cell.setdefault((run.tags["variant"], run.tags["dataset"]), []).append(record)
    choice = {}
    for cell, records in by_cell.items():
        value, reason = runs.pick_sweep(records, sweep.param, experiment.target_train_error)
        if value is None:
            raise UserError(f"every {sweep.param} of the {cell[0]} sweep diverged; nothing to choose from")
        choice[cell] = value
        if verbose:
            print(f"keras-cnns: {experiment.name} {cell[0]} ({cell[1]}): {sweep.param}={value:g} ({reason})", flush=True)
    return choice


def _tuned_overrides(experiment, preset, out_dir, variants) -> dict[str, list[str]]:
    from keras_cnns.lab import tuning_report

    chosen = _variants(experiment, experiment.preset(preset), variants)
    return {v: tuning_report.best_overrides(experiment.name, out_dir, variant=v) for v in chosen}


class _Ledger:
    """An experiment's records file: which runs are done, and running the rest."""

    def __init__(self, path: Path, devices: int | str = 1, *, read_only: bool = False):
        self.path = path
        self.devices = devices
        self.records: list[RunRecord] = []
        if path.is_file():
            if not read_only:
                from keras_cnns.storage import set_aside_torn_tail

                set_aside_torn_tail(path)  # a run killed mid-append: its re-run goes on
            self._read()

    def _read(self) -> None:
        from keras_cnns.storage import read_records

        self.records = [
            RunRecord.from_json(d, where=f"{self.path}:{i}") for i, d in enumerate(read_records(self.path), start=1)
        ]

    def find(self, run: PlannedRun, *, any_tags: bool = False) -> RunRecord | None:
        """The last record of ``run`` (completed before diverged), or ``None``; with
        ``any_tags``, of the same computation under any tags."""
        mine = [
            r for r in self.records
            if (r.run_id == run.run_id if any_tags else r.same_run(run.run_id, run.tags))
        ]  # fmt: skip
        completed = [r for r in mine if r.completed]
        return (completed or mine or [None])[-1]

    def run(self, run: PlannedRun, *, data_dir, verbose: int) -> RunRecord | None:
        """Train ``run`` unless it is done; returns its record (``None`` only on a bug)."""
        from keras_cnns.storage import append_record

        label = _label(run)
        done = self.find(run)
        if done is not None and done.completed:
            if verbose:
                print(f"keras-cnns: {label}: already completed ({run.run_id}), skipped", flush=True)
            return done
        same_config = self.find(run, any_tags=True)
        if same_config is not None and same_config.completed:
            # The same computation ran under other tags (a sweep run equal to a main run):
            # reuse its result rather than train it again.
            record = same_config.with_tags(run.tags, reused=True)
            append_record(self.path, record.to_json())
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
            self._read()
            return self.find(run)
        if tag_key(record.tags) != tag_key(run.tags):
            # The engine returned a record kept in its checkpoint under older tags.
            record = record.with_tags(run.tags, reused=True)
            append_record(self.path, record.to_json())
        self.records.append(record)
        return record


# --- progress ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunProgress:
    """How far one planned run is: its record if it has one, else its checkpoint's state.

    ``status`` is ``"completed"``, ``"diverged"``, ``"reusable"`` (the same computation
    completed under other tags: re-running copies its record), ``"training"`` (a checkpoint:
    ``epochs_done`` of the config's epochs) or ``"not started"``.
    """

    run: PlannedRun
    status: str
    epochs_done: int = 0
    seconds: float = 0.0  # training wall time so far (resumes added up)
    epoch_seconds: float | None = None  # a run in training: its pace (``_pace``)
    test_error: float | None = None
    diverged_in: int | None = None  # the epoch whose loss became non-finite

    @property
    def epochs(self) -> int:
        return self.run.config.epochs

    def describe(self) -> str:
        """One line: the run and how far it is."""
        text = f"{_label(self.run)}: "
        if self.status in ("completed", "reusable"):
            error = "" if self.test_error is None else f", test error {self.test_error:.2f}%"
            text += (
                f"completed{error} after {self.epochs_done} epochs ({duration(self.seconds)})"
                if self.status == "completed"
                else f"trained under other tags{error}: re-running copies its record"
            )
        elif self.status == "diverged":
            where = f" in epoch {self.diverged_in}" if self.diverged_in else ""
            text += f"diverged{where}: re-running trains it again"
        elif self.status == "training":
            text += f"{self.epochs_done} of {self.epochs} epochs done ({duration(self.seconds)})"
            if self.epoch_seconds and self.epochs_done < self.epochs:
                at_most = "at most " if self.run.config.early_stopping_patience else ""
                left = (self.epochs - self.epochs_done) * self.epoch_seconds
                text += f", {at_most}about {duration(left)} left at {self.epoch_seconds:,.0f} s an epoch"
        else:
            text += "not started"
        return text


def progress(
    name: str,
    *,
    preset: str = "smoke",
    seeds: int | Sequence[int] = 1,
    out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
    overrides: Sequence[str] = (),
    variants: Iterable[str] | str | None = None,
    from_tuning: bool = False,
) -> tuple[list[RunProgress], str | None]:
    """How far each run that ``run_experiment`` with these arguments would train is, read from
    its records and checkpoints; nothing is trained or written.

    Returns:
        ``(progress, note)``: the sweep's runs then the main runs, in the order they train;
        ``note`` says why the main runs are not listed (their sweep is not finished), else ``None``.

    Raises:
        UserError: an unknown experiment, preset, variant or override; a damaged checkpoint state.
    """
    from keras_cnns.training.checkpoints import CHECKPOINTS_DIR, STATE_FILE, RunState

    experiment = get_experiment(name)
    variant_overrides = _tuned_overrides(experiment, preset, out_dir, variants) if from_tuning else None
    sweep_runs = plan_sweep(experiment, preset, variants=variants, overrides=overrides, variant_overrides=variant_overrides)
    exp_dir = Path(out_dir) / experiment.name
    ledger = _Ledger(exp_dir / RECORDS_FILE, read_only=True)
    choice = _sweep_choice(experiment, preset, sweep_runs, ledger)
    note = None
    if choice is None:
        planned = []
        note = (
            f"the main runs use the {experiment.preset(preset).sweep.param} the sweep chooses: "
            "they are planned once every sweep run has finished"
        )
    else:
        planned = plan_runs(
            experiment, preset, seeds=seeds, variants=variants, overrides=overrides,
            variant_overrides=variant_overrides, sweep_choice=choice,
        )
    out = []
    for run in [*sweep_runs, *planned]:
        record = ledger.find(run)
        other = ledger.find(run, any_tags=True)
        if record is None and other is not None and other.completed:
            record, status = other, "reusable"
        else:
            status = None if record is None else record.status
        if record is not None:
            out.append(RunProgress(
                run, status, len(record.history), record.wall_time,
                test_error=record.test.error if record.test else None,
                diverged_in=(record.divergence or {}).get("epoch"),
            ))  # fmt: skip
            continue
        state = RunState.load(exp_dir / CHECKPOINTS_DIR / run.run_id / STATE_FILE)
        if state is None or not state.epochs_done:
            out.append(RunProgress(run, "not started"))
            continue
        out.append(RunProgress(
            run, "training", state.epochs_done, state.wall_time, _pace([h.get("time") for h in state.history])
        ))  # fmt: skip
    return out, note


# Epochs whose seconds set a run's pace: the machine's load changes over hours.
PACE_EPOCHS = 10


def _pace(times: Sequence[float | None]) -> float | None:
    """Seconds an epoch now: the median of the last ``PACE_EPOCHS`` epochs, the first (which
    compiles) left out unless it is the only one."""
    times = [t for t in (times[1:] or times)[-PACE_EPOCHS:] if t is not None]
    return statistics.median(times) if times else None


def _label(run: PlannedRun) -> str:
    t = run.tags
    text = f"{t['experiment']} [{t['preset']}] {t['variant']} on {t['dataset']}, seed {t['seed']}"
    if t.get("phase") == "sweep":
        text += f", sweep {t['sweep_param']}={t['sweep_value']:g}"
    return text
