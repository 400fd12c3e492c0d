"""Run records -> one row per run: what each run measured, grouped and summarised over seeds.

``load_rows`` reads an experiment's ``records.jsonl`` through ``RunRecord`` and keeps one row per
run (``run_rows``: the latest record of each slot, a completed record before a diverged one,
runs of an earlier model revision apart). A row is a flat dict of ``RUN_COLUMNS`` (the CSV), plus
the record itself under ``_record``. ``Group`` is the set of runs reported together (one preset,
one set of overrides); ``Stat`` a quantity's mean ± sample std over a cell's seeds.

Error conventions: "training error" is ``100 * (1 - accuracy)`` of the history, the running
accuracy Keras reports over each training epoch (with dropout and augmentation on), not a
separate pass over the training set. Where a paper plots test error per epoch, the validation
split (held out of the training set) stands in for it.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_cnns.errors import UserError
from keras_cnns.lab.experiments import PRESETS, Experiment
from keras_cnns.storage import DEFAULT_OUT_DIR, read_records
from keras_cnns.training.record import RECORDS_FILE, EpochLog, RunRecord

# Training-set sizes before the validation split (the paper presets train on all of it less
# val_size): how much of a paper's training a run had is measured in images seen.
TRAIN_SIZES = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "fashion_mnist": 60_000}
# The CSV's columns, one row per run.
RUN_COLUMNS = (
    "preset", "overrides", "tuned", "phase", "variant", "dataset", "seed", "status", "metric", "value",
    "test_error", "final_train_error", "epochs_to_target", "seconds_to_target", "epoch_time",
    "median_epoch_time", "epochs_run", "epochs", "stopped_early", "selected_epoch", "wall_time", "sweep_param",
    "sweep_value", "n_train", "n_val", "n_test", "source", "device", "host", "backend", "keras", "precision",
    "params", "model_revision", "run_id", "finished", "reused",
)  # fmt: skip


History = Sequence[EpochLog]


def train_errors(history: History) -> list[float]:
    """Training error (%) per epoch, from the accuracy Keras reports during each epoch."""
    return [math.nan if h.train_error is None else h.train_error for h in history]


def val_errors(history: History) -> list[float]:
    """Validation error (%) per epoch (NaN where the run had no validation split)."""
    return [math.nan if h.val_error is None else h.val_error for h in history]


def final_train_error(history: History) -> float:
    """The last epoch's training error (%), NaN for an empty history."""
    errors = train_errors(history)
    return errors[-1] if errors else math.nan


def epochs_to_error(history: History, target: float) -> int | None:
    """The first epoch (1-based) whose training error is at most ``target`` %, or ``None``."""
    for h, error in zip(history, train_errors(history), strict=True):
        if error <= target:
            return int(h.epoch)
    return None


def seconds_to_error(history: History, target: float) -> float | None:
    """Training seconds to ``target`` % training error: ``epochs_to_error`` times the fastest
    epoch's seconds (``epoch_time``), or ``None``.

    Not the sum of the epochs' times: on a shared machine one epoch can take many times the
    others (a run paused while other work had the cores, then resumed), and the sum would
    charge that to the net.
    """
    reached = epochs_to_error(history, target)
    if reached is None:
        return None
    return float(reached * epoch_time(history))


def _epoch_times(history: History) -> list[float]:
    """Each epoch's seconds; the first epoch (tracing and compiling) left out when there are
    others, so the figures compare the nets, not the compilers."""
    times = [h.time for h in history if h.time is not None]
    return times[1:] if len(times) > 1 else times


def epoch_time(history: History) -> float:
    """Seconds of the fastest epoch, the first left out: the net's speed on this machine.

    Other jobs on a shared machine only ever slow an epoch down (and so does the first epoch
    after a resume, which compiles again), so the fastest epoch is the one they disturbed
    least; a median would compare two runs' loads when one shared the cores for most of its
    epochs and the other did not.
    """
    times = _epoch_times(history)
    return float(min(times)) if times else math.nan


def median_epoch_time(history: History) -> float:
    """Median seconds per epoch, the first left out: the pace a run kept, other jobs and all."""
    times = _epoch_times(history)
    return float(statistics.median(times)) if times else math.nan


def best_val_epoch(history: History) -> int | None:
    """The epoch (1-based, the earliest on a tie) of the lowest validation error, or ``None``."""
    errors = val_errors(history)
    if not errors or all(math.isnan(e) for e in errors):
        return None
    return min((i for i in range(len(errors)) if not math.isnan(errors[i])), key=lambda i: (errors[i], i)) + 1


def metric_value(experiment: Experiment, record: RunRecord) -> float:
    """The experiment's compared metric for one completed run (NaN: not reached / no test)."""
    if experiment.metric == "test_error":
        return math.nan if record.test is None else float(record.test.error)
    reached = epochs_to_error(record.history, experiment.target_train_error)
    return math.nan if reached is None else float(reached)


def pick_sweep(records: Sequence[RunRecord], param: str, target: float) -> tuple[Any, str]:
    """The swept value to use: the fewest epochs to ``target`` % training error, ties (and the
    case where no value reached it) broken by the lowest final training error.

    Args:
        records: the sweep's records (diverged ones are skipped).
        param: the swept ``TrainConfig`` field.
        target: the training error (%) to reach.

    Returns:
        ``(value, reason)``; ``(None, reason)`` if no run completed.
    """
    scored = []
    for r in records:
        if not r.completed:
            continue
        reached = epochs_to_error(r.history, target)
        value = r.tags.get("sweep_value", r.config.get(param))
        scored.append((math.inf if reached is None else reached, final_train_error(r.history), value))
    if not scored:
        return None, "no sweep run completed"
    epochs, final, value = min(scored, key=lambda s: (s[0], s[1]))
    if math.isinf(epochs):
        return (
            value,
            f"no value reached {target:g}% training error; lowest final training error {final:.1f}%",
        )
    return value, f"fewest epochs to {target:g}% training error: {epochs}"


def run_rows(experiment: Experiment, records: Sequence[RunRecord]) -> tuple[list[dict], int]:
    """One row per run, and how many records were superseded.

    The latest record of each ``RunRecord.slot`` (a run's tags and its model's revision) is
    the run: a re-run after a config change supersedes the older one; a completed record beats
    a diverged one; a run of an earlier model revision stays a row of its own (its group is
    ``Group.earlier_models``), never superseded by, nor averaged with, runs of the current net.
    Records of other experiments are ignored; a record repeating another exactly (the same run,
    ``RunRecord.same_run``, with the same status) is not counted as superseded.
    """
    mine = [r for r in records if r.tags.get("experiment") == experiment.name]
    latest: dict[tuple, RunRecord] = {}
    for r in mine:
        old = latest.get(r.slot)
        if old is not None and old.completed and not r.completed:
            continue
        latest[r.slot] = r
    repeats = len(mine) - len({(r.run_id, r.slot, r.status) for r in mine})
    rows = [_row(experiment, r) for r in latest.values()]
    return rows, len(mine) - len(latest) - repeats


def _earlier_model(r: RunRecord) -> bool:
    """Whether a record trained an earlier revision of its model than the registry's."""
    from keras_cnns.registry import get_entry

    try:
        return r.model_revision < get_entry(r.model).revision
    except UserError:
        return False


def _row(experiment: Experiment, r: RunRecord) -> dict:
    tags, history, data = r.tags, r.history, r.dataset
    target = experiment.target_train_error
    return {
        "preset": tags.get("preset"),
        "overrides": " ".join(tags.get("overrides") or ()),
        "tuned": " ".join(tags.get("tuned") or ()),
        "phase": tags.get("phase") or "main",
        "variant": tags.get("variant"),
        "dataset": tags.get("dataset") or data.name,
        "seed": tags.get("seed", r.seed),
        "status": r.status,
        "metric": experiment.metric,
        "value": metric_value(experiment, r) if r.completed else math.nan,
        "test_error": r.test.error if r.completed and r.test is not None else None,
        "final_train_error": final_train_error(history),
        "epochs_to_target": epochs_to_error(history, target),
        "seconds_to_target": seconds_to_error(history, target),
        "epoch_time": epoch_time(history),
        "median_epoch_time": median_epoch_time(history),
        "epochs_run": len(history),
        "stopped_early": r.stopped_early,
        "epochs": r.config.get("epochs"),
        "selected_epoch": r.selected_epoch,
        "wall_time": r.wall_time,
        "sweep_param": tags.get("sweep_param"),
        "sweep_value": tags.get("sweep_value"),
        "n_train": data.n_train,
        "n_val": data.n_val,
        "n_test": data.n_test,
        "source": data.source,
        "device": r.device,
        "host": tags.get("host"),
        "backend": r.backend,
        "keras": r.versions.get("keras"),
        "precision": r.precision,
        "params": r.params,
        "model_revision": r.model_revision,
        "earlier_model": _earlier_model(r),
        "run_id": r.run_id,
        "finished": r.finished,
        "reused": r.reused_from is not None,
        # Not CSV columns: the record itself, for plots and sentences.
        "_record": r,
        "_history": history,
        "_config": r.config,
    }


@dataclass(frozen=True)
class Group:
    """Runs reported together: one preset, one set of ``--set`` overrides, tuned or not, and
    whether they trained an earlier revision of their models (kept apart, shown last)."""

    preset: str
    overrides: str
    tuned: bool = False
    earlier_models: bool = False

    @property
    def label(self) -> str:
        return self.preset + self._qualifiers + (", earlier models" if self.earlier_models else "")

    @property
    def phrase(self) -> str:
        """The group in a sentence: ``cpu preset with --set precision=mixed_bfloat16``."""
        return f"{self.preset} preset{self._qualifiers}" + (" (earlier models)" if self.earlier_models else "")

    @property
    def _qualifiers(self) -> str:
        text = " with tuned values" if self.tuned else ""
        return text + (f" with --set {self.overrides}" if self.overrides else "")

    @property
    def stem(self) -> str:
        """A file-name stem: the preset, plus a short hash of the overrides if any."""
        stem = self.preset + ("-tuned" if self.tuned else "") + ("-earlier" if self.earlier_models else "")
        if not self.overrides:
            return stem
        return f"{stem}-{hashlib.sha256(self.overrides.encode()).hexdigest()[:8]}"

    def sort_key(self) -> tuple:
        rank = PRESETS.index(self.preset) if self.preset in PRESETS else len(PRESETS)
        return (self.earlier_models, rank, self.preset, self.tuned, self.overrides)


def groups(rows: Sequence[Mapping[str, Any]]) -> list[Group]:
    """The groups present in ``rows``, most significant first (paper, quick, smoke, others;
    the runs of earlier model revisions after all of them)."""
    found = {Group(r["preset"], r["overrides"], bool(r["tuned"]), bool(r["earlier_model"])) for r in rows}
    return sorted(found, key=Group.sort_key)


def in_group(rows, group: Group, phase: str = "main", status: str | None = "completed") -> list[dict]:
    return [
        r for r in rows
        if r["preset"] == group.preset and r["overrides"] == group.overrides and bool(r["tuned"]) == group.tuned
        and bool(r["earlier_model"]) == group.earlier_models
        and r["phase"] == phase and (status is None or r["status"] == status)
    ]  # fmt: skip


@dataclass(frozen=True)
class Stat:
    """A quantity over a cell's runs: mean, sample std, runs counted, runs not reaching it."""

    mean: float
    std: float
    n: int
    missing: int

    @property
    def complete(self) -> bool:
        return self.n > 0 and self.missing == 0


def stat(values: Sequence[float | None]) -> Stat:
    """Mean and sample standard deviation (ddof 1; NaN for one value) of the finite values."""
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    missing = len(values) - len(finite)
    if not finite:
        return Stat(math.nan, math.nan, 0, missing)
    mean = sum(finite) / len(finite)
    std = (
        math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
        if len(finite) > 1
        else math.nan
    )
    return Stat(mean, std, len(finite), missing)


QUANTITY_COLUMN = {
    "metric": "value",
    "final_train_error": "final_train_error",
    "seconds_to_target": "seconds_to_target",
    "epoch_time": "epoch_time",
}


def cell_stat(rows, variant: str, dataset: str, quantity: str) -> Stat:
    """``stat`` of a quantity over the completed main runs of one variant on one dataset."""
    column = QUANTITY_COLUMN[quantity]
    return stat([r[column] for r in rows if r["variant"] == variant and r["dataset"] == dataset])


def format_stat(s: Stat, *, digits: int = 2, unit: str = "", max_epochs: int | None = None) -> str:
    """``12.34 ± 0.21 (n=3)``; runs that never reached an epochs target are said so."""
    if s.n == 0:
        if s.missing and max_epochs is not None:
            return f"not reached in {max_epochs} epochs (n={s.missing})"
        return "—"
    text = f"{s.mean:.{digits}f}{unit}"
    if s.n > 1:
        text += f" ± {s.std:.{digits}f}"
    text += f" (n={s.n})"
    if s.missing:
        text += f"; {s.missing} more not reached" + (
            f" in {max_epochs} epochs" if max_epochs else ""
        )
    return text


def summary_rows(experiment: Experiment, rows, group: Group) -> list[dict]:
    """The table of one group: one row per variant x dataset, in the experiment's order."""
    done = in_group(rows, group)
    cells = sorted(
        {(r["variant"], r["dataset"]) for r in done},
        key=lambda c: (variant_order(experiment.variants, c[0]), c[1]),
    )
    out = []
    for variant, dataset in cells:
        mine = [r for r in done if r["variant"] == variant and r["dataset"] == dataset]
        s = cell_stat(done, variant, dataset, "metric")
        paper = experiment.paper_numbers.get(variant, {}).get(dataset)
        epochs = max((r["epochs"] or 0) for r in mine)
        out.append({
            "variant": variant,
            "dataset": dataset,
            "paper": paper,
            "mean": s.mean,
            "std": s.std,
            "n": s.n,
            "not_reached": s.missing,
            "difference": (s.mean - paper) if paper is not None and s.n else math.nan,
            "stat": s,
            "final_train_error": cell_stat(done, variant, dataset, "final_train_error"),
            "seconds_to_target": cell_stat(done, variant, dataset, "seconds_to_target"),
            "wall_time": stat([r["wall_time"] for r in mine]),
            "epochs": epochs,
            "epochs_run": sorted({r["epochs_run"] for r in mine}),
            "n_train": mine[0]["n_train"],
        })  # fmt: skip
    return out


def variant_order(sequence: Sequence[str], item: str) -> int:
    """The position of ``item`` in ``sequence`` (the end for one not in it), for sorting."""
    return sequence.index(item) if item in sequence else len(sequence)


def by_seed(rows, variant: str, dataset: str, column: str) -> dict[Any, float]:
    """``{seed: value}`` of a column over a variant's rows on a dataset (missing values left out)."""
    return {
        r["seed"]: r[column]
        for r in rows
        if r["variant"] == variant and r["dataset"] == dataset and r[column] is not None
        and not math.isnan(float(r[column]))
    }  # fmt: skip


def mean_curve(histories: Sequence[History], which) -> tuple[list[int], list[float]]:
    """Mean over runs of a per-epoch error, for the epochs every run has."""
    curves = [which(h) for h in histories if h]
    if not curves:
        return [], []
    length = min(len(c) for c in curves)
    means = [sum(c[i] for c in curves) / len(curves) for i in range(length)]
    return list(range(1, length + 1)), means


def has_records(experiment: Experiment, out_dir: str | Path = DEFAULT_OUT_DIR) -> bool:
    """Whether ``<out_dir>/<name>/records.jsonl`` exists (a report has something to show)."""
    return (Path(out_dir) / experiment.name / RECORDS_FILE).is_file()


def load_rows(experiment: Experiment, out_dir: str | Path = DEFAULT_OUT_DIR) -> tuple[list[dict], int]:
    """``run_rows`` of ``<out_dir>/<name>/records.jsonl`` (no rows if it does not exist)."""
    path = Path(out_dir) / experiment.name / RECORDS_FILE
    lines = read_records(path) if path.is_file() else []
    return run_rows(experiment, [RunRecord.from_json(d, where=f"{path}:{i}") for i, d in enumerate(lines, start=1)])
