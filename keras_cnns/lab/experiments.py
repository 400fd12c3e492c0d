"""The experiments as data: what a paper claims, and the presets that re-run it.

An ``Experiment`` is what a paper claims and how it is re-run: its variants as
``TrainConfig``\\ s for the ``paper`` preset (the paper's recipe, with every unstated choice
written down as a deviation), the paper's numbers, the metric compared, and two smaller
presets derived from the paper's with ``dataclasses.replace``: ``quick`` (one GPU, about ten
minutes of training) and ``smoke`` (CPU, under two minutes, a real-data subset). A ``Sweep``
makes a small search part of an experiment (Krizhevsky et al. tuned each net's learning rate
for speed); ``Ordering`` and ``Ratio`` are the paper's claims the report checks, and a
``Regime`` what a scaled-down preset needs of its runs for the comparison to mean something.

An experiment carries everything said about it once: its presets' measured runtimes
(``Preset.runtime``), its deviations from the paper (``Deviation``, shown where a report's runs
have them), other reproductions' numbers (``Reference``) and the hyperparameters a keras-tuner
search may vary (``search_space``, of ``HyperParam``\\ s). Which records are the same run is
defined once, by ``keras_cnns.training.record``.

The reproductions themselves live in ``reproductions/``, one module per paper claim, each
holding one ``EXPERIMENT``; ``get_experiment`` imports it on first use.

This module sits below everything that uses experiments: the runner
(``keras_cnns.lab.runner``), the reports (``keras_cnns.lab.report``) and the tuner
(``keras_cnns.lab.tuning``) import it, and it imports none of them. Nothing here imports Keras.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from keras_cnns.errors import UserError
from keras_cnns.training.config import TrainConfig

# From the most to the least complete: the paper's recipe, one GPU for about ten minutes, two CPU
# cores for a few hours (the claim's regime, scaled down), a CPU check of the pipeline.
PRESETS = ("paper", "quick", "cpu", "smoke")
# Every experiment has these; "quick" and "cpu" may be left out where they make no sense (a
# paper recipe that already fits on a CPU, an ImageNet run).
REQUIRED_PRESETS = ("paper", "smoke")
METRICS = ("test_error", "epochs_to_train_error")
QUANTITIES = ("metric", "final_train_error", "seconds_to_target", "epoch_time")
# An ordering may also compare whole training curves: ``lower``'s mean training error below
# ``higher``'s at every epoch after the first (Fig. 1 and 6 of He et al. 2016).
CURVE_QUANTITY = "train_curve"
# A keras-tuner search's report, beside the experiment's (written by keras_cnns.lab.tuning_report).
TUNING_REPORT_FILE = "tuning.md"
# Kinds of searched hyperparameter.
KINDS = ("float", "int", "choice")

# Experiment name -> the module that defines its EXPERIMENT (imported on first use).
EXPERIMENTS: dict[str, str] = {
    "dropout-cifar": "reproductions.dropout_cifar",
    "relu-vs-tanh": "reproductions.relu_vs_tanh",
    "plain-vs-residual": "reproductions.plain_vs_residual",
    "stochastic-depth": "reproductions.stochastic_depth",
    "lenet5-mnist": "reproductions.lenet5_mnist",
    "resnet50-imagenet": "reproductions.resnet50_imagenet",
}

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
class Deviation:
    """A departure from the paper, shown in a report section only where that section's runs
    have it, so a section never lists a deviation its own runs contradict.

    Attributes:
        text: the sentence.
        variants: the variants it concerns (empty: every variant).
        when: ``TrainConfig`` fields and the values a run must have for it to apply (empty:
            always), for example ``{"optimizer": "adam"}`` or ``{"val_size": 5000}``.
    """

    text: str
    variants: tuple[str, ...] = ()
    when: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "variants", tuple(self.variants))
        object.__setattr__(self, "when", MappingProxyType(dict(self.when)))
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(self.when) - fields
        if unknown:
            raise ValueError(f"deviation {self.text[:40]!r}: not TrainConfig fields: {sorted(unknown)}")

    def applies(self, variant: str, config: Mapping[str, Any]) -> bool:
        """Whether a run of ``variant`` with ``config`` (``TrainConfig.to_dict``) has it."""
        if self.variants and variant not in self.variants:
            return False
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        # A record written before a field existed ran with its default.
        return all(_json_value(config.get(k, defaults[k])) == _json_value(v) for k, v in self.when.items())


def _json_value(value: Any) -> Any:
    return [_json_value(v) for v in value] if isinstance(value, (list, tuple)) else value


def _deviations(items) -> tuple[Deviation, ...]:
    return tuple(d if isinstance(d, Deviation) else Deviation(str(d)) for d in items)


@dataclass(frozen=True)
class Reference:
    """Another reproduction's numbers, shown beside the paper's: its ``name`` (a column
    heading), its ``recipe`` in one line (what it trained on, for how long, how it selected the
    reported epoch) and its values of the experiment's metric, variant -> dataset -> value."""

    name: str
    recipe: str
    numbers: Mapping[str, Mapping[str, float]]

    def __post_init__(self):
        object.__setattr__(
            self, "numbers", MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self.numbers.items()})
        )


@dataclass(frozen=True)
class Regime:
    """A condition on a preset's own runs: ``variant``'s final training error (percent) is
    below ``below``, which shows ``meaning`` (for example "the net without dropout overfits").

    The report says whether it held, with the number and the variant's validation error (at
    the epoch its training error first fell below ``below``, and at the end), so a reader sees
    whether the comparison was made in the regime the claim is about.
    """

    variant: str
    below: float
    meaning: str


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
            Text, or a ``Deviation`` where it concerns some variants or configs only.
        sweep: a search run before the main runs, or ``None``.
        cannot_show: for a scaled-down preset, what of the paper's claim it cannot show (one
            phrase, for the report's verdict); empty where it can show the claim as stated.
        regime: what the preset's runs must show for its comparison to test the claim (for
            example that the net without dropout overfits), checked in the report's verdict.
    """

    configs: Mapping[str, TrainConfig]
    datasets: tuple[str, ...]
    purpose: str
    runtime: str
    deviations: tuple[Deviation, ...] = ()
    sweep: Sweep | None = None
    cannot_show: str = ""
    regime: tuple[Regime, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "configs", MappingProxyType(dict(self.configs)))
        object.__setattr__(self, "datasets", tuple(self.datasets))
        object.__setattr__(self, "deviations", _deviations(self.deviations))
        object.__setattr__(self, "regime", tuple(self.regime))
        for r in self.regime:
            if r.variant not in self.configs:
                raise ValueError(f"regime names a variant not in the preset: {r.variant!r}")
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

    ``quantity``: ``"metric"`` (the experiment's metric), ``"final_train_error"``, or
    ``"train_curve"`` (the mean training error at every epoch after the first).
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
        benchmark: for a time ratio, the results page (relative to ``results/``) where the same
            ratio is measured with the two nets taking turns on the machine, if there is one.
    """

    numerator: str
    denominator: str
    quantity: str
    label: str
    paper: float | None = None
    benchmark: str = ""


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
        references: other reproductions' numbers, each with its recipe in one line.
        presets: ``"paper"`` and ``"smoke"``, and ``"quick"`` and ``"cpu"`` where they make
            sense; in the order of ``PRESETS``.
        deviations: departures from the paper common to every preset (text, or a
            ``Deviation`` where it concerns some variants or configs only).
        target_train_error: the training error (percent) of ``epochs_to_train_error``.
        orderings: orderings the paper claims, checked in the report.
        ratios: ratios the paper states, computed in the report.
        panels: plot panel title -> the variants drawn in it (default: one panel, all).
        curves: what the curve plots draw: ``"train"`` and/or ``"val"`` error per epoch.
        notes: further lines for the report (what stands in for what).
        search_space: the hyperparameters ``keras-cnns tune`` may search around a preset's
            configs (empty: the experiment is not tuned); what the paper fixes and the claim
            depends on is not in it.
    """

    name: str
    title: str
    paper: str
    claim: str
    metric: str
    paper_numbers: Mapping[str, Mapping[str, float]]
    presets: Mapping[str, Preset]
    references: tuple[Reference, ...] = ()
    deviations: tuple[Deviation, ...] = ()
    target_train_error: float = 25.0
    orderings: tuple[Ordering, ...] = ()
    ratios: tuple[Ratio, ...] = ()
    panels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    curves: tuple[str, ...] = ("train", "val")
    notes: tuple[str, ...] = ()
    search_space: tuple[HyperParam, ...] = ()

    def __post_init__(self):
        freeze = object.__setattr__
        freeze(self, "paper_numbers", MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self.paper_numbers.items()}))
        freeze(self, "presets", MappingProxyType(dict(self.presets)))
        freeze(self, "panels", MappingProxyType({k: tuple(v) for k, v in self.panels.items()}))
        freeze(self, "deviations", _deviations(self.deviations))
        freeze(self, "search_space", tuple(self.search_space))
        names = [p.name for p in self.search_space]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: the search space names a hyperparameter twice: {names}")
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
        named |= {v for ref in self.references for v in ref.numbers}
        named |= {v for r in self.ratios for v in (r.numerator, r.denominator)}
        named |= {v for vs in self.panels.values() for v in vs}
        named |= {v for p in self.presets.values() for d in (*self.deviations, *p.deviations) for v in d.variants}
        if named - variants:
            raise ValueError(f"{self.name}: unknown variants named: {sorted(named - variants)}")
        if any(o.quantity not in (*QUANTITIES, CURVE_QUANTITY) for o in self.orderings) or any(
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

    Used by ``keras_cnns.lab.tuning`` as the starting points of a search.
    """
    p = get_experiment(name).preset(preset)
    return {v: c.replace(dataset=p.datasets[0]) for v, c in p.configs.items()}


def learning_rate_range(low: float, high: float) -> HyperParam:
    """A learning rate searched log-uniformly in ``[low, high]``."""
    return HyperParam("learning_rate", "float", low, high, log=True)
