"""The pages: each experiment's README, CSV and plots, the results index and the README block.

``write_report(name, out_dir)`` regenerates everything under ``<out_dir>/<name>/`` from that
experiment's ``records.jsonl`` and nothing else (``out_dir``: ``runs`` by default, the
committed ``results`` when asked for):

* ``README.md``: per group (a smoke table never mixes with a quick one; runs with ``--set``
  overrides, tuned values or an earlier model revision form their own group), a table
  ``variant | dataset | paper | ours (mean ± std, n) | difference``, the hardware, backend,
  precision and wall time, the deviations from the paper that its runs have, the sweep (if
  any), diverged runs listed apart (never averaged in), and the verdict
  (``keras_cnns.lab.claims``).
* ``results.csv``: one row per run (sweep and diverged runs included, marked).
* ``<group>-<dataset>-curves.png``: error per epoch for every variant (mean over seeds).

``write_index(out_dir)`` writes ``<out_dir>/README.md``, one line per experiment, and copies it
into the project README's results block. Every file is written atomically
(``keras_cnns.storage.atomic_write_*``), and each regeneration holds an exclusive lock on the
directory it writes (``keras_cnns.storage.exclusive``) from reading the records to writing the
last file, so processes appending records and regenerating tables at once leave tables
computed from the last records.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from keras_cnns.lab import writer
from keras_cnns.lab.claims import tests_the_claim, training_fraction, verdict
from keras_cnns.lab.experiments import (
    TUNING_REPORT_FILE,
    Experiment,
    get_experiment,
    list_experiments,
)
from keras_cnns.lab.runs import (
    RUN_COLUMNS,
    Group,
    format_stat,
    groups,
    in_group,
    load_rows,
    mean_curve,
    pick_sweep,
    summary_rows,
    train_errors,
    val_errors,
    variant_order,
)
from keras_cnns.storage import (
    DEFAULT_OUT_DIR,
    atomic_write_bytes,
    atomic_write_text,
    exclusive,
    set_aside_torn_tail,
)
from keras_cnns.training.record import RECORDS_FILE

INDEX_FILE = "README.md"
REPORT_FILE = "README.md"
CSV_FILE = "results.csv"
PLOT_SUFFIX = "-curves.png"
# A curves plot whose every curve ends at or below this error (%) shows 0 to twice it.
CUT_AXIS_BELOW = 10.0
# The project README's results block, between these markers (see ``write_index``).
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def plot_curves(experiment: Experiment, rows, group: Group, dataset: str) -> bytes:
    """A PNG of error per epoch for every variant of a group on a dataset (mean over seeds).

    Training error is dashed and validation error solid (Fig. 6 of He et al. draws training
    dashed and test bold; the validation split stands in for the test set here).
    """
    from matplotlib.ticker import MaxNLocator

    done = [r for r in in_group(rows, group) if r["dataset"] == dataset]
    present = [v for v in experiment.variants if any(r["variant"] == v for r in done)]
    panels = {t: [v for v in vs if v in present] for t, vs in experiment.panels.items()} or {
        "": present
    }
    panels = {t: vs for t, vs in panels.items() if vs} or {"": present}
    fig = writer.figure(5.5 * len(panels), 4.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = {v: f"C{i}" for i, v in enumerate(experiment.variants)}
    finals: list[float] = []  # each curve's last error: where the error axis may be cut
    for ax, (title, variants) in zip(axes, panels.items(), strict=True):
        for variant in variants:
            histories = [r["_history"] for r in done if r["variant"] == variant]
            n = len(histories)
            for which, style, name in ((train_errors, "--", "train"), (val_errors, "-", "val")):
                if name not in experiment.curves:
                    continue
                epochs, errors = mean_curve(histories, which)
                if not epochs or all(math.isnan(e) for e in errors):
                    continue
                finals.append(errors[-1])
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
    # Runs trained to convergence end near the bottom: the axis stops at 20% as Fig. 6's does,
    # so their last epochs (where the variants part) are not squeezed under the first ones.
    # (Not where a training-error target is drawn: the time to reach it is the point there.)
    converged = max((f for f in finals if not math.isnan(f)), default=100.0) <= CUT_AXIS_BELOW
    if converged and experiment.metric != "epochs_to_train_error":
        for ax in axes:
            ax.set_ylim(0, 2 * CUT_AXIS_BELOW)
        what += f"; error axis cut at {2 * CUT_AXIS_BELOW:g}%"
    title = f"{experiment.name}, preset {group.label}, {dataset}: {what}"
    # Wrapped to the figure's width at this size (about 60 characters a panel).
    title = "\n".join(textwrap.wrap(title, 60 * len(panels), break_on_hyphens=False))
    fig.suptitle(title, fontsize=10)
    return writer.png(fig)


def _lr_changes(done) -> list[int]:
    """The epochs after which the learning rate changed, in every run drawn that trained past
    them (the schedule's drops, drawn as dotted lines between the epochs)."""
    changes = None
    for r in done:
        rates = [h.lr for h in r["_history"]]
        mine = {e for e in range(1, len(rates)) if None not in (rates[e - 1], rates[e]) and rates[e] != rates[e - 1]}
        changes = mine if changes is None else changes & mine
    return sorted(changes or ())


def _plot_name(group: Group, dataset: str) -> str:
    return f"{group.stem}-{dataset}{PLOT_SUFFIX}"


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
    from keras_cnns.lab import tuning_report

    experiment = get_experiment(name)
    exp_dir = Path(out_dir) / experiment.name
    if tuning_report.has_search(name, out_dir):  # first: the page links the search's report
        tuning_report.write_reports(name, out_dir)
    with exclusive(exp_dir):
        return _write_report(experiment, exp_dir, out_dir)


def _write_report(experiment: Experiment, exp_dir: Path, out_dir: str | Path) -> Path:
    set_aside_torn_tail(exp_dir / RECORDS_FILE)  # a line left by a killed run does not block this
    rows, superseded = load_rows(experiment, out_dir)
    plots: dict[Group, list[str]] = {}
    for group in groups(rows):
        for dataset in sorted({r["dataset"] for r in in_group(rows, group)}):
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
    ]
    body = []
    for name in list_experiments():
        experiment = get_experiment(name)
        set_aside_torn_tail(Path(out_dir) / name / RECORDS_FILE)
        rows, _ = load_rows(experiment, out_dir)
        found = [g for g in groups(rows) if in_group(rows, g)]
        if found:
            presets = "; ".join(f"{g.label} ({_hardware(in_group(rows, g))})" for g in found)
            # Every current group that tests the claim, whole; else the first group's headline
            # (a smoke check's orderings are noise: its headline says so).
            testing = [
                g for g in found
                if not g.earlier_models and tests_the_claim(experiment, g, training_fraction(experiment, in_group(rows, g)))
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
        body.append([title, experiment.paper, presets, summary])
    table = writer.table_lines(["experiment", "paper", "presets recorded", "what the runs show (most complete preset)"], body)
    path = Path(out_dir) / INDEX_FILE
    atomic_write_text(path, "\n".join([*lines, *table]) + "\n")
    _update_front_page(Path(out_dir), table)
    return path


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


def _hardware(rows) -> str:
    devices = sorted({str(r["device"]) for r in rows if r["device"]})
    return ", ".join("CPU" if d == "cpu" else d for d in devices) or "unknown device"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:+.2f}"


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
    done = in_group(rows, group)
    everything = in_group(rows, group, status=None) + in_group(rows, group, phase="sweep", status=None)
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
        lines += writer.table_lines(head, body) + [""]
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
        lines += writer.table_lines(
            ["variant", "dataset", "phase", "seed", "epoch", "run_id"],
            [[r["variant"], r["dataset"], r["phase"] + (f" {r['sweep_param']}={r['sweep_value']:g}" if r["phase"] == "sweep" else ""),
              str(r["seed"]), str((r["_record"].divergence or {}).get("epoch", "?")), r["run_id"]] for r in diverged],
        ) + [""]  # fmt: skip
    for file in plot_files:
        lines += [f"![{experiment.name} {group.label} curves]({file})", ""]
    return lines


def _earlier_models_note(runs) -> str:
    """What changed in the models since an earlier-models group's runs were trained."""
    from keras_cnns.registry import get_entry

    notes: dict[str, set[str]] = {}
    for r in runs:
        model = r["_record"].model
        notes.setdefault(get_entry(model).revision_note, set()).add(model)
    changes = "; ".join(f"{', '.join(sorted(models))}: {note}" for note, models in sorted(notes.items()))
    revisions = ", ".join(sorted({r["_record"].git[:7] for r in runs if r["_record"].git})) or "unknown"
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
        for v in sorted(fastest, key=lambda v: variant_order(experiment.variants, v))
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
        f"{writer.duration(busy)} of training in all at the median pace (each run's epochs x its "
        "median epoch; the wall time above also counts pauses)"
    ]


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
    sweep_rows = in_group(rows, group, phase="sweep", status=None)
    if not sweep_rows:
        return []
    param = sweep_rows[0]["sweep_param"]
    target = experiment.target_train_error
    lines = [f"Sweep of `{param}` (part of the experiment; seed {sweep_rows[0]['seed']}):", ""]
    body = []
    for variant, dataset in sorted(
        {(r["variant"], r["dataset"]) for r in sweep_rows},
        key=lambda c: (variant_order(experiment.variants, c[0]), c[1]),
    ):
        cell = sorted(
            (r for r in sweep_rows if r["variant"] == variant and r["dataset"] == dataset),
            key=lambda r: r["sweep_value"],
        )
        chosen, reason = pick_sweep([r["_record"] for r in cell], param, target)
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
    return lines + writer.table_lines(head, body) + [""]
