"""What a keras-tuner search found: its report, and its best values fed back to the runs.

``write_reports(name, out_dir)`` regenerates, from keras-tuner's own trial files under
``<out_dir>/<name>/tuning/<variant>/`` and the engine's records of each trial: ``tuning.md``
and ``tuning.csv`` (every trial, numbered as keras-tuner announces them), ``tuning.png`` (the
score per trial and against the first hyperparameter) and ``tuning_best.json`` (each variant's
best values), which ``load_best`` / ``best_overrides`` read back for
``keras-cnns reproduce --from-tuning``. The search itself is ``keras_cnns.lab.tuning``; nothing
here imports keras-tuner or Keras.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from keras_cnns.errors import UserError
from keras_cnns.lab import experiments, writer
from keras_cnns.lab.experiments import HyperParam
from keras_cnns.storage import (
    DEFAULT_OUT_DIR,
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    read_records,
    set_aside_torn_tail,
)
from keras_cnns.training.record import RECORDS_FILE, RunRecord

OBJECTIVE = "val_accuracy"  # maximised; the held-out validation split, never the test set
TUNING_DIR = "tuning"
SEARCH_FILE = "search.json"
REPORT_MD = experiments.TUNING_REPORT_FILE
REPORT_CSV = "tuning.csv"
BEST_JSON = "tuning_best.json"
REPORT_PNG = "tuning.png"


def space_hash(space: Sequence[HyperParam]) -> str:
    """A short stable hash of a search space: any change to a range or choice changes it."""
    text = json.dumps([p.to_dict() for p in space], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def config_fields() -> set[str]:
    """The names of ``TrainConfig``'s fields (a searched name that is not one is a builder option)."""
    from keras_cnns.training.config import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def values_to_overrides(values: Mapping[str, Any]) -> list[str]:
    """``key=value`` strings for ``TrainConfig.with_overrides``.

    Config fields are written as ``name=value``; model builder options as
    ``model_kwargs.name=value``.
    """
    fields = config_fields()
    out = []
    for key, value in values.items():
        if key.startswith("tuner/"):
            continue
        prefix = "" if key in fields else "model_kwargs."
        out.append(f"{prefix}{key}={_format_value(value)}")
    return out


def _load_trials(directory: Path) -> list:
    """keras-tuner's trials of one search, from its own trial files."""
    from keras_tuner.engine.trial import Trial

    return [Trial.load(str(p)) for p in sorted(directory.glob("trial_*/trial.json"))]


def _engine_records(directory: Path) -> dict[str, RunRecord]:
    """The engine's last record of each trial (diverged trials report nothing to keras-tuner)."""
    path = directory / RECORDS_FILE
    if not path.exists():
        return {}
    set_aside_torn_tail(path)  # a trial killed mid-append: the report goes on
    records = (RunRecord.from_json(d, where=str(path)) for d in read_records(path, tuning=True))
    return {str(r.tags.get("trial")): r for r in records}


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
        info = {"epochs": len(record.history), "wall_time": record.wall_time} if record else {}
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
        meta = read_json(path, fix="delete it or re-run with --overwrite")
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
    from matplotlib.ticker import MaxNLocator

    fig = writer.figure(11, 4.2)
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
    return writer.png(fig)


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


def _value_cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _markdown_table(frame) -> str:
    """A GitHub markdown table of a pandas frame (pandas' to_markdown needs tabulate)."""
    body = [[_value_cell(v) for v in row] for row in frame.astype(object).itertuples(index=False)]
    return writer.table(list(frame.columns), body)


# --- feeding the results back -------------------------------------------------------------------


def load_best(name: str, out_dir: str | Path = DEFAULT_OUT_DIR) -> dict[str, Any] | None:
    """The content of ``out_dir/name/tuning_best.json``, or None if no search has finished a trial.

    Each variant's entry carries ``stale: True`` when the current search space of ``name``
    differs from the one its values were found in.

    Raises:
        DataError: the file exists but is not valid JSON.
    """
    best = read_json(Path(out_dir) / name / BEST_JSON, fix="delete it or re-run with --overwrite")
    if best is None:
        return None
    current = space_hash(experiments.get_experiment(name).search_space)
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
