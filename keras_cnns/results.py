"""Run records -> tables and plots, beside the papers' numbers.

``write_report(name, out_dir)`` regenerates everything under ``<out_dir>/<name>/`` from that
experiment's ``records.jsonl`` and nothing else (``out_dir``: ``runs`` by default, the
committed ``results`` when asked for):

* ``README.md``: per preset (a smoke table never mixes with a quick one; runs with ``--set``
  overrides form their own group), a table ``variant | dataset | paper | ours (mean ± std,
  n) | difference``, the hardware, backend, precision and wall time, every deviation from the
  paper, the sweep (if any), diverged runs listed apart (never averaged in), and sentences
  computed from the numbers: how much of the paper's training the runs had, whether the
  paper's orderings hold, the ratios the paper states.
* ``results.csv``: one row per run (sweep and diverged runs included, marked).
* ``<group>-<dataset>-curves.png``: error per epoch for every variant (mean over seeds).

``write_index(out_dir)`` writes ``<out_dir>/README.md``, one line per experiment. Every file is written
atomically (``keras_cnns.records.atomic_write_*``), and each regeneration holds an exclusive
lock on the directory it writes (``keras_cnns.records.exclusive``) from reading the records to
writing the last file, so processes appending records and regenerating tables at once leave
tables computed from the last records. Plots use matplotlib's Agg canvas directly, so no
global pyplot state is touched.

Error conventions: "training error" is ``100 * (1 - accuracy)`` of the history, the running
accuracy Keras reports over each training epoch (with dropout and augmentation on), not a
separate pass over the training set. Where a paper plots test error per epoch, the
validation split (held out of the training set) stands in for it.
"""

from __future__ import annotations

import hashlib
import io
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_cnns.errors import UserError
from keras_cnns.experiments import (
    CURVE_QUANTITY,
    PRESETS,
    RECORDS_FILE,
    TUNING_REPORT_FILE,
    Experiment,
    Regime,
    get_experiment,
    list_experiments,
    match_key,
)
from keras_cnns.records import (
    DEFAULT_OUT_DIR,
    atomic_write_bytes,
    atomic_write_text,
    exclusive,
    read_records,
    set_aside_torn_tail,
)

INDEX_FILE = "README.md"
REPORT_FILE = "README.md"
CSV_FILE = "results.csv"
PLOT_SUFFIX = "-curves.png"

# Training-set sizes before the validation split (the paper presets train on all of it less
# val_size): how much of a paper's training a run had is measured in images seen.
TRAIN_SIZES = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "fashion_mnist": 60_000}
# Below this fraction of the paper recipe's images seen, a run says nothing about the claim
# (unless its preset is a scaled-down test of it: see ``tests_the_claim``).
TOO_LITTLE = 0.05
# From this fraction on, a run had (about) the paper's full training.
FULL = 0.9

RUN_COLUMNS = (
    "preset", "overrides", "tuned", "phase", "variant", "dataset", "seed", "status", "metric", "value",
    "test_error", "final_train_error", "epochs_to_target", "seconds_to_target", "epoch_time",
    "median_epoch_time", "epochs_run", "epochs", "stopped_early", "selected_epoch", "wall_time", "sweep_param",
    "sweep_value", "n_train", "n_val", "n_test", "source", "device", "host", "backend", "keras", "precision",
    "params", "model_revision", "run_id", "finished", "reused",
)  # fmt: skip


# --- what one run measured ----------------------------------------------------------------------


def train_errors(history: Sequence[Mapping[str, Any]]) -> list[float]:
    """Training error (%) per epoch, from the accuracy Keras reports during each epoch."""
    return [
        100.0 * (1.0 - h["accuracy"]) if h.get("accuracy") is not None else math.nan
        for h in history
    ]


def val_errors(history: Sequence[Mapping[str, Any]]) -> list[float]:
    """Validation error (%) per epoch (NaN where the run had no validation split)."""
    return [
        100.0 * (1.0 - h["val_accuracy"]) if h.get("val_accuracy") is not None else math.nan
        for h in history
    ]


def final_train_error(history: Sequence[Mapping[str, Any]]) -> float:
    """The last epoch's training error (%), NaN for an empty history."""
    errors = train_errors(history)
    return errors[-1] if errors else math.nan


def epochs_to_error(history: Sequence[Mapping[str, Any]], target: float) -> int | None:
    """The first epoch (1-based) whose training error is at most ``target`` %, or ``None``."""
    for h, error in zip(history, train_errors(history), strict=True):
        if error <= target:
            return int(h["epoch"])
    return None


def seconds_to_error(history: Sequence[Mapping[str, Any]], target: float) -> float | None:
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


def _epoch_times(history: Sequence[Mapping[str, Any]]) -> list[float]:
    """Each epoch's seconds; the first epoch (tracing and compiling) left out when there are
    others, so the figures compare the nets, not the compilers."""
    times = [h["time"] for h in history if h.get("time") is not None]
    return times[1:] if len(times) > 1 else times


def epoch_time(history: Sequence[Mapping[str, Any]]) -> float:
    """Seconds of the fastest epoch, the first left out: the net's speed on this machine.

    Other jobs on a shared machine only ever slow an epoch down (and so does the first epoch
    after a resume, which compiles again), so the fastest epoch is the one they disturbed
    least; a median would compare two runs' loads when one shared the cores for most of its
    epochs and the other did not.
    """
    times = _epoch_times(history)
    return float(min(times)) if times else math.nan


def median_epoch_time(history: Sequence[Mapping[str, Any]]) -> float:
    """Median seconds per epoch, the first left out: the pace a run kept, other jobs and all."""
    times = _epoch_times(history)
    return float(statistics.median(times)) if times else math.nan


def metric_value(experiment: Experiment, record: Mapping[str, Any]) -> float:
    """The experiment's compared metric for one completed run (NaN: not reached / no test)."""
    if experiment.metric == "test_error":
        test = record.get("test") or {}
        return float(test["error"]) if test.get("error") is not None else math.nan
    reached = epochs_to_error(record.get("history") or [], experiment.target_train_error)
    return math.nan if reached is None else float(reached)


def pick_sweep(records: Sequence[Mapping[str, Any]], param: str, target: float) -> tuple[Any, str]:
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
        if r.get("status") != "completed":
            continue
        history = r.get("history") or []
        reached = epochs_to_error(history, target)
        value = (r.get("tags") or {}).get("sweep_value", (r.get("config") or {}).get(param))
        scored.append((math.inf if reached is None else reached, final_train_error(history), value))
    if not scored:
        return None, "no sweep run completed"
    epochs, final, value = min(scored, key=lambda s: (s[0], s[1]))
    if math.isinf(epochs):
        return (
            value,
            f"no value reached {target:g}% training error; lowest final training error {final:.1f}%",
        )
    return value, f"fewest epochs to {target:g}% training error: {epochs}"


# --- records -> a frame of runs -----------------------------------------------------------------


def run_rows(
    experiment: Experiment, records: Sequence[Mapping[str, Any]]
) -> tuple[list[dict], int]:
    """One row per run (the last record of each run identity), and how many were superseded.

    Two records are the same run when their tags match (``experiments.match_key``) and they
    trained the same revision of the model: a re-run after a config change supersedes the older
    one; a completed record beats a diverged one; a run of an earlier model revision stays a row
    of its own (its group is ``Group.earlier_models``), never superseded by, nor averaged with,
    runs of the current net. Records of other experiments are ignored.
    """
    latest: dict[tuple, Mapping[str, Any]] = {}
    for r in records:
        tags = r.get("tags") or {}
        if tags.get("experiment") != experiment.name:
            continue
        key = (match_key(tags), _revision(r))
        old = latest.get(key)
        if old is not None and old.get("status") == "completed" and r.get("status") != "completed":
            continue
        latest[key] = r
    kept = len(latest)
    total = sum((r.get("tags") or {}).get("experiment") == experiment.name for r in records)
    rows = [_row(experiment, r) for r in latest.values()]
    return rows, total - kept - _duplicates(records, experiment)


def _duplicates(records, experiment) -> int:
    """Records that repeat a run's completed record exactly (same run_id and tags)."""
    seen, dupes = set(), 0
    for r in records:
        tags = r.get("tags") or {}
        if tags.get("experiment") != experiment.name:
            continue
        key = (r.get("run_id"), match_key(tags), _revision(r), r.get("status"))
        dupes += key in seen
        seen.add(key)
    return dupes


def _revision(r: Mapping[str, Any]) -> int:
    """The model revision a record trained (records from before revisions were kept: 1)."""
    return int(r.get("model_revision") or 1)


def _earlier_model(r: Mapping[str, Any]) -> bool:
    """Whether a record trained an earlier revision of its model than the registry's."""
    from keras_cnns.registry import get_entry

    try:
        return _revision(r) < get_entry(str(r.get("model"))).revision
    except UserError:
        return False


def _row(experiment: Experiment, r: Mapping[str, Any]) -> dict:
    tags = r.get("tags") or {}
    history = r.get("history") or []
    config = r.get("config") or {}
    data = r.get("dataset") or {}
    completed = r.get("status") == "completed"
    target = experiment.target_train_error
    reached = epochs_to_error(history, target)
    seconds = seconds_to_error(history, target)
    return {
        "preset": tags.get("preset"),
        "overrides": " ".join(tags.get("overrides") or ()),
        "tuned": " ".join(tags.get("tuned") or ()),
        "phase": tags.get("phase") or "main",
        "variant": tags.get("variant"),
        "dataset": tags.get("dataset") or config.get("dataset"),
        "seed": tags.get("seed", r.get("seed")),
        "status": r.get("status"),
        "metric": experiment.metric,
        "value": metric_value(experiment, r) if completed else math.nan,
        "test_error": ((r.get("test") or {}).get("error") if completed else None),
        "final_train_error": final_train_error(history),
        "epochs_to_target": reached,
        "seconds_to_target": seconds,
        "epoch_time": epoch_time(history),
        "median_epoch_time": median_epoch_time(history),
        "epochs_run": len(history),
        "stopped_early": bool(r.get("stopped_early")),
        "epochs": config.get("epochs"),
        "selected_epoch": r.get("selected_epoch"),
        "wall_time": r.get("wall_time"),
        "sweep_param": tags.get("sweep_param"),
        "sweep_value": tags.get("sweep_value"),
        "n_train": data.get("n_train"),
        "n_val": data.get("n_val"),
        "n_test": data.get("n_test"),
        "source": data.get("source"),
        "device": r.get("device"),
        "git": r.get("git"),
        "host": tags.get("host"),
        "backend": r.get("backend"),
        "keras": (r.get("versions") or {}).get("keras"),
        "precision": r.get("precision"),
        "params": r.get("params"),
        "model_revision": _revision(r),
        "earlier_model": _earlier_model(r),
        "run_id": r.get("run_id"),
        "finished": r.get("finished"),
        "reused": bool(r.get("reused_from")),
        # Not CSV columns: kept for plots and sentences.
        "_history": history,
        "_config": config,
        "_model": r.get("model"),
        "_divergence": r.get("divergence"),
    }


# --- groups: one table per preset (and per set of overrides) ------------------------------------


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
        text = self.preset + (" with tuned values" if self.tuned else "")
        text += f" with --set {self.overrides}" if self.overrides else ""
        return text + (", earlier models" if self.earlier_models else "")

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


def _in(rows, group: Group, phase: str = "main", status: str | None = "completed") -> list[dict]:
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


_QUANTITY_COLUMN = {
    "metric": "value",
    "final_train_error": "final_train_error",
    "seconds_to_target": "seconds_to_target",
    "epoch_time": "epoch_time",
}


def cell_stat(rows, variant: str, dataset: str, quantity: str) -> Stat:
    """``stat`` of a quantity over the completed main runs of one variant on one dataset."""
    column = _QUANTITY_COLUMN[quantity]
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
    done = _in(rows, group)
    cells = sorted(
        {(r["variant"], r["dataset"]) for r in done},
        key=lambda c: (_order(experiment.variants, c[0]), c[1]),
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


def _order(sequence: Sequence[str], item: str) -> int:
    return sequence.index(item) if item in sequence else len(sequence)


# --- what the numbers say -----------------------------------------------------------------------


def training_fraction(experiment: Experiment, rows: Sequence[Mapping[str, Any]]) -> float:
    """Images seen by these runs as a fraction of the paper recipe's (mean over runs).

    The paper recipe's count is its epochs times the full training set less its validation
    split; a run's is its epochs times its training images.
    """
    paper = experiment.presets["paper"].configs
    fractions = []
    for r in rows:
        reference = paper.get(r["variant"]) or next(iter(paper.values()))
        full = TRAIN_SIZES.get(r["dataset"])
        if not full or not r["n_train"]:
            continue
        paper_seen = reference.epochs * max(1, full - reference.val_size)
        fractions.append(r["epochs_run"] * r["n_train"] / paper_seen)
    return sum(fractions) / len(fractions) if fractions else math.nan


def _quantity_words(experiment: Experiment, quantity: str) -> str:
    return {
        "metric": experiment.metric_label(),
        "final_train_error": "final training error %",
        "seconds_to_target": f"seconds to {experiment.target_train_error:g}% training error (epochs x fastest epoch time)",
        "epoch_time": "seconds per epoch (fastest epoch)",
    }[quantity]


# Quantities measured in seconds: their ratios depend on the machine's load while each run trained.
TIME_QUANTITIES = ("seconds_to_target", "epoch_time")


# --- the noise rule -----------------------------------------------------------------------------

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
WITHIN_NOISE = "within noise"
UNDECIDED = "undecided"


@dataclass(frozen=True)
class GapVerdict:
    """What an ordering's gaps over seeds say: ``status`` (``HOLDS``, ``DOES_NOT_HOLD`` or
    ``WITHIN_NOISE``) and the phrase that says it with the numbers."""

    status: str
    phrase: str


def gap_verdict(gaps: Sequence[float], unit: str = "points") -> GapVerdict:
    """The one rule by which an ordering is read against its noise.

    ``gaps`` holds one number per seed, ``higher - lower`` for the seeds both variants ran
    (positive: the paper's ordering holds in that seed). With one seed the sign decides and the
    noise is said to be unmeasured. With more, the ordering is ``WITHIN_NOISE`` when the seeds
    disagree in sign (a zero gap agrees with neither) or the mean gap is smaller than twice its
    sample standard deviation; otherwise it holds or does not by the mean's sign.

    Raises:
        ValueError: no gap.
    """
    if not gaps:
        raise ValueError("an ordering needs at least one seed's gap")
    n = len(gaps)
    if n == 1:
        status = HOLDS if gaps[0] > 0 else DOES_NOT_HOLD
        return GapVerdict(status, f"{status} (one seed: the gap's noise is not measured)")
    mean = statistics.fmean(gaps)
    std = statistics.stdev(gaps)
    agree = sum(g > 0 for g in gaps)
    spread = f"gap {mean:.2f} ± {std:.2f} {unit}"
    if 0 < agree < n or any(g == 0 for g in gaps) or abs(mean) < 2 * std:
        return GapVerdict(WITHIN_NOISE, f"{WITHIN_NOISE}: holds in {agree} of {n} seeds, {spread}")
    if mean > 0:
        return GapVerdict(HOLDS, f"{HOLDS} in {n} of {n} seeds, {spread}")
    return GapVerdict(DOES_NOT_HOLD, f"{DOES_NOT_HOLD} in any of {n} seeds, {spread}")


@dataclass(frozen=True)
class Outcome:
    """A claim checked on a group's runs: ``status`` is ``HOLDS``, ``DOES_NOT_HOLD``,
    ``WITHIN_NOISE`` or ``UNDECIDED`` (the runs cannot tell), ``sentence`` says it."""

    status: str
    sentence: str

    @property
    def holds(self) -> bool | None:
        """True or False where decided beyond noise, else None."""
        return {HOLDS: True, DOES_NOT_HOLD: False}.get(self.status)


def _by_seed(rows, variant: str, dataset: str, column: str) -> dict[Any, float]:
    return {
        r["seed"]: r[column]
        for r in rows
        if r["variant"] == variant and r["dataset"] == dataset and r[column] is not None
        and not math.isnan(float(r[column]))
    }  # fmt: skip


def _selected_val_error(row) -> float | None:
    """The validation error of the epoch whose weights were tested (``None`` without one)."""
    history, epoch = row["_history"], row["selected_epoch"]
    if not epoch or epoch > len(history):
        return None
    accuracy = history[epoch - 1].get("val_accuracy")
    return None if accuracy is None else 100.0 * (1.0 - accuracy)


def ordering_results(experiment: Experiment, rows, group: Group) -> list[Outcome]:
    """An ``Outcome`` for each of the paper's orderings on each dataset measured.

    Seeds are paired: the gap of each seed both variants ran is read by ``gap_verdict``.
    ``UNDECIDED`` when the runs cannot decide (a variant reached an epochs target in some seeds
    only). A test-error ordering also says when the validation split (the tested weights'
    validation error) ranks the two the other way.
    """
    done = _in(rows, group)
    datasets = sorted({r["dataset"] for r in done})
    out = []
    for dataset in datasets:
        where = f" on {dataset}" if len(datasets) > 1 else ""
        for o in experiment.orderings:
            if o.quantity == CURVE_QUANTITY:
                found = _curve_ordering(done, o, dataset, where)
                if found is not None:
                    out.append(found)
                continue
            lo = cell_stat(done, o.lower, dataset, o.quantity)
            hi = cell_stat(done, o.higher, dataset, o.quantity)
            words = _quantity_words(experiment, o.quantity)
            if lo.n + lo.missing == 0 or hi.n + hi.missing == 0:
                continue  # a variant not run in this group
            if lo.missing or hi.missing:
                if lo.complete and not hi.n:
                    status, verb = HOLDS, "holds"
                    text = f"{o.lower} reached the target and {o.higher} did not{where} ({words}): the paper's ordering {verb}"
                elif hi.complete and not lo.n:
                    status = DOES_NOT_HOLD
                    text = f"{o.higher} reached the target and {o.lower} did not{where} ({words}): the paper's ordering does not hold"
                else:
                    status = UNDECIDED
                    text = f"{o.lower} vs {o.higher}{where} ({words}): undecided, not every run reached the target"
                out.append(Outcome(status, text))
                continue
            column = _QUANTITY_COLUMN[o.quantity]
            low, high = _by_seed(done, o.lower, dataset, column), _by_seed(done, o.higher, dataset, column)
            seeds = sorted(set(low) & set(high), key=str)
            unit = "epochs" if experiment.metric == "epochs_to_train_error" and o.quantity == "metric" else "points"
            text = f"{o.lower} {_stat_text(lo)} vs {o.higher} {_stat_text(hi)}{where} ({words}): the paper's ordering "
            if seeds:
                verdict_ = gap_verdict([high[s] - low[s] for s in seeds], unit)
                text += verdict_.phrase
                status = verdict_.status
            else:  # no seed in common: the means alone
                status = HOLDS if lo.mean < hi.mean else DOES_NOT_HOLD
                text += f"{status} (no seed ran both: the gap's noise is not measured)"
            if o.quantity == "metric" and experiment.metric == "test_error":
                text += _validation_ranking(done, o, dataset)
            out.append(Outcome(status, text))
    return out


def _stat_text(s: Stat) -> str:
    return f"{s.mean:.2f}" if s.n == 1 else f"{s.mean:.2f} ± {s.std:.2f}"


def _validation_ranking(done, o, dataset: str) -> str:
    """A clause where the validation split ranks ``o``'s variants otherwise than the test set."""
    val = {}
    for variant in (o.lower, o.higher):
        errors = [
            _selected_val_error(r) for r in done if r["variant"] == variant and r["dataset"] == dataset
        ]
        errors = [e for e in errors if e is not None]
        if not errors:
            return ""
        val[variant] = statistics.fmean(errors)
    test = {v: cell_stat(done, v, dataset, "metric").mean for v in (o.lower, o.higher)}
    val_sign = (val[o.higher] > val[o.lower]) - (val[o.higher] < val[o.lower])
    test_sign = (test[o.higher] > test[o.lower]) - (test[o.higher] < test[o.lower])
    if val_sign == test_sign:
        return ""
    numbers = f"{o.lower} {val[o.lower]:.2f} vs {o.higher} {val[o.higher]:.2f} validation error %"
    if val_sign == 0:
        return f"; the validation split does not separate them ({numbers})"
    return f"; the validation split ranks them the other way ({numbers})"


def _curve_ordering(done, o, dataset: str, where: str) -> Outcome | None:
    """Is ``o.lower``'s training error below ``o.higher``'s at every epoch after the first
    (the epochs all their runs have)? With one seed the mean curves decide; with more, each
    epoch's gaps over the paired seeds are read by ``gap_verdict``. ``None`` when a variant
    was not run or trained a single epoch."""
    per_seed = {}
    for variant in (o.lower, o.higher):
        runs = {r["seed"]: train_errors(r["_history"]) for r in done if r["variant"] == variant and r["dataset"] == dataset}
        if not runs:
            return None
        per_seed[variant] = runs
    seeds = sorted(set(per_seed[o.lower]) & set(per_seed[o.higher]), key=str)
    curves = {v: _mean_curve([r["_history"] for r in done if r["variant"] == v and r["dataset"] == dataset], train_errors)[1] for v in (o.lower, o.higher)}
    lo, hi = curves[o.lower], curves[o.higher]
    length = min(len(lo), len(hi), *(len(per_seed[v][s]) for v in per_seed for s in seeds))
    epochs = range(2, length + 1)
    what = f"{o.lower} below {o.higher} in training error at every epoch after the first{where}"
    if not epochs:
        return None  # one epoch: no curve to compare
    span = f"epochs 2-{epochs[-1]}"
    if len(seeds) > 1:
        verdicts = {
            e: gap_verdict([per_seed[o.higher][s][e - 1] - per_seed[o.lower][s][e - 1] for s in seeds]).status
            for e in epochs
        }
        counts = {k: [e for e in epochs if verdicts[e] == k] for k in (HOLDS, WITHIN_NOISE, DOES_NOT_HOLD)}
        if len(counts[HOLDS]) == len(epochs):
            gaps = [hi[e - 1] - lo[e - 1] for e in epochs]
            return Outcome(HOLDS, f"{what} ({span}, {len(seeds)} seeds): the paper's ordering holds beyond noise at every epoch (mean gap {min(gaps):.1f} to {max(gaps):.1f} points)")
        status = DOES_NOT_HOLD if counts[DOES_NOT_HOLD] else WITHIN_NOISE
        parts = [f"{k} at {_epoch_list(counts[k], len(epochs))}" for k in (HOLDS, WITHIN_NOISE, DOES_NOT_HOLD) if counts[k]]
        return Outcome(status, f"{what} ({span}, {len(seeds)} seeds): the paper's ordering " + "; ".join(parts))
    above = [e for e in epochs if not lo[e - 1] < hi[e - 1]]
    one = " (one seed: the gap's noise is not measured)" if len(seeds) <= 1 else ""
    if not above:
        gaps = [hi[e - 1] - lo[e - 1] for e in epochs]
        return Outcome(HOLDS, f"{what} ({span}): the paper's ordering holds (gap {min(gaps):.1f} to {max(gaps):.1f} points){one}")
    if len(above) == len(epochs):
        gaps = [lo[e - 1] - hi[e - 1] for e in epochs]
        return Outcome(DOES_NOT_HOLD, (
            f"{what} ({span}): the paper's ordering does not hold at any of them ({o.lower} "
            f"above by {min(gaps):.1f} to {max(gaps):.1f} points){one}"
        ))
    return Outcome(DOES_NOT_HOLD, (
        f"{what} ({span}): the paper's ordering does not hold at {_epoch_list(above, len(epochs))}{one}"
    ))


def _epoch_list(epochs: Sequence[int], total: int) -> str:
    """``k of n epochs: 3, 4, 9 ...`` (at most eight listed)."""
    listed = ", ".join(str(e) for e in epochs[:8]) + (" ..." if len(epochs) > 8 else "")
    return f"{len(epochs)} of {total} epochs ({listed})"


def ratio_results(experiment: Experiment, rows, group: Group) -> list[str]:
    """A sentence per stated ratio and dataset: ours beside the paper's."""
    done = _in(rows, group)
    out = []
    for dataset in sorted({r["dataset"] for r in done}):
        for q in experiment.ratios:
            num = cell_stat(done, q.numerator, dataset, q.quantity)
            den = cell_stat(done, q.denominator, dataset, q.quantity)
            if num.n + num.missing == 0 or den.n + den.missing == 0:
                continue
            paper = f" (paper: {q.paper:g})" if q.paper is not None else ""
            if not (num.complete and den.complete) or den.mean == 0:
                out.append(f"{q.label}: not available{paper}, not every run reached the target")
                continue
            text = f"{q.label}: {num.mean / den.mean:.2f}{paper}"
            if q.quantity in TIME_QUANTITIES:
                # Runs of an experiment train one after another, each under whatever else the
                # machine ran then: a time ratio between them is not an interleaved measurement.
                text += (
                    "; from runs that did not take turns on the machine, so other jobs' load can move it"
                    + (f" (measured taking turns: [{q.benchmark}](../{q.benchmark}))" if q.benchmark else "")
                )
            out.append(text)
    return out


def regime_results(experiment: Experiment, rows, group: Group) -> list[tuple[bool | None, str]]:
    """``(holds, sentence)`` for each ``Regime`` of the group's preset on each dataset run.

    ``holds`` is ``None`` when the variant has no completed run there.
    """
    preset = experiment.presets.get(group.preset)
    done = _in(rows, group)
    datasets = sorted({r["dataset"] for r in done})
    out = []
    for dataset in datasets:
        for regime in preset.regime if preset is not None else ():
            out.append(_regime(done, regime, dataset, len(datasets) > 1))
    return out


def _regime(done, regime: Regime, dataset: str, name_dataset: bool) -> tuple[bool | None, str]:
    where = f" on {dataset}" if name_dataset else ""
    what = f"{regime.meaning} ({regime.variant}'s final training error below {regime.below:g}%{where})"
    final = cell_stat(done, regime.variant, dataset, "final_train_error")
    if not final.n:
        return None, f"The regime this preset needs, {what}: undecided, no completed run"
    holds = final.mean < regime.below
    sentence = f"The regime this preset needs, {what}: {'holds' if holds else 'does not hold'}, {final.mean:.2f}%"
    histories = [r["_history"] for r in done if r["variant"] == regime.variant and r["dataset"] == dataset]
    epochs, val = _mean_curve(histories, val_errors)
    train = _mean_curve(histories, train_errors)[1]
    if val and not any(math.isnan(v) for v in val):
        # Where the training error first fell below the bound, against the end: does the
        # validation error still fall once the training set is fitted?
        below = next((i for i, t in enumerate(train) if t < regime.below), None)
        since = (
            f"{val[below]:.2f}% at epoch {epochs[below]}, when its training error first fell "
            f"below {regime.below:g}%, and "
            if below is not None and below < len(val) - 1
            else ""
        )
        sentence += f" (its validation error {since}{val[-1]:.2f}% after epoch {epochs[-1]})"
    if not holds:
        sentence += "; the comparison was not made in the regime the claim is about"
    return holds, sentence


def tests_the_claim(experiment: Experiment, group: Group, fraction: float) -> bool:
    """Can a group's runs, which saw ``fraction`` of the paper recipe's training images (see
    ``training_fraction``), speak to the claim? Yes from ``TOO_LITTLE`` on, and for a preset
    designed to test the claim at a smaller scale (one that says what it ``cannot_show``: a
    ``cpu`` preset on a training subset sees a few percent of the paper's images, in the regime
    the claim is about); no for a check of the pipeline (``smoke``)."""
    preset = experiment.presets.get(group.preset)
    if preset is not None and preset.cannot_show:
        return True
    return not math.isnan(fraction) and fraction >= TOO_LITTLE


def verdict(experiment: Experiment, rows, group: Group) -> list[str]:
    """Sentences computed from the group's numbers; the first is the headline."""
    done = _in(rows, group)
    if not done:
        return ["No completed runs in this group."]
    fraction = training_fraction(experiment, done)
    pct = f"{100 * fraction:.2g}%" if not math.isnan(fraction) else "an unknown share"
    orderings = ordering_results(experiment, rows, group)
    decided = [o.holds for o in orderings if o.holds is not None]
    noisy = sum(o.status == WITHIN_NOISE for o in orderings)
    held = sum(decided)
    preset = experiment.presets.get(group.preset)
    claim = tests_the_claim(experiment, group, fraction)
    if not claim:
        head = (
            f"{group.preset} preset: too little training to compare with the paper ({pct} of the "
            "paper recipe's training images seen); this run shows that the pipeline works end "
            "to end, not whether the claim holds"
        )
        if decided:
            head += f" (as measured, {held} of {len(decided)} of the paper's orderings hold, which at this size is noise)"
    else:
        budget = (
            "the paper's full training"
            if fraction >= FULL
            else f"{pct} of the paper recipe's training images"
        )
        if decided and not noisy:
            verb = (
                "all hold"
                if held == len(decided)
                else ("none holds" if held == 0 else f"{held} of {len(decided)} hold")
            )
            head = f"{group.preset} preset, {budget}: the paper's orderings {verb}"
        elif decided or noisy:
            counts = [f"{held} hold", f"{len(decided) - held} do not", f"{noisy} within noise"]
            head = f"{group.preset} preset, {budget}: of the paper's {len(decided) + noisy} orderings " + ", ".join(
                c for c in counts if not c.startswith("0 ")
            )
        else:
            head = f"{group.preset} preset, {budget}"
        # A scaled-down preset's errors are not the paper's to compare (its table still has them).
        scaled_down = preset is not None and bool(preset.cannot_show)
        numbered = [
            r for r in summary_rows(experiment, rows, group) if not math.isnan(r["difference"])
        ]
        if numbered and not scaled_down:
            diffs = ", ".join(
                f"{r['variant']}{_on(r, numbered)} {r['difference']:+.2f}" for r in numbered
            )
            head += f"; ours minus the paper's: {diffs}"
    sentences = [head + "."]
    sentences += [o.sentence + "." for o in orderings]
    sentences += [s + "." for s in ratio_results(experiment, rows, group)]
    sentences += [s + "." for _, s in regime_results(experiment, rows, group)]
    sentences += [s + "." for s in stopping_results(rows, group)]
    sentences += [s + "." for s in baseline_results(experiment, rows, group)]
    if preset is not None and preset.cannot_show and claim:
        sentences.append(f"What this preset cannot show: {preset.cannot_show}.")
        full = Group("paper", "")
        if group.preset != "paper" and _in(rows, full):
            sentences.append(
                f"At full length, [the paper preset](#{_anchor(full)}): {verdict(experiment, rows, full)[0]}"
            )
    return sentences


def stopping_results(rows, group: Group) -> list[str]:
    """For runs that train until a stopping rule fires (``early_stopping_patience``): per
    variant, how many seeds the rule stopped and where their validation error was lowest, or
    that a run reached its epoch cap with its validation error still falling (its lowest in its
    last epochs): did each variant train until its validation error stopped improving?"""
    done = [r for r in _in(rows, group) if r["_config"].get("early_stopping_patience") is not None]
    out = []
    for variant in sorted({r["variant"] for r in done}, key=lambda v: min(i for i, r in enumerate(done) if r["variant"] == v)):
        for dataset in sorted({r["dataset"] for r in done if r["variant"] == variant}):
            mine = [r for r in done if r["variant"] == variant and r["dataset"] == dataset]
            best = [_best_val_epoch(r) for r in mine]
            if any(b is None for b in best):
                continue
            where = f" on {dataset}" if len({r["dataset"] for r in done}) > 1 else ""
            patience = mine[0]["_config"]["early_stopping_patience"]
            stopped = [r for r in mine if r["stopped_early"]]
            text = (
                f"{variant}{where}: the stopping rule ({patience} epochs without a lower validation error) "
                f"ended {len(stopped)} of {len(mine)} runs; lowest validation error at epoch "
                f"{_spread([b for b in best])} of {_spread([r['epochs_run'] for r in mine])} trained"
            )
            capped = [r for r, b in zip(mine, best, strict=True) if not r["stopped_early"] and r["epochs_run"] - b < patience]
            if capped:
                text += (
                    f"; {len(capped)} reached the {capped[0]['epochs']}-epoch cap with the validation error "
                    "still falling (its lowest within the last "
                    f"{patience} epochs)"
                )
            else:
                text += ": its validation error had stopped improving in every run"
            out.append(text)
    return out


def _best_val_epoch(row) -> int | None:
    errors = [e for e in val_errors(row["_history"])]
    if not errors or all(math.isnan(e) for e in errors):
        return None
    return min(range(len(errors)), key=lambda i: (errors[i], i)) + 1


def _spread(values: Sequence[float]) -> str:
    """``31`` for one value, ``31 ± 2`` (mean ± sample std) for more."""
    if len(values) == 1:
        return f"{values[0]:g}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def baseline_results(experiment: Experiment, rows, group: Group) -> list[str]:
    """For a group run with ``--set`` overrides (another precision, say): each variant's metric
    against the same preset's runs without them, the seeds paired and the difference read
    against its noise by ``gap_verdict`` (``HOLDS``: the overrides raise the metric beyond the
    noise; ``DOES_NOT_HOLD``: they lower it beyond it)."""
    if not group.overrides:
        return []
    base_group = Group(group.preset, "", group.tuned, group.earlier_models)
    done, base = _in(rows, group), _in(rows, base_group)
    out = []
    for dataset in sorted({r["dataset"] for r in done}):
        for variant in [v for v in experiment.variants if any(r["variant"] == v for r in done)]:
            mine = _by_seed(done, variant, dataset, "value")
            theirs = _by_seed(base, variant, dataset, "value")
            seeds = sorted(set(mine) & set(theirs), key=str)
            if not seeds:
                continue
            ours = cell_stat(done, variant, dataset, "metric")
            without = cell_stat(base, variant, dataset, "metric")
            gaps = [mine[s] - theirs[s] for s in seeds]
            if len(seeds) == 1:
                reading = f"{gaps[0]:+.2f} (one seed: the noise is not measured)"
            else:
                status = gap_verdict(gaps).status
                size = f"{statistics.fmean(gaps):+.2f} ± {statistics.stdev(gaps):.2f} over {len(seeds)} paired seeds"
                reading = {
                    WITHIN_NOISE: f"within the seeds' noise ({size})",
                    HOLDS: f"higher beyond the seeds' noise ({size})",
                    DOES_NOT_HOLD: f"lower beyond the seeds' noise ({size})",
                }[status]
            out.append(
                f"{variant} with --set {group.overrides}: {_stat_text(ours)} against {_stat_text(without)} "
                f"without ({experiment.metric_label()}{' on ' + dataset if len({r['dataset'] for r in done}) > 1 else ''}): {reading}"
            )
    return out


def _anchor(group: Group) -> str:
    """The link fragment of a group's section heading (``## Preset `label` ``), as GitHub
    makes it: lower case, spaces to hyphens, punctuation dropped."""
    text = f"preset {group.label}".lower()
    return "".join(c for c in text.replace(" ", "-") if c.isalnum() or c in "-_")


def _on(row, rows) -> str:
    return f" ({row['dataset']})" if len({r["dataset"] for r in rows}) > 1 else ""


# --- plots --------------------------------------------------------------------------------------


def _mean_curve(
    histories: Sequence[Sequence[Mapping[str, Any]]], which
) -> tuple[list[int], list[float]]:
    """Mean over runs of a per-epoch error, for the epochs every run has."""
    curves = [which(h) for h in histories if h]
    if not curves:
        return [], []
    length = min(len(c) for c in curves)
    means = [sum(c[i] for c in curves) / len(curves) for i in range(length)]
    return list(range(1, length + 1)), means


def plot_curves(experiment: Experiment, rows, group: Group, dataset: str) -> bytes:
    """A PNG of error per epoch for every variant of a group on a dataset (mean over seeds).

    Training error is dashed and validation error solid (Fig. 6 of He et al. draws training
    dashed and test bold; the validation split stands in for the test set here).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    done = [r for r in _in(rows, group) if r["dataset"] == dataset]
    present = [v for v in experiment.variants if any(r["variant"] == v for r in done)]
    panels = {t: [v for v in vs if v in present] for t, vs in experiment.panels.items()} or {
        "": present
    }
    panels = {t: vs for t, vs in panels.items() if vs} or {"": present}
    fig = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = {v: f"C{i}" for i, v in enumerate(experiment.variants)}
    for ax, (title, variants) in zip(axes, panels.items(), strict=True):
        for variant in variants:
            histories = [r["_history"] for r in done if r["variant"] == variant]
            n = len(histories)
            for which, style, name in ((train_errors, "--", "train"), (val_errors, "-", "val")):
                if name not in experiment.curves:
                    continue
                epochs, errors = _mean_curve(histories, which)
                if not epochs or all(math.isnan(e) for e in errors):
                    continue
                solid = style if len(experiment.curves) > 1 else "-"
                ax.plot(
                    epochs, errors, solid, color=colours[variant], marker="o" if len(epochs) <= 5 else None,
                    linewidth=1.0 if name == "train" and len(experiment.curves) > 1 else 2.0,
                    label=f"{variant} {name} (n={n})",
                )  # fmt: skip
        for epoch in _lr_changes(done):
            ax.axvline(epoch + 0.5, color="0.6", linestyle=":", linewidth=1.0)
        if experiment.metric == "epochs_to_train_error":
            ax.axhline(experiment.target_train_error, color="0.4", linestyle=":", linewidth=1.2,
                       label=f"{experiment.target_train_error:g}% target")  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("error (%)")
        ax.set_title(title or experiment.title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    what = " and ".join(
        {"train": "training error (dashed)", "val": "validation error (solid)"}[c]
        for c in experiment.curves
    )
    if _lr_changes(done):
        what += "; learning-rate changes dotted"
    if len(experiment.curves) == 1:
        what = what.replace(" (dashed)", "").replace(" (solid)", "")
    title = f"{experiment.name}, {group.label} preset, {dataset}: {what}"
    if len(title) > 60 * len(panels):  # wider than the figure at this size: two lines
        title = title.replace(": ", "\n", 1)
    fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _lr_changes(done) -> list[int]:
    """The epochs after which the learning rate changed, in every run drawn that trained past
    them (the schedule's drops, drawn as dotted lines between the epochs)."""
    changes = None
    for r in done:
        rates = [h.get("lr") for h in r["_history"]]
        mine = {e for e in range(1, len(rates)) if None not in (rates[e - 1], rates[e]) and rates[e] != rates[e - 1]}
        changes = mine if changes is None else changes & mine
    return sorted(changes or ())


def _plot_name(group: Group, dataset: str) -> str:
    return f"{group.stem}-{dataset}{PLOT_SUFFIX}"


# --- the files ----------------------------------------------------------------------------------


def has_records(name: str, out_dir: str | Path = DEFAULT_OUT_DIR) -> bool:
    """Whether ``<out_dir>/<name>/records.jsonl`` exists (a report has something to show)."""
    return (Path(out_dir) / get_experiment(name).name / RECORDS_FILE).is_file()


def load_rows(experiment: Experiment, out_dir: str | Path = DEFAULT_OUT_DIR) -> tuple[list[dict], int]:
    """``run_rows`` of ``<out_dir>/<name>/records.jsonl`` (no rows if it does not exist)."""
    path = Path(out_dir) / experiment.name / RECORDS_FILE
    records = read_records(path) if path.is_file() else []
    return run_rows(experiment, records)


def runs_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The runs as CSV text (``RUN_COLUMNS``), sorted by group, phase, variant, dataset, seed."""
    import pandas as pd

    frame = pd.DataFrame(
        [{c: r.get(c) for c in RUN_COLUMNS} for r in rows], columns=list(RUN_COLUMNS)
    )
    if len(frame):
        frame = frame.sort_values(
            ["preset", "overrides", "tuned", "phase", "variant", "dataset", "seed", "sweep_value"],
            kind="stable",
            na_position="first",
        )
    return frame.to_csv(index=False)


def write_report(name: str, out_dir: str | Path = DEFAULT_OUT_DIR) -> Path:
    """Regenerate ``<out_dir>/<name>/``'s README.md, results.csv and plots from its records
    (and its keras-tuner search's report, if it has one).

    Returns:
        The path of the README.

    Raises:
        UserError: an unknown experiment.
        DataError: a damaged records file (the message names file:line).
    """
    from keras_cnns import tuning

    experiment = get_experiment(name)
    exp_dir = Path(out_dir) / experiment.name
    if tuning.has_search(name, out_dir):  # first: the page links the search's report
        tuning.write_reports(name, out_dir)
    with exclusive(exp_dir):
        return _write_report(experiment, exp_dir, out_dir)


def _write_report(experiment: Experiment, exp_dir: Path, out_dir: str | Path) -> Path:
    set_aside_torn_tail(exp_dir / RECORDS_FILE)  # a line left by a killed run does not block this
    rows, superseded = load_rows(experiment, out_dir)
    plots: dict[Group, list[str]] = {}
    for group in groups(rows):
        for dataset in sorted({r["dataset"] for r in _in(rows, group)}):
            file = _plot_name(group, dataset)
            atomic_write_bytes(exp_dir / file, plot_curves(experiment, rows, group, dataset))
            plots.setdefault(group, []).append(file)
    wanted = {f for files in plots.values() for f in files}
    if exp_dir.is_dir():
        for stale in exp_dir.glob(f"*{PLOT_SUFFIX}"):
            if stale.name not in wanted:
                stale.unlink(missing_ok=True)
    atomic_write_text(exp_dir / CSV_FILE, runs_csv(rows))
    path = exp_dir / REPORT_FILE
    searched = (exp_dir / TUNING_REPORT_FILE).is_file()
    atomic_write_text(path, report_markdown(experiment, rows, plots, superseded, searched=searched))
    return path


def write_index(out_dir: str | Path = DEFAULT_OUT_DIR) -> Path:
    """Regenerate ``<out_dir>/README.md``: one line per experiment."""
    with exclusive(out_dir):
        return _write_index(out_dir)


def _write_index(out_dir: str | Path) -> Path:
    lines = [
        "# Results",
        "",
        "Generated by `keras-cnns report` from each experiment's `records.jsonl`; never edited by "
        "hand. Each experiment's README has the tables (paper | ours | difference), the hardware, "
        "the deviations from the paper and the plots. A smoke preset is a CPU check of the "
        "pipeline on a small real-data subset, not a reproduction.",
        "",
        "| experiment | paper | presets recorded | what the runs show (most complete preset) |",
        "|---|---|---|---|",
    ]
    for name in list_experiments():
        experiment = get_experiment(name)
        set_aside_torn_tail(Path(out_dir) / name / RECORDS_FILE)
        rows, _ = load_rows(experiment, out_dir)
        found = [g for g in groups(rows) if _in(rows, g)]
        if found:
            presets = ", ".join(f"{g.label} ({_hardware(_in(rows, g))})" for g in found)
            # Every current group that tests the claim, whole; else the first group's headline
            # (a smoke check's orderings are noise: its headline says so).
            testing = [
                g for g in found
                if not g.earlier_models and tests_the_claim(experiment, g, training_fraction(experiment, _in(rows, g)))
            ]  # fmt: skip
            summary = " ".join(
                " ".join(verdict(experiment, rows, g)) for g in testing
            ) or verdict(experiment, rows, found[0])[0]
            summary = summary.replace("](#", f"]({name}/{REPORT_FILE}#")
        else:
            presets = "none yet"
            summary = f"not run yet: `keras-cnns reproduce {name} --preset smoke`"
        # Only experiments with records (or a page) are linked: a user's runs/ holds pages of
        # the experiments they ran, and no others.
        page = Path(out_dir) / name / REPORT_FILE
        title = f"[{name}]({name}/{REPORT_FILE})" if rows or page.is_file() else name
        lines.append(f"| {title} | {experiment.paper} | {presets} | {_cell(summary)} |")
    path = Path(out_dir) / INDEX_FILE
    atomic_write_text(path, "\n".join(lines) + "\n")
    _update_front_page(Path(out_dir), lines[-(len(list_experiments()) + 2) :])
    return path


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def _update_front_page(out_dir: Path, table: Sequence[str]) -> None:
    """Copy the index table into the project README's results block, when there is one.

    The block sits between ``README_START`` and ``README_END`` in the README beside
    ``out_dir``; a README without the markers (or no README) is left alone, and so is a block
    generated from another folder: runs written to ``--out runs`` never change the project
    README's table of the committed ``results/``.
    """
    readme = out_dir.resolve().parent / "README.md"
    if not readme.is_file():
        return
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return
    prefix = out_dir.name
    current = text[start + len(README_START) : end]
    if current.strip() and f"[{prefix}/]({prefix}/README.md)" not in current:
        return  # the block shows another folder (the committed results, not a user's runs/)
    rows = [
        line.replace("](", f"]({prefix}/") if line.startswith("| [") else line for line in table
    ]
    block = "\n".join(
        [
            README_START,
            "## Results",
            "",
            f"Generated by `keras-cnns report` from the run records in "
            f"[{prefix}/]({prefix}/README.md); never edited by hand.",
            "",
            *rows,
            README_END,
        ]
    )
    atomic_write_text(readme, text[:start] + block + text[end + len(README_END) :])


def headline(
    name: str,
    out_dir: str | Path = DEFAULT_OUT_DIR,
    *,
    preset: str,
    overrides: Sequence[str] = (),
    tuned: bool = False,
) -> str:
    """The first verdict sentence of one group of an experiment, prefixed by its name."""
    experiment = get_experiment(name)
    rows, _ = load_rows(experiment, out_dir)
    group = Group(preset, " ".join(o.strip() for o in overrides if o.strip()), tuned)
    return f"{experiment.name}: {verdict(experiment, rows, group)[0]}"


def summary_table(
    name: str,
    out_dir: str | Path = DEFAULT_OUT_DIR,
    *,
    preset: str,
    overrides: Sequence[str] = (),
    tuned: bool = False,
) -> str:
    """The paper | ours | difference table of one group of an experiment, as aligned text.

    The same rows as the table in the experiment's README, for a terminal; ``""`` when the
    group has no completed run.
    """
    experiment = get_experiment(name)
    rows, _ = load_rows(experiment, out_dir)
    group = Group(preset, " ".join(o.strip() for o in overrides if o.strip()), tuned)
    head, body = _summary_table(experiment, rows, group)
    if not body:
        return ""
    widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _hardware(rows) -> str:
    devices = sorted({str(r["device"]) for r in rows if r["device"]})
    return ", ".join("CPU" if d == "cpu" else d for d in devices) or "unknown device"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:+.2f}"


def _table(head: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_cell(str(c)) for c in row) + " |" for row in body]
    return lines


def report_markdown(
    experiment: Experiment,
    rows,
    plots: Mapping[Group, Sequence[str]],
    superseded: int = 0,
    *,
    searched: bool = False,
) -> str:
    """The text of ``results/<name>/README.md`` (see the module docstring); ``searched``: a
    keras-tuner search's report sits beside it (linked)."""
    lines = [
        f"# {experiment.title}",
        "",
        f"Generated by `keras-cnns report {experiment.name}` from `{RECORDS_FILE}`; do not edit. "
        f"Re-run with `keras-cnns reproduce {experiment.name} --preset {'|'.join(experiment.presets)} "
        "[--seeds N]`.",
        "",
        f"- **Paper:** {experiment.paper}",
        f"- **Claim:** {experiment.claim}",
        f"- **Compared:** {experiment.metric_label()}"
        + (
            " (training error as Keras reports it during each epoch)"
            if experiment.metric == "epochs_to_train_error"
            else ""
        )
        + "; mean ± sample std over seeds, n = number of seeds.",
        *[f"- {note}" for note in experiment.notes],
        *(
            [
                f"- **Hyperparameter search:** [{TUNING_REPORT_FILE}]({TUNING_REPORT_FILE}) (keras-tuner, "
                "scored on a validation split); runs that use its best values "
                f"(`keras-cnns reproduce {experiment.name} --from-tuning`) are reported as their own "
                "group below."
            ]
            if searched
            else []
        ),
        "",
    ]
    found = groups(rows)
    if not found:
        lines += ["No runs recorded yet.", ""]
    for group in found:
        lines += _group_section(experiment, rows, group, plots.get(group, ()))
    if superseded > 0:
        lines += [
            f"{superseded} older record(s) of the same runs (re-runs after a config change) are not shown; "
            f"they remain in `{RECORDS_FILE}`.",
            "",
        ]
    return "\n".join(lines)


def _group_section(
    experiment: Experiment, rows, group: Group, plot_files: Sequence[str]
) -> list[str]:
    done = _in(rows, group)
    everything = _in(rows, group, status=None) + _in(rows, group, phase="sweep", status=None)
    preset = experiment.presets.get(group.preset)
    lines = [f"## Preset `{group.label}`", ""]
    if group.earlier_models:
        lines += [_earlier_models_note(everything), ""]
    if preset is not None and not group.earlier_models:
        # The preset's measured runtime is that of its own runs: not of runs with other values.
        plain = not (group.overrides or group.tuned)
        lines += [preset.purpose + (f" Runtime: {preset.runtime}" if plain else ""), ""]
    lines += ["**What this run shows:** " + " ".join(verdict(experiment, rows, group)), ""]

    head, body = _summary_table(experiment, rows, group)
    if body:
        lines += _table(head, body) + [""]
        lines += [f"- {ref.name}: {ref.recipe}" for ref in experiment.references if ref.name in head]
        lines += [""] if any(ref.name in head for ref in experiment.references) else []

    runs = done or everything
    if runs:
        sources = sorted({str(r["source"]).split(":")[0] for r in runs if r["source"]})
        hosts = ", ".join(sorted({str(r["host"]) for r in runs if r["host"]}))
        backends = ", ".join(sorted({f"{r['backend']} (Keras {r['keras']})" for r in runs}))
        precisions = ", ".join(sorted({str(r["precision"]) for r in runs}))
        lines += [
            f"- Hardware: {_hardware(runs)}" + (f" ({hosts})" if hosts else ""),
            f"- Backend: {backends}; precision: {precisions}",
            f"- Data: {', '.join(sources)}"
            + (
                " (the packaged 5,000-image MNIST sample: not comparable with the paper)"
                if "sample" in sources
                else ""
            )
            + f"; {_range(runs, 'n_train')} train, {_range(runs, 'n_val')} validation, {_range(runs, 'n_test')} test images",
            f"- Seeds: {', '.join(str(s) for s in sorted({r['seed'] for r in runs}))}; "
            f"total wall time {sum(r['wall_time'] or 0 for r in everything if not r['reused']):.0f} s over "
            f"{sum(not r['reused'] for r in everything)} trained runs"
            + (
                f" ({sum(r['reused'] for r in everything)} more reused an identical sweep run)"
                if any(r["reused"] for r in everything)
                else ""
            ),
        ]
        lines += _time_lines(experiment, runs, everything) + [""]

    # Runs of earlier models trained an earlier version of the preset: its text today may not
    # describe them, so only the deviations whose conditions their own configs meet are listed.
    declared = (*experiment.deviations, *(preset.deviations if preset else ()))
    deviations = [
        d.text
        for d in declared
        if (d.when or d.variants or not group.earlier_models)
        and any(d.applies(r["variant"], r["_config"]) for r in everything)
    ]
    if group.overrides:
        deviations.append(f"Config overrides on the command line: `--set {group.overrides}`.")
    for variant, tuned in sorted({(r["variant"], r["tuned"]) for r in everything if r["tuned"]}):
        deviations.append(f"{variant}: hyperparameters from `keras-cnns tune`: `{tuned}`.")
    if deviations:
        lines += ["Deviations from the paper:", ""] + [f"- {d}" for d in deviations] + [""]

    lines += _sweep_section(experiment, rows, group)

    diverged = [r for r in everything if r["status"] == "diverged"]
    if diverged:
        lines += ["Diverged runs (not averaged in):", ""]
        lines += _table(
            ["variant", "dataset", "phase", "seed", "epoch", "run_id"],
            [[r["variant"], r["dataset"], r["phase"] + (f" {r['sweep_param']}={r['sweep_value']:g}" if r["phase"] == "sweep" else ""),
              str(r["seed"]), str((r["_divergence"] or {}).get("epoch", "?")), r["run_id"]] for r in diverged],
        ) + [""]  # fmt: skip
    for file in plot_files:
        lines += [f"![{experiment.name} {group.label} curves]({file})", ""]
    return lines


def _earlier_models_note(runs) -> str:
    """What changed in the models since an earlier-models group's runs were trained."""
    from keras_cnns.registry import get_entry

    notes: dict[str, set[str]] = {}
    for r in runs:
        notes.setdefault(get_entry(r["_model"]).revision_note, set()).add(r["_model"])
    changes = "; ".join(f"{', '.join(sorted(models))}: {note}" for note, models in sorted(notes.items()))
    revisions = ", ".join(sorted({str(r["git"])[:7] for r in runs if r.get("git")})) or "unknown"
    return (
        "These runs trained an earlier revision of their models; they are kept apart and never "
        f"averaged with runs of the current nets. Changed since: {changes}. Their recipe is the "
        f"preset's at the source revision they ran from ({revisions}), recorded with each run."
    )


def _summary_table(experiment: Experiment, rows, group: Group) -> tuple[list[str], list[list[str]]]:
    """(head, body) of a group's table: variant | dataset | paper | ours | difference | ..."""
    epochs_metric = experiment.metric == "epochs_to_train_error"
    summaries = summary_rows(experiment, rows, group)
    # Another reproduction's column only where it has a number for a row of this table.
    references = [
        ref for ref in experiment.references
        if any(ref.numbers.get(r["variant"], {}).get(r["dataset"]) is not None for r in summaries)
    ]  # fmt: skip
    head = ["variant", "dataset", "paper", *(ref.name for ref in references)]
    head += [f"ours: {experiment.metric_label()}", "difference"]
    head += (["seconds to target"] if epochs_metric else []) + [
        "final train error %",
        "epochs",
        "train images",
        "wall time s",
    ]
    body = []
    for s in summaries:
        row = [
            s["variant"], s["dataset"], _num(s["paper"]),
            *(_num(ref.numbers.get(s["variant"], {}).get(s["dataset"])) for ref in references),
            format_stat(s["stat"], digits=1 if epochs_metric else 2, max_epochs=s["epochs"]),
            _signed(s["difference"]),
        ]  # fmt: skip
        if epochs_metric:
            row.append(
                format_stat(s["seconds_to_target"], digits=1) if s["seconds_to_target"].n else "—"
            )
        row += [
            format_stat(s["final_train_error"]),
            _epochs_cell(s["epochs_run"], s["epochs"]),
            str(s["n_train"]),
            _num(s["wall_time"].mean, 0),
        ]
        body.append(row)
    return head, body


def _time_lines(experiment: Experiment, runs, everything) -> list[str]:
    """The measured training time: each variant's fastest and median epoch, and the training
    time of the whole group at the median pace (pauses left out, other jobs counted)."""
    fastest: dict[str, list[float]] = {}
    median: dict[str, list[float]] = {}
    for r in runs:
        if not math.isnan(r["epoch_time"]):
            fastest.setdefault(r["variant"], []).append(r["epoch_time"])
            median.setdefault(r["variant"], []).append(r["median_epoch_time"])
    if not fastest:
        return []
    rates = ", ".join(
        f"{v} {_seconds(statistics.median(fastest[v]))} ({_seconds(statistics.median(median[v]))})"
        for v in sorted(fastest, key=lambda v: _order(experiment.variants, v))
    )
    busy = sum(
        (r["epochs_run"] or 0) * r["median_epoch_time"]
        for r in everything
        if not r["reused"] and not math.isnan(r["epoch_time"])
    )
    return [
        "- Measured seconds per epoch, the first epoch (which compiles) left out: the fastest "
        f"epoch (the median in brackets): {rates}. The fastest epoch is the one other jobs on "
        "the machine disturbed least, and the one the comparisons use. "
        f"{_duration(busy)} of training in all at the median pace (each run's epochs x its "
        "median epoch; the wall time above also counts pauses)"
    ]


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:,.0f} min"


def _seconds(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:,.0f}"


def _epochs_cell(run: Sequence[int], planned: int) -> str:
    """Epochs trained (a range over seeds), with the planned number where a run stopped early
    (at its training-error target)."""
    if not run or run == [planned]:
        return str(planned)
    trained = str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"
    return f"{trained} of {planned}"


def _range(rows, column: str) -> str:
    values = sorted({r[column] for r in rows if r[column] is not None})
    if not values:
        return "?"
    return f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,}-{values[-1]:,}"


def _sweep_section(experiment: Experiment, rows, group: Group) -> list[str]:
    sweep_rows = _in(rows, group, phase="sweep", status=None)
    if not sweep_rows:
        return []
    param = sweep_rows[0]["sweep_param"]
    target = experiment.target_train_error
    lines = [f"Sweep of `{param}` (part of the experiment; seed {sweep_rows[0]['seed']}):", ""]
    body = []
    for variant, dataset in sorted(
        {(r["variant"], r["dataset"]) for r in sweep_rows},
        key=lambda c: (_order(experiment.variants, c[0]), c[1]),
    ):
        cell = sorted(
            (r for r in sweep_rows if r["variant"] == variant and r["dataset"] == dataset),
            key=lambda r: r["sweep_value"],
        )
        chosen, reason = pick_sweep(
            [
                {
                    "status": r["status"],
                    "history": r["_history"],
                    "tags": {"sweep_value": r["sweep_value"]},
                }
                for r in cell
            ],
            param,
            target,
        )
        for r in cell:
            reached = r["epochs_to_target"]
            body.append([
                variant, dataset, f"{r['sweep_value']:g}", str(r["epochs_run"]),
                str(reached) if reached is not None else "not reached",
                _num(r["final_train_error"]), r["status"],
                f"**chosen** ({reason})" if r["sweep_value"] == chosen else "",
            ])  # fmt: skip
    head = [
        "variant", "dataset", param, "epochs", f"epochs to {target:g}% train error", "final train error %", "status", "",
    ]  # fmt: skip
    return lines + _table(head, body) + [""]
