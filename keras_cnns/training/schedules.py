"""Learning-rate schedules, counted in optimizer steps.

``SchedulePlan`` is a config's schedule (constant, step, plateau, cosine, one-cycle) as a pure
function of the step; ``learning_rate_at`` evaluates it for a config, and ``PlanSchedule`` is
the same plan as a serializable Keras schedule of the optimizer's step counter. The plateau
and early-stopping rules (``plateau_step``, ``early_stopping_step``) are pure too, on the value
``monitored_value`` reads from an epoch (``TrainConfig.monitor``): the engine keeps their state
in ``state.json`` so a resumed run continues them exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_cnns.training.config import TrainConfig

# One-cycle (Smith & Topin 2019), with PyTorch OneCycleLR's defaults and linear annealing.
ONECYCLE_PEAK_FRACTION = 0.3
ONECYCLE_DIV_FACTOR = 25.0
ONECYCLE_FINAL_DIV_FACTOR = 1e4
# Plateau: a lower monitored value by at least this much is an improvement (Keras' default).
# For the validation error (a fraction) it is less than one image of a split under 10,000.
PLATEAU_MIN_DELTA = 1e-4

@dataclass(frozen=True)
class SchedulePlan:
    """A config's learning-rate schedule in steps (what the optimizer counts).

    Attributes:
        kind: ``TrainConfig.schedule``.
        base_lr: the peak learning rate.
        total_steps: ``epochs * steps_per_epoch``.
        boundaries: step schedule: the steps at which the rate is multiplied by ``factor``.
        factor: ``TrainConfig.lr_factor``.
        warmup_steps: ``round(warmup_epochs * steps_per_epoch)``.
        warmup_lr: the constant warm-up rate, or ``None`` for a linear ramp.
    """

    kind: str
    base_lr: float
    total_steps: int
    boundaries: tuple[int, ...] = ()
    factor: float = 0.1
    warmup_steps: int = 0
    warmup_lr: float | None = None

    @classmethod
    def from_config(cls, config: TrainConfig, steps_per_epoch: int) -> SchedulePlan:
        if steps_per_epoch <= 0:
            raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
        return cls(
            kind=config.schedule,
            base_lr=config.scaled_learning_rate,  # lr_scaling applied
            total_steps=config.epochs * steps_per_epoch,
            boundaries=tuple(b * steps_per_epoch for b in config.lr_boundaries),
            factor=config.lr_factor,
            warmup_steps=round(config.warmup_epochs * steps_per_epoch),
            warmup_lr=config.warmup_lr,
        )

    def value(self, step, xp):
        """The learning rate at ``step`` (0-based), computed with ``xp`` (numpy or keras.ops).

        One formula serves both the pure ``learning_rate_at`` (numpy) and the optimizer's
        in-graph schedule (keras.ops), so the values tests pin are the values training uses.
        """
        base = self.base_lr
        if self.kind == "step":
            lr = base + step * 0.0
            for boundary in self.boundaries:
                lr = lr * xp.where(step >= boundary, self.factor, 1.0)
        elif self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            t = xp.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            lr = base * 0.5 * (1.0 + xp.cos(math.pi * t))
        elif self.kind == "onecycle":
            initial = base / ONECYCLE_DIV_FACTOR
            final = initial / ONECYCLE_FINAL_DIV_FACTOR
            last = max(1, self.total_steps - 1)
            peak = max(1, round(ONECYCLE_PEAK_FRACTION * last))
            up = initial + (base - initial) * xp.clip(step / peak, 0.0, 1.0)
            # Written from `final` so the last step is exactly `final` in float32 as well.
            down = final + (base - final) * (1.0 - xp.clip((step - peak) / max(1, last - peak), 0.0, 1.0))
            lr = xp.where(step < peak, up, down)
        else:  # constant; plateau before any reduction
            lr = base + step * 0.0
        if self.warmup_steps:
            if self.warmup_lr is not None:
                lr = xp.where(step < self.warmup_steps, self.warmup_lr, lr)
            else:
                lr = lr * xp.minimum(1.0, (step + 1.0) / self.warmup_steps)
        return lr


def learning_rate_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of training step ``step`` (0-based) of a run of ``config``.

    Pure (numpy only) and exactly what the optimizer's schedule computes. For
    ``schedule="plateau"`` it is the rate before any reduction (reductions depend on the
    validation loss, so no step-based function can know them).

    Args:
        config: the run's config.
        step: the optimizer step, ``epoch * steps_per_epoch + batch``.
        steps_per_epoch: ``ceil(training images / batch_size)``.

    Returns:
        The learning rate, a float.
    """
    plan = SchedulePlan.from_config(config, steps_per_epoch)
    return float(plan.value(np.float64(step), np))


def monitored_value(entry: dict, monitor: str) -> float | None:
    """The value the plateau and early-stopping rules watch in an epoch's history entry.

    Args:
        entry: the epoch's ``val_loss`` and ``val_accuracy`` (``None`` without validation).
        monitor: ``TrainConfig.monitor``: ``"val_loss"``, or ``"val_error"`` (``1 -
            val_accuracy``, a fraction).

    Returns:
        The value, lower is better; ``None`` when the epoch has no validation.
    """
    if monitor == "val_loss":
        return entry["val_loss"]
    if monitor == "val_error":
        accuracy = entry["val_accuracy"]
        return None if accuracy is None else 1.0 - accuracy
    raise ValueError(f"unknown monitor {monitor!r}")  # TrainConfig validates it: a bug


def plateau_step(
    value: float, *, best: float | None, wait: int, lr: float, patience: int, factor: float
) -> tuple[float, int, float]:
    """One epoch of the plateau schedule (Keras' ``ReduceLROnPlateau`` rule, no cooldown).

    A monitored ``value`` (``monitored_value``) below ``best - PLATEAU_MIN_DELTA`` is an
    improvement; after ``patience`` epochs in a row without one, the rate is multiplied by
    ``factor`` and the count restarts.

    Returns:
        ``(best, wait, lr)`` after this epoch.
    """
    if best is None or value < best - PLATEAU_MIN_DELTA:
        return value, 0, lr
    wait += 1
    if wait >= patience:
        return best, 0, lr * factor
    return best, wait, lr


def early_stopping_step(
    value: float, *, best: float | None, wait: int, patience: int
) -> tuple[float, int, bool]:
    """One epoch of early stopping (Keras' ``EarlyStopping`` rule) on a monitored ``value``
    (``monitored_value``: the validation loss or error).

    Returns:
        ``(best, wait, stop)``: stop after ``patience`` epochs in a row without a lower value.
    """
    if best is None or value < best:
        return value, 0, False
    return best, wait + 1, wait + 1 >= patience


@keras.saving.register_keras_serializable(package="keras_cnns")
class PlanSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``SchedulePlan.value`` as a Keras schedule of the optimizer's step counter."""

    def __init__(self, **plan: Any):
        plan["boundaries"] = tuple(plan.get("boundaries", ()))
        self.plan = SchedulePlan(**plan)

    def __call__(self, step):
        return self.plan.value(ops.cast(step, "float32"), ops)

    def get_config(self):
        config = asdict(self.plan)
        config["boundaries"] = list(config["boundaries"])
        return config
