"""The paper's claims checked on a group's rows: pure functions from rows to outcomes.

Each check returns what it found with the numbers, read against the noise of the seeds by one
rule (``gap_verdict``): the paper's orderings (``ordering_results``), its ratios
(``ratio_results``), the regime a scaled-down preset needs (``regime_results``), whether a
stopping rule let each run train until its validation error stopped improving
(``stopping_results``), a group with ``--set`` overrides against the preset's own runs
(``baseline_results``), and the group's verdict in sentences (``verdict``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keras_cnns.lab.experiments import CURVE_QUANTITY, Experiment, Regime
from keras_cnns.lab.runs import (
    QUANTITY_COLUMN,
    TRAIN_SIZES,
    Group,
    Stat,
    best_val_epoch,
    by_seed,
    cell_stat,
    in_group,
    mean_curve,
    summary_rows,
    train_errors,
    val_errors,
)

# Below this fraction of the paper recipe's images seen, a run says nothing about the claim
# (unless its preset is a scaled-down test of it: see ``tests_the_claim``).
TOO_LITTLE = 0.05
# From this fraction on, a run had (about) the paper's full training.
FULL = 0.9


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


# What a claim checked on the runs comes to (``Outcome.status``).
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


def ordering_results(experiment: Experiment, rows, group: Group) -> list[Outcome]:
    """An ``Outcome`` for each of the paper's orderings on each dataset measured.

    Seeds are paired: the gap of each seed both variants ran is read by ``gap_verdict``.
    ``UNDECIDED`` when the runs cannot decide (a variant reached an epochs target in some seeds
    only). A test-error ordering also says when the validation split (the tested weights'
    validation error) ranks the two the other way.
    """
    done = in_group(rows, group)
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
            column = QUANTITY_COLUMN[o.quantity]
            low, high = by_seed(done, o.lower, dataset, column), by_seed(done, o.higher, dataset, column)
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
            r["_record"].selected_val_error for r in done if r["variant"] == variant and r["dataset"] == dataset
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
    curves = {v: mean_curve([r["_history"] for r in done if r["variant"] == v and r["dataset"] == dataset], train_errors)[1] for v in (o.lower, o.higher)}
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
        later = _holds_from(counts[WITHIN_NOISE] + counts[DOES_NOT_HOLD], epochs, lo, hi, "beyond noise ")
        return Outcome(status, f"{what} ({span}, {len(seeds)} seeds): the paper's ordering " + "; ".join(parts) + later)
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
        f"{what} ({span}): the paper's ordering does not hold at {_epoch_list(above, len(epochs))}"
        f"{_holds_from(above, epochs, lo, hi)}{one}"
    ))


def _holds_from(failing: Sequence[int], epochs: range, lo, hi, how: str = "") -> str:
    """Where the epochs the ordering fails at are the first ones (a deeper net's slower start),
    ``; it holds at every epoch from N on (gap ...)``; else nothing."""
    failing = sorted(failing)
    if not failing or failing != list(range(epochs[0], failing[-1] + 1)) or failing[-1] == epochs[-1]:
        return ""
    start = failing[-1] + 1
    gaps = [hi[e - 1] - lo[e - 1] for e in range(start, epochs[-1] + 1)]
    return f"; it holds {how}at every epoch from {start} on (gap {min(gaps):.1f} to {max(gaps):.1f} points)"


def _epoch_list(epochs: Sequence[int], total: int) -> str:
    """``k of n epochs: 3, 4, 9 ...`` (at most eight listed)."""
    listed = ", ".join(str(e) for e in epochs[:8]) + (" ..." if len(epochs) > 8 else "")
    return f"{len(epochs)} of {total} epochs ({listed})"


def ratio_results(experiment: Experiment, rows, group: Group) -> list[str]:
    """A sentence per stated ratio and dataset: ours beside the paper's."""
    done = in_group(rows, group)
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
    done = in_group(rows, group)
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
    epochs, val = mean_curve(histories, val_errors)
    train = mean_curve(histories, train_errors)[1]
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
    done = in_group(rows, group)
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
    name = group.phrase  # the group whole: the index shows the headline on its own
    if not claim:
        head = (
            f"{name}: too little training to compare with the paper ({pct} of the "
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
        ) + f", {_seeds_phrase(done)}"
        if decided and not noisy:
            verb = (
                "all hold"
                if held == len(decided)
                else ("none holds" if held == 0 else f"{held} of {len(decided)} hold")
            )
            head = f"{name}, {budget}: the paper's orderings {verb}"
        elif decided or noisy:
            counts = [f"{held} hold", f"{len(decided) - held} do not", f"{noisy} within noise"]
            head = f"{name}, {budget}: of the paper's {len(decided) + noisy} orderings " + ", ".join(
                c for c in counts if not c.startswith("0 ")
            )
        else:
            head = f"{name}, {budget}"
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
    sentences += [s + "." for s in untested_orderings(experiment, rows, group)]
    sentences += [s + "." for s in ratio_results(experiment, rows, group)]
    sentences += [s + "." for _, s in regime_results(experiment, rows, group)]
    sentences += [s + "." for s in stopping_results(rows, group)]
    sentences += [s + "." for s in baseline_results(experiment, rows, group)]
    if preset is not None and preset.cannot_show and claim:
        sentences.append(f"What this preset cannot show: {preset.cannot_show}.")
        full = Group("paper", "")
        if group.preset != "paper" and in_group(rows, full):
            sentences.append(
                f"At full length, [the paper preset](#{_anchor(full)}): {verdict(experiment, rows, full)[0]}"
            )
    return sentences


def untested_orderings(experiment: Experiment, rows, group: Group) -> list[str]:
    """The paper's orderings that one of the group's variants waits on: those of whose two
    variants only one has completed runs in the group (a long preset's runs finish one by one).
    None for tuned values, which are tuned for some variants only."""
    if group.tuned:
        return []
    present = {r["variant"] for r in in_group(rows, group)}
    pairs, missing = [], []
    for o in experiment.orderings:
        if (o.lower in present) == (o.higher in present) or (o.lower, o.higher) in pairs:
            continue
        pairs.append((o.lower, o.higher))
        missing += [v for v in (o.lower, o.higher) if v not in present and v not in missing]
    if not pairs:
        return []
    return [
        f"Not tested yet, for want of a completed run of {', '.join(missing)} among these runs: "
        + ", ".join(f"{lo} below {hi}" for lo, hi in pairs)
    ]


def stopping_results(rows, group: Group) -> list[str]:
    """For runs that train until a stopping rule fires (``early_stopping_patience``): per
    variant, how many seeds the rule stopped and where their validation error was lowest, or
    that a run reached its epoch cap with its validation error still falling (its lowest in its
    last epochs): did each variant train until its validation error stopped improving?"""
    done = [r for r in in_group(rows, group) if r["_config"].get("early_stopping_patience") is not None]
    out = []
    for variant in sorted({r["variant"] for r in done}, key=lambda v: min(i for i, r in enumerate(done) if r["variant"] == v)):
        for dataset in sorted({r["dataset"] for r in done if r["variant"] == variant}):
            mine = [r for r in done if r["variant"] == variant and r["dataset"] == dataset]
            best = [best_val_epoch(r["_history"]) for r in mine]
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
    done, base = in_group(rows, group), in_group(rows, base_group)
    out = []
    for dataset in sorted({r["dataset"] for r in done}):
        for variant in [v for v in experiment.variants if any(r["variant"] == v for r in done)]:
            mine = by_seed(done, variant, dataset, "value")
            theirs = by_seed(base, variant, dataset, "value")
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
            fast = cell_stat(done, variant, dataset, "epoch_time")
            slow = cell_stat(base, variant, dataset, "epoch_time")
            if fast.n and slow.n and slow.mean > 0:
                # The runs trained one after another under whatever else the machine ran: the
                # interleaved measurement of a precision's speed is the benchmark's.
                out.append(
                    f"{variant} seconds per epoch (fastest epoch) with --set {group.overrides} over "
                    f"without: {fast.mean / slow.mean:.2f}; from runs that did not take turns on the "
                    "machine, so other jobs' load can move it (measured taking turns: "
                    "[benchmarks/README.md](../benchmarks/README.md))"
                )
    return out


def _seeds_phrase(done) -> str:
    """How many seeds the group's verdict rests on: ``3 seeds``, or ``1 to 3 seeds a variant``."""
    counts = {}
    for r in done:
        counts.setdefault((r["variant"], r["dataset"]), set()).add(r["seed"])
    sizes = sorted({len(s) for s in counts.values()})
    if len(sizes) == 1:
        return f"{sizes[0]} seed" + ("s" if sizes[0] > 1 else "")
    return f"{sizes[0]} to {sizes[-1]} seeds a variant"


def _anchor(group: Group) -> str:
    """The link fragment of a group's section heading (``## Preset `label` ``), as GitHub
    makes it: lower case, spaces to hyphens, punctuation dropped."""
    text = f"preset {group.label}".lower()
    return "".join(c for c in text.replace(" ", "-") if c.isalnum() or c in "-_")


def _on(row, rows) -> str:
    return f" ({row['dataset']})" if len({r["dataset"] for r in rows}) > 1 else ""
