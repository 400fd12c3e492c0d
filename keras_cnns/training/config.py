"""Typed experiment configs: ``TrainConfig``, one frozen dataclass per training run.

A run is data: every field is validated when the config is made, so a bad value fails with one
line before any data is loaded or Keras imported. Reproductions write a paper's recipe as a
``TrainConfig`` and derive smaller presets from it with ``replace``; the command line changes
fields with typed ``key=value`` overrides (``with_overrides``), which reject unknown keys.

``run_id()`` names a run by a hash of its config: re-running the same config finds the same
checkpoint directory and resumes.

Conventions worth knowing (see the field comments for the rest):

* ``weight_decay`` with ``weight_decay_mode="l2"`` adds ``weight_decay * sum(w**2)`` over the
  conv/dense kernels to the loss (Keras' L2 regulariser). The papers' "weight decay 1e-4" is the
  gradient ``1e-4 * w``, which is L2 ``5e-5`` here. ``"decoupled"`` is the optimizer's own
  ``weight_decay``: each step ``w -= learning_rate * weight_decay * w``, outside the loss.
* ``lr_factor`` MULTIPLIES the learning rate at each step boundary (and each plateau):
  ``lr_factor=0.1`` is the papers' "divide by 10".

The config, its validation and the typed parsing of command-line overrides share the fields'
types, and so this one module (about 620 lines).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import numbers
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keras_cnns.errors import UserError

OPTIMIZERS = ("sgd", "adam")
# keras_cnns.losses builds them: softmax cross-entropy, or LeNet-5's MAP criterion (Eq. 9).
LOSSES = ("cross_entropy", "rbf_map")
WEIGHT_DECAY_MODES = ("l2", "decoupled")
# What weight decay acts on: the conv and dense kernels, or every trainable variable (biases and
# batch norm's gamma and beta too, as Torch's and PyTorch's SGD decay them).
WEIGHT_DECAY_SCOPES = ("kernels", "all")
SCHEDULES = ("constant", "step", "plateau", "cosine", "onecycle")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
LR_SCALINGS = ("none", "linear")
# Fields that say where and how a run executes, not what it computes: left out of ``run_id``, and
# a checkpoint resumes under other values (trained on 4 GPUs, resumed on 1; 8 steps per compiled
# call, resumed with 1: the same steps in the same order, tests/test_benchmark.py).
PLACEMENT_FIELDS = ("devices", "steps_per_execution")
SELECTIONS = ("final", "best_val")
# What the plateau schedule and early stopping watch on the validation split: the loss (Keras'
# default), or the error, 1 - accuracy (a net that overfits keeps improving its validation
# error long after its validation loss has started to rise).
MONITORS = ("val_loss", "val_error")

# A model_kwargs value must be hashable and JSON-safe: scalars, or tuples of them.
_SCALARS = (type(None), bool, int, float, str)


def _data_choices() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Dataset, preprocessing and augmentation names, from their one home, ``keras_cnns.data``."""
    from keras_cnns import data

    return tuple(data.DATASETS), tuple(data.PREPROCESSING), tuple(data.AUGMENTATIONS)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (paths and verbosity are not here).

    Attributes:
        model: registry name, for example ``"resnet20_cifar"``.
        dataset: ``keras_cnns.data.DATASETS`` name.
        model_kwargs: builder options as ``(name, value)`` pairs, e.g. ``(("activation", "tanh"),)``;
            a mapping is accepted and stored as pairs sorted by name.
        epochs: passes over the training split.
        batch_size: images per step.
        optimizer: ``"sgd"`` (with ``momentum``, ``nesterov``) or ``"adam"``.
        learning_rate: peak learning rate (the schedule's base value).
        momentum: SGD momentum (ignored by Adam).
        nesterov: Nesterov momentum (SGD only).
        weight_decay: strength of the weight decay; 0 for none.
        weight_decay_mode: ``"l2"`` (penalty in the loss, Keras convention: the papers' "weight
            decay 1e-4" is 5e-5 here) or ``"decoupled"`` (the optimizer's ``weight_decay``).
            Both act on the variables ``weight_decay_scope`` names.
        weight_decay_scope: ``"kernels"`` (variables of rank >= 2: conv and dense kernels) or
            ``"all"`` (every trainable variable: biases and batch norm's gamma and beta too,
            as the Torch and PyTorch ResNet implementations decay them).
        schedule: ``"constant"``, ``"step"`` (multiply by ``lr_factor`` at each of
            ``lr_boundaries``), ``"plateau"`` (multiply by ``lr_factor`` after
            ``plateau_patience`` epochs without a lower ``monitor``), ``"cosine"`` (to 0 at
            the last step) or ``"onecycle"`` (linear up to ``learning_rate`` over the first 30%
            of steps from ``learning_rate / 25``, then linear down to ``learning_rate / 25e4``).
        lr_boundaries: step schedule: epoch counts after which the learning rate is
            multiplied by ``lr_factor``: ``(82, 123)`` trains epochs 1-82 at ``lr``, 83-123 at
            ``lr * lr_factor``, then ``lr * lr_factor**2`` (boundaries past the last epoch never
            fire).
        lr_factor: the multiplier, in (0, 1): 0.1 divides by 10.
        warmup_epochs: warm-up length in epochs (fractions allowed): the learning rate ramps
            linearly, ``lr * (step + 1) / warmup_steps``, unless ``warmup_lr`` is set.
        warmup_lr: a constant learning rate during the warm-up (He et al. 2016's ResNet-110:
            0.01 for about 400 steps).
        plateau_patience: epochs without improvement before a plateau reduction.
        early_stopping_patience: stop after this many epochs without a lower ``monitor``
            (``None``: never).
        monitor: what ``schedule="plateau"`` and ``early_stopping_patience`` watch:
            ``"val_loss"`` (the validation loss) or ``"val_error"`` (1 - validation accuracy:
            a net without dropout overfits in loss long before its error stops improving).
        stop_at_train_error: stop after the first epoch whose training error (percent, Keras'
            running accuracy over the epoch) is at most this (``None``: never): for
            experiments that measure the epochs to a training-error target.
        preprocess: ``keras_cnns.data.PREPROCESSING`` name, fitted on the training split.
        augment: ``keras_cnns.data.AUGMENTATIONS`` names, applied on the device while training.
        val_size: images held out of the training set for validation (0: none).
        train_subset: a seeded random subset of the training split (CPU smoke runs).
        test_subset: a seeded random subset of the test split.
        allow_sample: allow the packaged MNIST sample when no real data is available.
        precision: ``"float32"``, ``"mixed_float16"`` (with loss scaling) or ``"mixed_bfloat16"``.
        seed: seeds weights, data split and order, dropout and augmentation (0 .. 2**32 - 1).
        deterministic: also make the backend's kernels deterministic (slower).
        select: whose weights are tested: the ``"final"`` epoch's, or the ``"best_val"``
            epoch's (highest validation accuracy; the earliest on a tie).
        label_smoothing: label smoothing of the cross-entropy, in [0, 1).
        loss: ``keras_cnns.losses.LOSSES`` name: ``"cross_entropy"``, or ``"rbf_map"`` (LeNet-5's
            Eq. 9 criterion, for models with an RBF output).
        steps_per_execution: training steps per call into the compiled step (Keras'
            ``steps_per_execution``); batch-end callbacks (progress, the NaN check) run once per
            call. A speed setting: the same steps in the same order give the same result (a
            divergence is then located to the call, not the batch). PyTorch: always 1 (Keras
            allows no other value there). A placement field: not part of ``run_id``.
        lr_scaling: ``"none"``, or ``"linear"``: the learning rate (and so the whole schedule)
            is ``learning_rate * batch_size / lr_reference_batch`` (Goyal et al. 2017: a
            recipe stated for batch 256 keeps its meaning at a larger global batch).
        lr_reference_batch: the batch size ``learning_rate`` is stated for (``"linear"`` only).
        image_size: streamed datasets (``imagenet2012``) only: the side of the square crops the
            net sees (default: the dataset's, 224); evaluation resizes to ``image_size * 8/7``
            (256 for 224) and takes the centre crop.
        devices: data-parallel replicas: a number, or ``"all"`` (see ``keras_cnns.training.distribute``).
            ``batch_size`` is the GLOBAL batch, split evenly over them. A placement field: it
            is not part of ``run_id``, and a checkpoint resumes on another number of devices.
    """

    model: str
    dataset: str = "cifar10"
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    weight_decay_mode: str = "l2"
    weight_decay_scope: str = "kernels"
    schedule: str = "constant"
    lr_boundaries: tuple[int, ...] = ()
    lr_factor: float = 0.1
    warmup_epochs: float = 0.0
    warmup_lr: float | None = None
    plateau_patience: int = 5
    early_stopping_patience: int | None = None
    monitor: str = "val_loss"
    stop_at_train_error: float | None = None
    preprocess: str = "standardize"
    augment: tuple[str, ...] = ()
    val_size: int = 5000
    train_subset: int | None = None
    test_subset: int | None = None
    allow_sample: bool = False
    precision: str = "float32"
    seed: int = 0
    deterministic: bool = False
    select: str = "final"
    label_smoothing: float = 0.0
    loss: str = "cross_entropy"
    steps_per_execution: int = 1
    lr_scaling: str = "none"
    lr_reference_batch: int = 256
    image_size: int | None = None
    devices: int | str = 1

    def __post_init__(self):
        # Normalise first (JSON lists -> tuples, numpy numbers -> Python), then check.
        hints = _field_types()
        for f in dataclasses.fields(self):
            value = _normalise(f.name, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        self._validate()

    # --- validation -------------------------------------------------------------------------

    def _validate(self) -> None:
        datasets, preprocessings, augmentations = _data_choices()
        if not self.model.strip():
            raise UserError("model must be a registry name such as 'resnet20_cifar' (see 'keras-cnns models')")
        _check_choice("dataset", self.dataset, datasets)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("weight_decay_mode", self.weight_decay_mode, WEIGHT_DECAY_MODES)
        _check_choice("weight_decay_scope", self.weight_decay_scope, WEIGHT_DECAY_SCOPES)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("preprocess", self.preprocess, preprocessings)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("select", self.select, SELECTIONS)
        _check_choice("lr_scaling", self.lr_scaling, LR_SCALINGS)
        _check_choice("monitor", self.monitor, MONITORS)
        if self.monitor != "val_loss" and self.schedule != "plateau" and self.early_stopping_patience is None:
            raise UserError(
                f"monitor={self.monitor} is used by schedule=plateau and early_stopping_patience "
                "only; set one of them or drop monitor"
            )
        for name in self.augment:
            _check_choice("augment", name, augmentations)
        if len(set(self.augment)) != len(self.augment):
            raise UserError(f"augment lists a name twice: {', '.join(self.augment)}")

        for name in ("epochs", "batch_size", "plateau_patience", "steps_per_execution", "lr_reference_batch"):
            _check_positive(name, getattr(self, name))
        for name in ("early_stopping_patience", "train_subset", "test_subset", "image_size"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        if self.val_size < 0:
            raise UserError(f"val_size must be 0 or more, got {self.val_size}")
        if not 0 <= self.seed < 2**32:  # the range numpy's (and so Keras') global seeding takes
            raise UserError(f"seed must be in 0..{2**32 - 1}, got {self.seed}")

        if not self.learning_rate > 0:
            raise UserError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.momentum < 1:
            raise UserError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.nesterov and self.optimizer != "sgd":
            raise UserError("nesterov=true needs optimizer=sgd (Adam has no Nesterov option here)")
        if self.nesterov and self.momentum == 0:
            raise UserError("nesterov=true needs a momentum above 0")
        if self.stop_at_train_error is not None and not 0 < self.stop_at_train_error < 100:
            raise UserError(
                f"stop_at_train_error is a training error in percent, in (0, 100), got {self.stop_at_train_error}"
            )
        if not self.weight_decay >= 0:
            raise UserError(f"weight_decay must be 0 or more, got {self.weight_decay}")
        if not 0 < self.lr_factor < 1:
            raise UserError(
                f"lr_factor multiplies the learning rate and must be in (0, 1), got "
                f"{self.lr_factor} (0.1 divides by 10)"
            )
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _check_choice("loss", self.loss, LOSSES)
        if self.label_smoothing and self.loss != "cross_entropy":
            raise UserError(f"label_smoothing applies to loss=cross_entropy only, not loss={self.loss}")

        if self.lr_boundaries and self.schedule != "step":
            raise UserError(
                f"lr_boundaries are used by schedule=step only, but schedule={self.schedule}; "
                "drop lr_boundaries or set schedule=step"
            )
        if any(b <= 0 for b in self.lr_boundaries) or list(self.lr_boundaries) != sorted(
            set(self.lr_boundaries)
        ):
            raise UserError(
                f"lr_boundaries must be increasing positive epochs such as 82,123, got "
                f"{','.join(map(str, self.lr_boundaries))}"
            )
        if not self.warmup_epochs >= 0:
            raise UserError(f"warmup_epochs must be 0 or more, got {self.warmup_epochs}")
        if self.warmup_lr is not None:
            if not self.warmup_lr > 0:
                raise UserError(f"warmup_lr must be positive, got {self.warmup_lr}")
            if self.warmup_epochs == 0:
                raise UserError("warmup_lr needs warmup_epochs > 0 (how long the warm-up lasts)")
        if self.warmup_epochs and self.schedule in ("plateau", "onecycle"):
            raise UserError(
                f"schedule={self.schedule} takes no warm-up ("
                + ("one-cycle has its own" if self.schedule == "onecycle" else "it reacts to the validation loss")
                + "); set warmup_epochs=0"
            )
        needs_val = [
            what
            for what, used in (
                ("schedule=plateau", self.schedule == "plateau"),
                ("early_stopping_patience", self.early_stopping_patience is not None),
                ("select=best_val", self.select == "best_val"),
            )
            if used
        ]
        if needs_val and self.val_size == 0:
            raise UserError(f"{needs_val[0]} needs a validation split: set val_size above 0")
        self._validate_placement()

    def _validate_placement(self) -> None:
        from keras_cnns import data

        info = data.DATASETS[self.dataset]
        if self.image_size is not None and not info.streamed:
            raise UserError(
                f"image_size is for streamed datasets ({', '.join(data.streamed_datasets())}); "
                f"{self.dataset} images are {'x'.join(map(str, info.image_shape[:2]))}: drop image_size"
            )
        if info.streamed and (self.augment or self.preprocess != "standardize"):
            raise UserError(
                f"{self.dataset} is cropped, flipped and standardised in its input pipeline "
                "(keras_cnns.data.imagenet): set augment to none and preprocess=standardize"
            )
        if isinstance(self.devices, int) and self.batch_size % self.devices:
            raise UserError(
                f"batch_size is the global batch, split evenly over the devices: {self.batch_size} "
                f"does not split over {self.devices}; choose a multiple of {self.devices}"
            )

    @property
    def scaled_learning_rate(self) -> float:
        """The peak learning rate the run uses: ``learning_rate``, scaled by ``lr_scaling``."""
        if self.lr_scaling == "linear":
            return self.learning_rate * self.batch_size / self.lr_reference_batch
        return self.learning_rate

    # --- derivation -------------------------------------------------------------------------

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied, validated like a new config.

        Raises:
            UserError: an unknown field or an invalid value.
        """
        unknown = sorted(set(changes) - set(_field_types()))
        if unknown:
            raise UserError(_unknown_key_message(unknown[0]))
        return dataclasses.replace(self, **changes)

    def with_overrides(self, overrides: Iterable[str]) -> TrainConfig:
        """A copy with ``key=value`` overrides applied, each parsed by its field's type.

        Lists are comma-separated (``augment=pad_crop,flip``, ``lr_boundaries=82,123``, an empty
        value for none); optional fields take ``none``; booleans take ``true``/``false``. A model
        builder option is ``model_kwargs.NAME=VALUE`` (the value is read as a bool, ``none``, an
        int, a float, or else kept as text).

        Raises:
            UserError: an item without ``=``, an unknown key (the message lists the valid ones)
                or a value that does not parse or validate.
        """
        hints = _field_types()
        changes: dict[str, Any] = {}
        model_kwargs = dict(self.model_kwargs)
        for item in overrides:
            key, sep, text = str(item).partition("=")
            key = key.strip()
            if not sep or not key:
                raise UserError(f"override {item!r} must look like key=value, e.g. epochs=3")
            if key.startswith("model_kwargs."):
                option = key[len("model_kwargs.") :].strip()
                if not option:
                    raise UserError(f"override {item!r}: name the builder option, e.g. model_kwargs.activation=tanh")
                model_kwargs[option] = _parse_loose(text.strip())
                continue
            if key not in hints or key == "model_kwargs":
                raise UserError(_unknown_key_message(key))
            try:
                changes[key] = _parse_typed(text.strip(), hints[key])
            except ValueError as err:
                raise UserError(f"override {key}={text.strip()!r}: {err}") from None
        if model_kwargs != dict(self.model_kwargs):
            changes["model_kwargs"] = model_kwargs
        return self.replace(**changes) if changes else self

    # --- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON types (tuples become lists, ``model_kwargs`` a dict)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "model_kwargs":
                value = {k: _to_json(v) for k, v in value}
            out[f.name] = _to_json(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The config ``to_dict`` wrote; missing fields take their defaults.

        Raises:
            UserError: an unknown field or an invalid value.
        """
        unknown = sorted(set(data) - set(_field_types()))
        if unknown:
            raise UserError(_unknown_key_message(unknown[0]))
        if "model" not in data:
            raise UserError("a config needs a 'model'")
        return cls(**dict(data))

    def run_id(self) -> str:
        """A stable name of this run: ``<model>-<dataset>-<12 hex digits>``.

        The digits hash the fields that differ from their defaults (and the model), so the same
        config always gives the same id, any change gives another, and adding a new field with
        a default later keeps the ids of existing runs. ``PLACEMENT_FIELDS`` are left out: the
        same run on other devices is the same run. A model past its first revision
        (``registry.ModelEntry.revision``) adds its revision: a run of the revised net is
        another run, never resumed from, or skipped for, one of the earlier net.
        """
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name != "model"}
        current = self.to_dict()
        changed = {
            k: v
            for k, v in current.items()
            if k == "model" or (k not in PLACEMENT_FIELDS and _to_json(_default_value(k, defaults[k])) != v)
        }
        revision = _model_revision(self.model)
        if revision > 1:
            changed["model_revision"] = revision
        digest = hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.model}-{self.dataset}-{digest}"


# --- helpers -------------------------------------------------------------------------------------


_HINTS: dict[str, Any] | None = None


def _field_types() -> dict[str, Any]:
    """``{field: type}`` with the annotations resolved (they are strings under __future__)."""
    global _HINTS
    if _HINTS is None:
        _HINTS = typing.get_type_hints(TrainConfig)
    return _HINTS


def _model_revision(model: str) -> int:
    """The registry's revision of ``model``; 1 for a name it lacks (the engine rejects those)."""
    from keras_cnns import registry

    try:
        return registry.model_revision(model)
    except UserError:
        return 1


def _default_value(name: str, default: Any) -> Any:
    if name == "model_kwargs":
        return {}
    return default


def _unknown_key_message(key: str) -> str:
    keys = [*_field_types(), "model_kwargs.NAME"]
    keys.remove("model_kwargs")
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown config key {key!r}{hint}; valid keys: {', '.join(keys)}"


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UserError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def _check_positive(name: str, value: int) -> None:
    if value <= 0:
        raise UserError(f"{name} must be a positive integer, got {value}")


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


def _is_optional(tp: Any) -> tuple[bool, Any]:
    """``(True, X)`` for ``X | None``, else ``(False, tp)``."""
    args = typing.get_args(tp)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0]
    return False, tp


def _normalise(name: str, tp: Any, value: Any) -> Any:
    """``value`` coerced to the field's type, or a ``UserError`` naming the field."""
    optional, base = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise UserError(f"{name} may not be none")
    if name == "model_kwargs":
        return _normalise_model_kwargs(value)
    if name == "devices":
        return parse_devices(value)
    origin = typing.get_origin(base)
    if origin is tuple:
        item_type = typing.get_args(base)[0]
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise UserError(f"{name} must be a list, got {value!r}")
        return tuple(_normalise(name, item_type, v) for v in value)
    if base is bool:
        if isinstance(value, bool) or (hasattr(value, "dtype") and str(value.dtype) == "bool"):
            return bool(value)
        raise UserError(f"{name} must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise UserError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, numbers.Integral):
            return int(value)
        if math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise UserError(f"{name} must be an integer, got {value!r}")
    if base is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise UserError(f"{name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise UserError(f"{name} must be finite, got {value}")
        return value
    if base is str:
        if not isinstance(value, str):
            raise UserError(f"{name} must be text, got {value!r}")
        return value
    raise TypeError(f"no normalisation for field {name} of type {tp}")  # a bug, not user input


def _normalise_model_kwargs(value: Any) -> tuple[tuple[str, Any], ...]:
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        pairs = []
        for pair in value:
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Iterable) or len(tuple(pair)) != 2:
                raise UserError(f"model_kwargs must be (name, value) pairs, got {pair!r}")
            pairs.append(tuple(pair))
    else:
        raise UserError(f"model_kwargs must be a mapping or (name, value) pairs, got {value!r}")
    names = [k for k, _ in pairs]
    if any(not isinstance(k, str) or not k for k in names):
        raise UserError(f"model_kwargs names must be text, got {names!r}")
    if len(set(names)) != len(names):
        raise UserError(f"model_kwargs names a builder option twice: {', '.join(names)}")
    return tuple(sorted((k, _kwarg_value(k, v)) for k, v in pairs))


def parse_devices(value: Any) -> int | str:
    """``devices``: a positive integer (``4``, ``"4"``) or ``"all"``; a ``UserError`` otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "all":
            return "all"
        if text.isdigit():
            value = int(text)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise UserError(f"devices must be a positive number of devices or 'all', got {value!r}")


def _kwarg_value(name: str, value: Any) -> Any:
    """A model kwarg as a hashable, JSON-safe value: a scalar or a tuple of them."""
    if isinstance(value, (list, tuple)):
        return tuple(_kwarg_value(name, v) for v in value)
    if hasattr(value, "item") and not isinstance(value, _SCALARS):
        value = value.item()  # numpy scalars from a tuner
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"model_kwargs.{name} must be finite, got {value}")
    if not isinstance(value, _SCALARS):
        raise UserError(
            f"model_kwargs.{name} must be a number, text, true/false, none or a list of them, "
            f"got {type(value).__name__}"
        )
    return value


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null")


def _parse_typed(text: str, tp: Any) -> Any:
    """Parse an override value by the field's type; ``ValueError`` says what was expected."""
    optional, base = _is_optional(tp)
    if optional and text.lower() in _NONE:
        return None
    origin = typing.get_origin(base)
    if origin is tuple:
        item_type = typing.get_args(base)[0]
        inner = text.strip("()[] ")
        if not inner or inner.lower() in _NONE:
            return ()
        return tuple(_parse_typed(part.strip(), item_type) for part in inner.split(","))
    if base is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError("expected true or false")
    if base is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected an integer" + (" or none" if optional else "")) from None
    if base is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number" + (" or none" if optional else "")) from None
    return text


def _parse_loose(text: str) -> Any:
    """A builder option's value: bool, none, int, float, or the text itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in _NONE:
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text
