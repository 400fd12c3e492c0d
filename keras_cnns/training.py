"""The training engine: ``train(config, out_dir=...)`` runs one ``TrainConfig`` end to end.

What a run does, in order:

1. Seeds everything (``keras.utils.set_random_seed``), and in ``deterministic`` mode makes the
   backend's kernels deterministic too (TensorFlow: op determinism; PyTorch: deterministic
   algorithms). Both, and the mixed-precision policy, are restored when the run returns.
2. Loads the dataset (``keras_cnns.data.load_dataset``), fits the preprocessing on the training
   split only and applies it to every split.
3. Builds the registry model under the run's dtype policy and puts the augmenter in front of it
   in a wrapper model ``inputs -> augmenter -> model``: augmentation runs per batch on the
   device, inside the compiled training step, and only when ``training=True``.
4. Compiles with the optimizer, the learning-rate schedule (see ``learning_rate_at``) and the
   weight decay of the config, XLA where Keras uses it (TensorFlow with a GPU, JAX; never
   PyTorch), ``steps_per_execution`` steps per compiled call (``compile_for_training``).
5. Trains epoch by epoch: each epoch sees the training set in an order drawn from
   ``(seed, epoch)``, and every ``SeedGenerator`` of the wrapper (dropout, augmentation,
   stochastic depth) is reset from ``(seed, epoch)``: Keras' weight files do not hold their
   states, and this way a resumed run sees exactly the randomness of an uninterrupted one.
   After each epoch the weights and optimizer state (``save_weights`` holds both), then a
   ``state.json`` naming them, are written atomically under
   ``out_dir/checkpoints/<run_id>/``. Re-running the same config resumes from there.
6. Tests the selected weights (the final epoch's, or the best validation epoch's) and appends
   one record to ``out_dir/records.jsonl`` (see ``RECORD_KEYS``).

Where the run executes (``TrainConfig.devices``, ``keras_cnns.distribute``): one device is the
plain path; more train data-parallel (JAX ``keras.distribution.DataParallel``, TensorFlow
``MirroredStrategy``) with the same global batch, batch-norm statistics and exact evaluation,
and on several hosts only process 0 writes. A streamed dataset (ImageNet,
``keras_cnns.imagenet``) comes as ``tf.data`` feeds instead of arrays.

A non-finite loss stops the run at once; the last good checkpoint stays, a record with status
``"diverged"`` is appended, then ``DivergedError`` is raised.

Speed without changing a number (issue 6; ``keras_cnns.benchmark`` times each part): the loop
never waits on the host for a step's loss (the NaN check and the progress bar run in Keras'
callback threads where the backend allows it); on JAX with an accelerator the splits stay on
the device and each batch is gathered there (``DeviceFeed``), so no step copies images from
the host; ``steps_per_execution`` runs several steps per call. Each path feeds the same
compiled step the same batches in the same order: ``tests/test_benchmark.py`` checks that the
losses and weights are bitwise those of the plain path.

Weight decay, two explicit choices (``TrainConfig.weight_decay_mode``):

* ``"l2"``: every trainable variable of rank >= 2 of the built model (conv and dense kernels,
  never biases or batch-norm parameters) gets ``keras.regularizers.L2(weight_decay)`` as its
  ``regularizer``; Keras adds ``weight_decay * sum(w**2)`` to the training loss (and to the
  reported loss and val_loss) on every backend. The papers' "weight decay 1e-4" is 5e-5 here.
* ``"decoupled"``: the optimizer's ``weight_decay``, the same variables only: each step
  ``w -= learning_rate * weight_decay * w`` before the gradient step (AdamW-style for Adam).

Only ``keras``, ``keras.ops`` and ``numpy`` are used at import: the engine runs on JAX or
PyTorch machines without TensorFlow.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_cnns import distribute
from keras_cnns import records as records_lib
from keras_cnns.errors import DivergedError, UserError
from keras_cnns.experiment import TrainConfig
from keras_cnns.losses import make_loss

RECORDS_FILE = "records.jsonl"
CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.json"
FINAL_MODEL_FILE = "model.keras"
TENSORBOARD_DIR = "tensorboard"

RECORD_KEYS = (
    "run_id", "status", "tags", "config", "model", "params", "trainable_params", "dataset",
    "history", "test", "selected_epoch", "wall_time", "started", "finished", "backend",
    "versions", "device", "git", "seed", "precision",
)  # fmt: skip

# One-cycle (Smith & Topin 2019), with PyTorch OneCycleLR's defaults and linear annealing.
ONECYCLE_PEAK_FRACTION = 0.3
ONECYCLE_DIV_FACTOR = 25.0
ONECYCLE_FINAL_DIV_FACTOR = 1e4
# Plateau: a lower validation loss by at least this much is an improvement (Keras' default).
PLATEAU_MIN_DELTA = 1e-4

_STATE_VERSION = 1
_SEED_STATE_NAME = "seed_generator_state"  # the variable every keras.random.SeedGenerator owns


# --- learning-rate schedules ----------------------------------------------------------------------


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


def plateau_step(
    val_loss: float, *, best: float | None, wait: int, lr: float, patience: int, factor: float
) -> tuple[float, int, float]:
    """One epoch of the plateau schedule (Keras' ``ReduceLROnPlateau`` rule, no cooldown).

    A validation loss below ``best - PLATEAU_MIN_DELTA`` is an improvement; after ``patience``
    epochs in a row without one, the rate is multiplied by ``factor`` and the count restarts.

    Returns:
        ``(best, wait, lr)`` after this epoch.
    """
    if best is None or val_loss < best - PLATEAU_MIN_DELTA:
        return val_loss, 0, lr
    wait += 1
    if wait >= patience:
        return best, 0, lr * factor
    return best, wait, lr


def early_stopping_step(
    val_loss: float, *, best: float | None, wait: int, patience: int
) -> tuple[float, int, bool]:
    """One epoch of early stopping on the validation loss (Keras' ``EarlyStopping`` rule).

    Returns:
        ``(best, wait, stop)``: stop after ``patience`` epochs in a row without a lower loss.
    """
    if best is None or val_loss < best:
        return val_loss, 0, False
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


# --- model pieces ----------------------------------------------------------------------------------


def decayed_variables(model) -> list:
    """The variables weight decay acts on: trainable, rank >= 2 (conv and dense kernels)."""
    return [v for v in model.trainable_variables if len(v.shape) >= 2]


def apply_l2(model, l2: float) -> int:
    """Put ``keras.regularizers.L2(l2)`` on every kernel of ``model`` (see ``decayed_variables``).

    Keras then adds ``l2 * sum(w**2)`` over those variables to the training loss, on every
    backend, with no builder argument needed.

    Returns:
        The number of variables regularised.

    Raises:
        UserError: a variable already has a regulariser (the builder set one): two penalties
            on one weight would silently double the decay.
    """
    variables = decayed_variables(model)
    for v in variables:
        if v.regularizer is not None:
            raise UserError(
                f"model {model.name!r} already regularises {v.path}; set weight_decay=0 or drop "
                "the builder's regulariser"
            )
    for v in variables:
        v.regularizer = keras.regularizers.L2(l2)
    return len(variables)


def make_optimizer(config: TrainConfig, steps_per_epoch: int, model):
    """The optimizer of ``config`` for ``model`` (not yet built).

    The learning rate is a float for ``"constant"`` (without warm-up) and ``"plateau"`` (the
    engine lowers it between epochs), otherwise a ``PlanSchedule``. ``"decoupled"`` weight
    decay excludes every variable that is not a kernel. ``mixed_float16`` wraps the optimizer
    in a ``LossScaleOptimizer`` (dynamic loss scaling).
    """
    plan = SchedulePlan.from_config(config, steps_per_epoch)
    if config.schedule in ("constant", "plateau") and not plan.warmup_steps:
        learning_rate: Any = config.scaled_learning_rate
    else:
        learning_rate = PlanSchedule(**asdict(plan))
    decay = config.weight_decay if config.weight_decay_mode == "decoupled" and config.weight_decay else None
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate, momentum=config.momentum, nesterov=config.nesterov, weight_decay=decay
        )
    else:
        optimizer = keras.optimizers.Adam(learning_rate, weight_decay=decay)
    if decay:
        kernels = {id(v) for v in decayed_variables(model)}
        optimizer.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if id(v) not in kernels]
        )
    if config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def wrap_with_augmenter(model, augmenter):
    """``inputs -> augmenter -> model`` as one model (``model`` itself if no augmenter)."""
    if augmenter is None:
        return model
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    outputs = model(augmenter(inputs))
    return keras.Model(inputs, outputs, name=f"{model.name}_train")


def compile_for_training(model, config: TrainConfig, *, augmenter=None, steps_per_epoch: int):
    """The model ``train`` fits: ``model`` with the config's weight decay, ``augmenter`` in front
    (see ``wrap_with_augmenter``), compiled with its loss, optimizer and schedule.

    One home for what a run compiles, so ``keras_cnns.benchmark`` times exactly the engine's
    training step.

    Returns:
        The compiled wrapper, its optimizer built (a checkpoint's optimizer state has
        variables to load into).
    """
    if config.weight_decay and config.weight_decay_mode == "l2":
        apply_l2(model, config.weight_decay)
    wrapper = wrap_with_augmenter(model, augmenter)
    loss = make_loss(config.loss, label_smoothing=config.label_smoothing)
    optimizer = make_optimizer(config, steps_per_epoch, model)
    # "auto": XLA on JAX and on TensorFlow with a GPU (Keras skips it on a CPU and under op
    # determinism); never on PyTorch.
    jit = "auto" if keras.backend.backend() in ("tensorflow", "jax") else False
    wrapper.compile(
        optimizer=optimizer,
        loss=loss,
        # Weighted: the same numbers without sample weights, and exact over a distributed
        # run's weight-0 evaluation padding (keras_cnns.distribute).
        weighted_metrics=["accuracy"],
        jit_compile=jit,
        steps_per_execution=steps_per_execution(config),
    )
    wrapper.optimizer.build(wrapper.trainable_variables)
    return wrapper


def steps_per_execution(config: TrainConfig) -> int:
    """``config.steps_per_execution``, or 1 on PyTorch (Keras allows no other value there; the
    steps and their results are the same either way)."""
    return 1 if keras.backend.backend() == "torch" else config.steps_per_execution


# --- feeding the steps ------------------------------------------------------------------------------

# A split stays on the accelerator when it takes at most this fraction of the device's memory.
DEVICE_DATA_FRACTION = 0.25


class HostFeed:
    """Images and labels in host memory: ``fit`` copies each batch to the device (the plain path)."""

    on_device = False

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def fit_data(self, batch_size: int, order: np.ndarray | None = None) -> dict:
        """``fit`` arguments for one pass in ``order`` (``None``: as stored)."""
        if order is None:
            return {"x": self.x, "y": self.y, "batch_size": batch_size}
        return {"x": self.x[order], "y": self.y[order], "batch_size": batch_size}

    def validation_data(self, batch_size: int):
        return (self.x, self.y)


class DeviceFeed:
    """Images and labels held on the accelerator (JAX): no per-step copy from the host.

    The arrays are copied to the device once; each batch is gathered there, in the epoch's
    order, by one compiled call. The batches are exactly ``HostFeed``'s (same order, same
    values, the same last partial batch), so training gives the same numbers.
    """

    on_device = True

    def __init__(self, x: np.ndarray, y: np.ndarray):
        import jax

        self.x, self.y = jax.device_put(x), jax.device_put(y)
        self.size = len(x)

    def fit_data(self, batch_size: int, order: np.ndarray | None = None) -> dict:
        return {"x": _DeviceBatches(self, batch_size, order)}

    def validation_data(self, batch_size: int):
        return _DeviceBatches(self, batch_size, None)


class _DeviceBatches(keras.utils.PyDataset):
    """One pass over a ``DeviceFeed`` in batches, as ``fit`` and ``evaluate`` read it."""

    def __init__(self, feed: DeviceFeed, batch_size: int, order: np.ndarray | None):
        super().__init__()  # one worker, no thread or process: batches in order
        import jax

        self.feed, self.batch_size = feed, batch_size
        # The order travels once per pass (4 bytes an image), then stays on the device.
        indices = np.arange(feed.size) if order is None else np.asarray(order)
        self.order = jax.device_put(indices.astype(np.int32))
        self._next, self._start = None, None

    def __len__(self) -> int:
        return math.ceil(self.feed.size / self.batch_size)

    def __getitem__(self, index: int):
        start = index * self.batch_size
        size = min(self.batch_size, self.feed.size - start)
        if index != self._next:  # not the batch after the last one: say where to start
            import jax

            self._start = jax.device_put(np.int32(start))
        # The next start is computed on the device too: read in order, a pass sends nothing
        # from the host after its first batch.
        gather = _batch_gatherer()
        x, y, self._start = gather(self.feed.x, self.feed.y, self.order, self._start, size)
        self._next = index + 1
        return x, y


@functools.cache
def _batch_gatherer():
    """A compiled ``(x, y, order, start, size) -> (x[order[start:start + size]], y[...],
    start + size)``; ``start`` is traced (one compilation per batch size, not per batch)."""
    import jax

    def gather(x, y, order, start, size):
        indices = jax.lax.dynamic_slice_in_dim(order, start, size)
        batch = jax.numpy.take(x, indices, axis=0), jax.numpy.take(y, indices, axis=0)
        return (*batch, start + size)

    return jax.jit(gather, static_argnums=4)


def device_data_fits(*arrays: np.ndarray) -> bool:
    """Whether ``train`` keeps the data on the accelerator: JAX on an accelerator, no
    ``keras.distribution`` in force (its data layout is the distribution's business), and the
    arrays take at most ``DEVICE_DATA_FRACTION`` of the device's memory."""
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is not None:
        return False
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return False  # host and device memory are one: nothing to save
    stats = device.memory_stats() or {}
    limit = stats.get("bytes_limit")
    needed = sum(a.nbytes for a in arrays if a is not None)
    return bool(limit) and needed <= DEVICE_DATA_FRACTION * limit


def make_feed(x: np.ndarray, y: np.ndarray, *, on_device: bool | None = None):
    """A ``DeviceFeed`` where ``on_device`` (``None``: ``device_data_fits``), else a ``HostFeed``."""
    if on_device is None:
        on_device = device_data_fits(x, y)
    return DeviceFeed(x, y) if on_device else HostFeed(x, y)


def fit_epoch(
    wrapper,
    feed,
    *,
    batch_size: int,
    epoch: int,
    order: np.ndarray | None = None,
    validation=None,
    verbose: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
):
    """One epoch of ``wrapper.fit`` over ``feed`` in ``order``, validated on ``validation``.

    Args:
        wrapper: the compiled model (``compile_for_training``).
        feed: a ``HostFeed`` or ``DeviceFeed`` of the training split.
        batch_size: images per step.
        epoch: the run's 0-based epoch (Keras counts epochs across calls).
        order: the epoch's permutation of the training images (``None``: as stored).
        validation: a feed of the validation split, or ``None``.
        verbose: Keras' ``verbose``.
        callbacks: Keras callbacks.

    Returns:
        Keras' ``History`` of the epoch.
    """
    return wrapper.fit(
        **feed.fit_data(batch_size, order),
        epochs=epoch + 1,
        initial_epoch=epoch,
        shuffle=False,  # `order` is the shuffle: the engine draws it from (seed, epoch)
        validation_data=None if validation is None else validation.validation_data(batch_size),
        verbose=verbose,
        callbacks=list(callbacks),
    )


def reset_seed_generators(model, seed: int, epoch: int) -> int:
    """Set every ``SeedGenerator`` state of ``model`` from ``(seed, epoch)``.

    Called before each epoch, so dropout, augmentation and stochastic-depth draws depend on
    the seed and the epoch only, not on how many epochs this process has run.

    Returns:
        The number of generators reset.
    """
    states = [v for v in model.non_trainable_variables if v.name == _SEED_STATE_NAME]
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    draws = rng.integers(1, 2**31 - 1, size=len(states))
    for v, draw in zip(states, draws, strict=True):
        v.assign(np.array([draw, 0], dtype=v.dtype))
    return len(states)


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Set Keras' global dtype policy to ``name`` inside the block, and restore it after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def deterministic_kernels(enabled: bool) -> Iterator[None]:
    """Make the backend's kernels deterministic inside the block (no-op if not ``enabled``).

    TensorFlow: op determinism (which also makes Keras skip XLA). PyTorch: deterministic
    algorithms. JAX on CPU is deterministic already; on a GPU set
    ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` before starting Python.
    """
    if not enabled:
        yield
        return
    restore = None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # only here: the engine must run where TF is not installed
        from tensorflow.python.framework import config as tf_config

        was_enabled = tf_config.is_op_determinism_enabled()
        tf.config.experimental.enable_op_determinism()
        if not was_enabled:
            restore = tf_config.disable_op_determinism
    elif backend == "torch":
        import torch

        was_enabled = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)

        def restore():
            torch.use_deterministic_algorithms(was_enabled)

    try:
        yield
    finally:
        if restore is not None:
            restore()


# --- callbacks ---------------------------------------------------------------------------------------


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training once the (running mean) loss is NaN or infinite; ``batch`` is the first such.

    ``async_safe``: where the backend allows it (JAX, PyTorch), Keras runs the batch-end hooks
    in worker threads, so the training loop never waits on the host for a step's loss: reading
    it on the main thread would synchronise every step and leave the accelerator idle while
    Python prepares the next one. The hooks may then run out of order and a few steps late, so
    training stops a few steps after the first non-finite batch rather than at it. Nothing
    else changes: the running mean of the loss stays non-finite for the rest of the epoch once
    it is (so no divergence is missed), every pending hook runs before the epoch ends (so
    ``batch`` is the earliest non-finite one, as a synchronous check would find), and no
    weights of a diverged epoch are ever saved.
    """

    async_safe = True

    def __init__(self):
        super().__init__()
        self.batch: int | None = None
        self.loss: float | None = None
        self._lock = threading.Lock()
        self._fitted = None

    def set_model(self, model):
        super().set_model(model)
        # Kept apart from `self.model`, which on JAX copies the training state back into the
        # variables: not a thing to do from a callback thread while the loop runs on.
        self._fitted = model

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            with self._lock:
                if self.batch is None or batch < self.batch:
                    self.batch, self.loss = batch, float(loss)
            self._fitted.stop_training = True


class _EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, titled ``Epoch k/N`` of the whole run (fit runs one epoch at a time).

    ``async_safe`` as Keras' own default progress bar is, so showing it does not synchronise
    every step (see ``StopOnNonFinite``).
    """

    async_safe = True

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs


# --- run state (checkpoint bookkeeping) -------------------------------------------------------------


@dataclass
class RunState:
    """What ``state.json`` holds next to the weights: enough to resume mid-run exactly."""

    run_id: str
    config: dict
    status: str = "running"  # "running" | "completed"
    epochs_done: int = 0
    checkpoint: str | None = None  # weights + optimizer of the last completed epoch
    history: list = field(default_factory=list)
    wall_time: float = 0.0
    started: str = ""
    lr: float | None = None  # plateau: the current (reduced) learning rate
    plateau_best: float | None = None
    plateau_wait: int = 0
    stop_best: float | None = None
    stop_wait: int = 0
    stopped_early: bool = False
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    best_checkpoint: str | None = None
    record: dict | None = None
    # sha256 of each file the state names, as written: a checkpoint damaged since (a bad disk,
    # a copy cut short) is refused, not silently resumed from.
    checksums: dict = field(default_factory=dict)
    version: int = _STATE_VERSION

    @classmethod
    def load(cls, path: Path) -> RunState | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("version") != _STATE_VERSION:
                raise ValueError(f"state version {data.get('version')}")
            state = cls(**data)
            state._check()
            return state
        except (ValueError, TypeError) as err:
            raise UserError(
                f"damaged checkpoint state {path} ({err}); delete its directory to start the run again"
            ) from None

    def _check(self) -> None:
        """A ``ValueError`` if the fields do not fit together (a hand-edited or foreign file)."""
        if not isinstance(self.config, dict) or self.status not in ("running", "completed"):
            raise ValueError(f"status {self.status!r} or config of the wrong type")
        count = self.epochs_done
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"epochs_done {count!r}")
        if not isinstance(self.history, list) or len(self.history) != count:
            raise ValueError(f"{count} epochs done but a history of {len(self.history)}")
        for name in (self.checkpoint, self.best_checkpoint):
            if name is not None and (not isinstance(name, str) or Path(name).name != name):
                raise ValueError(f"checkpoint name {name!r}")
        if count and self.checkpoint is None:
            raise ValueError(f"{count} epochs done but no checkpoint named")
        if self.status == "completed" and not isinstance(self.record, dict):
            raise ValueError("completed without its record")
        if not isinstance(self.checksums, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.checksums.items()
        ):
            raise ValueError("checksums must map file names to sha256 digests")

    def save(self, path: Path) -> None:
        records_lib.atomic_write_text(path, json.dumps(records_lib.json_safe(asdict(self)), indent=1))


# --- the run --------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    *,
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    tags: Mapping[str, Any] | None = None,
    resume: bool = True,
    verbose: int = 1,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    tensorboard: bool | str | os.PathLike = False,
) -> dict:
    """Train, test and record one run of ``config``; resume it if it was interrupted.

    Args:
        config: the run.
        out_dir: where ``records.jsonl`` and ``checkpoints/<run_id>/`` live.
        data_dir: local data archives (default: ``$KERAS_CNNS_DATA_DIR``, else tfds).
        tags: JSON-safe labels stored in the record, e.g. ``{"experiment": ..., "variant": ...}``.
        resume: continue from the run's checkpoint if there is one (``False``: delete it and
            start again). A run that already completed is not trained again: its record is
            returned with ``tags`` (and appended only if ``records.jsonl`` lacks that record
            with those tags).
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        callbacks: extra Keras callbacks. Training calls ``fit`` once per epoch, so they see
            one ``on_train_begin``/``on_train_end`` per epoch (epoch indices are the run's).
        tensorboard: ``True`` to log to ``out_dir/tensorboard/<run_id>``, or a directory.
            Needs the tensorflow and tensorboard packages (any backend).

    Returns:
        The record (see ``RECORD_KEYS``) that was appended to ``out_dir/records.jsonl``.

    Raises:
        UserError: bad arguments, an unknown model or a model option it does not take.
        DataError: the dataset cannot be found or loaded.
        DivergedError: the loss became non-finite (after the "diverged" record is appended).
    """
    if not isinstance(config, TrainConfig):
        raise UserError(f"train() needs a TrainConfig, got {type(config).__name__}")
    if verbose not in (0, 1, 2):
        raise UserError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    try:
        tags = records_lib.json_safe(dict(tags or {}))
    except (TypeError, ValueError) as err:
        raise UserError(f"tags must be a JSON-safe mapping: {err}") from None

    if tensorboard and not tensorboard_available():
        raise UserError(
            "TensorBoard logs need the tensorflow and tensorboard packages (pip install tensorboard)"
        )
    from keras_cnns.registry import get_entry

    get_entry(config.model)  # an unknown model fails here, before any data is loaded
    placement = distribute.placement(config.devices)
    placement.check_batch(config.batch_size)

    out_dir = Path(out_dir)
    if not placement.is_chief:
        # Only the chief writes into out_dir; the others write a private copy (distribute).
        out_dir = placement.private_out_dir(out_dir, config.run_id(), resume=resume)
        verbose, tensorboard = 0, bool(tensorboard)
    run_dir = out_dir / CHECKPOINTS_DIR / config.run_id()
    run_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(run_dir):
        if not resume:
            _clear_run_dir(run_dir)
        _remove_stale_temp_files(run_dir, verbose)
        state = RunState.load(run_dir / STATE_FILE)
        placement.agree(state.epochs_done if state else 0, "the epochs done")
        if state is not None and not config.same_run(state.config):
            raise UserError(
                f"checkpoint {run_dir} belongs to another config; delete it or pass resume=False"
            )
        if state is not None and state.status == "completed":
            _check_final_model(run_dir / FINAL_MODEL_FILE, state.checksums.get(FINAL_MODEL_FILE))
            return _completed_record(state, out_dir / RECORDS_FILE, tags, verbose)

        caller_policy = keras.config.dtype_policy()
        try:
            # A clean Keras state per run: layer names, graphs and memory of earlier runs in
            # this process (a sweep, a tuner) do not leak in. It resets the global policy,
            # which is restored below.
            keras.backend.clear_session()
            with deterministic_kernels(config.deterministic), dtype_policy(config.precision), placement.scope():
                return _Run(
                    config=config,
                    out_dir=out_dir,
                    run_dir=run_dir,
                    data_dir=data_dir,
                    tags=tags,
                    state=state,
                    verbose=verbose,
                    callbacks=list(callbacks),
                    tensorboard=tensorboard,
                    placement=placement,
                ).run()
        finally:
            keras.config.set_dtype_policy(caller_policy)


class _Run:
    """One call of ``train``: holds the pieces while the steps run (see the module docstring)."""

    def __init__(self, *, config, out_dir, run_dir, data_dir, tags, state, verbose, callbacks, tensorboard, placement):
        self.placement: distribute.Placement = placement
        self.config: TrainConfig = config
        self.out_dir: Path = out_dir
        self.run_dir: Path = run_dir
        self.data_dir = data_dir
        self.tags = tags
        self.verbose = verbose
        self.callbacks = callbacks
        self.tensorboard = tensorboard
        self.segment_start = time.perf_counter()
        self.resumed = state is not None and state.epochs_done > 0
        self.state = state or RunState(
            run_id=config.run_id(), config=config.to_dict(), started=_utc_now()
        )

    # --- setup --------------------------------------------------------------------------------

    def run(self) -> dict:
        config = self.config
        keras.utils.set_random_seed(config.seed)
        self._load_data()
        self._build()
        if self.resumed:
            checkpoint = self.run_dir / self.state.checkpoint
            if not checkpoint.is_file():
                raise UserError(f"{checkpoint} is missing; delete {self.run_dir} to start the run again")
            _load_checkpoint(self.wrapper, checkpoint, self.state.checksums.get(checkpoint.name))
            if self.state.lr is not None:
                self.wrapper.optimizer.learning_rate = self.state.lr
        self._say_hello()
        diverged = self._train_epochs()
        if diverged is not None:
            return self._diverge(*diverged)
        return self._finish()

    def _load_data(self) -> None:
        from keras_cnns import data

        config = self.config
        self.stream_feeds = None
        if data.DATASETS[config.dataset].streamed:
            return self._load_stream()
        splits = data.load_dataset(
            config.dataset,
            data_dir=self.data_dir,
            val_size=config.val_size,
            seed=config.seed,
            train_subset=config.train_subset,
            test_subset=config.test_subset,
            allow_sample=config.allow_sample,
        )
        preprocessor = data.fit_preprocessing(config.preprocess, splits.x_train)
        self.splits = splits
        self.preprocessing = preprocessor.info()
        self.x_train = preprocessor.apply(splits.x_train)
        self.x_val = preprocessor.apply(splits.x_val) if len(splits.x_val) else None
        self.x_test = preprocessor.apply(splits.x_test)
        self.y_train, self.y_val, self.y_test = (
            self._labels(splits.y_train),
            self._labels(splits.y_val) if len(splits.y_val) else None,
            self._labels(splits.y_test),
        )
        self.steps_per_epoch = self.placement.steps_per_epoch(len(self.x_train), config.batch_size)
        self.augmenter = data.make_augmenter(
            config.augment,
            seed=config.seed,
            image_shape=self.x_train.shape[1:],
            x_train_float=self.x_train,
            fill_value=preprocessor.fill_value,
        )

    def _labels(self, y: np.ndarray) -> np.ndarray:
        # Keras' sparse cross-entropy has no label smoothing: one-hot labels when it is on.
        if self.config.label_smoothing:
            return np.eye(self.splits.num_classes, dtype="float32")[y]
        return y

    def _load_stream(self) -> None:
        """A dataset too large for memory (ImageNet): ``tf.data`` feeds, preprocessed and
        augmented in the input pipeline (``keras_cnns.imagenet``); the splits hold sizes only."""
        from keras_cnns import data, imagenet

        config = self.config
        source = imagenet.open_imagenet(config, self.data_dir)
        images = {k: imagenet.StreamedImages(n, source.image_shape) for k, n in source.sizes.items()}
        self.splits = data.Splits(
            name=config.dataset, source=source.source,
            x_train=images["train"], y_train=None, x_val=images["val"], y_val=None,
            x_test=images["test"], y_test=None, num_classes=data.DATASETS[config.dataset].num_classes,
        )  # fmt: skip
        self.preprocessing = source.preprocessing_info()
        self.x_train, self.x_test = images["train"], images["test"]
        self.x_val = images["val"] if len(images["val"]) else None
        self.y_train = self.y_val = self.y_test = None
        self.steps_per_epoch = self.placement.steps_per_epoch(len(self.x_train), config.batch_size)
        self.augmenter = None  # the pipeline crops and flips
        feeds = {
            k: source.feed(k, self.placement, seed=config.seed, one_hot=bool(config.label_smoothing))
            for k in ("train", "val", "test")
        }
        self.stream_feeds = (feeds["train"], feeds["val"] if self.x_val is not None else None, feeds["test"])

    def _build(self) -> None:
        from keras_cnns.registry import build_model

        config = self.config
        self.model = build_model(
            config.model,
            input_shape=self.x_train.shape[1:],
            num_classes=self.splits.num_classes,
            **dict(config.model_kwargs),
        )
        self.wrapper = compile_for_training(
            self.model, config, augmenter=self.augmenter, steps_per_epoch=self.steps_per_epoch
        )
        self.placement.prepare(self.wrapper)
        if self.stream_feeds is not None:
            self.train_feed, self.val_feed, self.test_feed = self.stream_feeds
            return
        distributed = self.placement.distributed
        make = self.placement.make_feed if distributed else make_feed
        self.train_feed = make(self.x_train, self.y_train)
        self.val_feed = make(self.x_val, self.y_val) if self.x_val is not None else None
        self.test_feed = (self.placement.make_feed if distributed else HostFeed)(self.x_test, self.y_test)

    def _say_hello(self) -> None:
        if not self.verbose:
            return
        s, c = self.splits, self.config
        where = f"resuming after epoch {self.state.epochs_done}" if self.resumed else "starting"
        print(
            f"keras-cnns: {self.state.run_id}: {c.model} on {c.dataset} ({s.source}; "
            f"{len(s.x_train)} train, {len(s.x_val)} val, {len(s.x_test)} test), "
            f"{keras.backend.backend()} on {_device_name()}, {c.precision}; {where}",
            flush=True,
        )

    # --- the epochs ---------------------------------------------------------------------------

    def _train_epochs(self) -> tuple[int, StopOnNonFinite, dict] | None:
        """Train the remaining epochs; ``(epoch, detector, logs)`` if the loss diverged."""
        config, state = self.config, self.state
        extra = list(self.callbacks)
        if self.tensorboard:
            extra.append(self._tensorboard_callback())
        if os.environ.get(records_lib.FAULT_ENV):
            extra.append(_BatchFault())
        for epoch in range(state.epochs_done, config.epochs):
            if state.stopped_early:
                break
            reset_seed_generators(self.wrapper, config.seed, epoch)
            order = np.random.default_rng([config.seed, epoch]).permutation(len(self.x_train))
            detector = StopOnNonFinite()
            progress = [_EpochProgbar(config.epochs)] if self.verbose else []
            lr = self._epoch_lr(epoch)
            start = time.perf_counter()
            fit = fit_epoch(
                self.wrapper,
                self.train_feed,
                batch_size=config.batch_size,
                epoch=epoch,
                order=order,
                validation=self.val_feed,
                verbose=self.verbose,
                callbacks=[detector, *progress, *extra],
            )
            seconds = time.perf_counter() - start
            logs = {k: float(v[-1]) for k, v in fit.history.items() if v}
            logs = self.placement.exact_validation(logs, self.wrapper, self.val_feed)
            entry = {
                "epoch": epoch + 1,
                "loss": logs.get("loss"),
                "accuracy": logs.get("accuracy"),
                "val_loss": logs.get("val_loss"),
                "val_accuracy": logs.get("val_accuracy"),
                "lr": lr,
                "time": seconds,
            }
            finite = [v for k, v in entry.items() if k in ("loss", "val_loss") and v is not None]
            if detector.batch is not None or not all(math.isfinite(v) for v in finite):
                return epoch, detector, entry
            state.history.append(entry)
            self._after_epoch(epoch, entry)
        return None

    def _epoch_lr(self, epoch: int) -> float:
        """The learning rate of the epoch's last step (the plateau rate for ``plateau``)."""
        if self.config.schedule == "plateau":
            # Read back from the optimizer: what this epoch really trains with.
            return float(ops.convert_to_numpy(self.wrapper.optimizer.learning_rate))
        last_step = (epoch + 1) * self.steps_per_epoch - 1
        return learning_rate_at(self.config, last_step, self.steps_per_epoch)

    def _after_epoch(self, epoch: int, entry: dict) -> None:
        """Plateau, early stopping and best-epoch bookkeeping, then the checkpoint."""
        config, state = self.config, self.state
        val_loss, val_accuracy = entry["val_loss"], entry["val_accuracy"]
        if config.schedule == "plateau" and val_loss is not None:
            lr = state.lr if state.lr is not None else config.scaled_learning_rate
            state.plateau_best, state.plateau_wait, state.lr = plateau_step(
                val_loss, best=state.plateau_best, wait=state.plateau_wait, lr=lr,
                patience=config.plateau_patience, factor=config.lr_factor,
            )  # fmt: skip
            self.wrapper.optimizer.learning_rate = state.lr
        if config.early_stopping_patience is not None and val_loss is not None:
            state.stop_best, state.stop_wait, state.stopped_early = early_stopping_step(
                val_loss, best=state.stop_best, wait=state.stop_wait,
                patience=config.early_stopping_patience,
            )  # fmt: skip
        if config.select == "best_val" and val_accuracy is not None:
            if state.best_val_accuracy is None or val_accuracy > state.best_val_accuracy:
                state.best_epoch, state.best_val_accuracy = epoch + 1, val_accuracy
                state.best_checkpoint = f"best-epoch-{epoch + 1:04d}.weights.h5"
                state.checksums[state.best_checkpoint] = _save_weights_atomic(
                    self.wrapper, self.run_dir / state.best_checkpoint
                )
        state.checkpoint = f"epoch-{epoch + 1:04d}.weights.h5"
        state.checksums[state.checkpoint] = _save_weights_atomic(self.wrapper, self.run_dir / state.checkpoint)
        state.epochs_done = epoch + 1
        self._save_state()

    def _tick(self) -> None:
        """Add the time since the last tick to the run's wall time (kept across resumes)."""
        now = time.perf_counter()
        self.state.wall_time += now - self.segment_start
        self.segment_start = now

    def _save_state(self) -> None:
        state = self.state
        self._tick()
        keep = {STATE_FILE, FINAL_MODEL_FILE, ".lock", state.checkpoint, state.best_checkpoint}
        state.checksums = {k: v for k, v in state.checksums.items() if k in keep}
        state.save(self.run_dir / STATE_FILE)
        # Only now that the state names the new files may the old ones go.
        for path in self.run_dir.iterdir():
            if path.name not in keep and path.name.endswith(".weights.h5"):
                path.unlink(missing_ok=True)

    def _tensorboard_callback(self):
        if self.tensorboard is True:
            log_dir = self.out_dir / TENSORBOARD_DIR / self.state.run_id
        else:
            log_dir = Path(self.tensorboard)
        return keras.callbacks.TensorBoard(log_dir=str(log_dir))

    # --- the end ------------------------------------------------------------------------------

    def _finish(self) -> dict:
        config, state = self.config, self.state
        if not state.history:
            raise UserError(f"run {state.run_id} has no completed epoch to test")  # cannot happen
        if config.select == "best_val" and state.best_checkpoint is not None:
            _load_checkpoint(
                self.wrapper, self.run_dir / state.best_checkpoint, state.checksums.get(state.best_checkpoint)
            )
            selected = state.best_epoch
        else:
            selected = state.epochs_done
        scores = self.placement.evaluate(self.wrapper, self.test_feed, config.batch_size)
        test = {
            "loss": float(scores["loss"]),
            "accuracy": float(scores["accuracy"]),
            "error": 100.0 * (1.0 - float(scores["accuracy"])),
        }
        with self.placement.portable(self.model):
            state.checksums[FINAL_MODEL_FILE] = _save_model_atomic(self.model, self.run_dir / FINAL_MODEL_FILE)
        self._tick()
        record = self._record("completed", test=test, selected_epoch=selected)
        state.status, state.record = "completed", record
        self._save_state()
        records_lib.append_record(self.out_dir / RECORDS_FILE, record)
        if self.verbose:
            print(
                f"keras-cnns: {state.run_id}: test error {test['error']:.2f}% (epoch {selected}), "
                f"record appended to {self.out_dir / RECORDS_FILE}",
                flush=True,
            )
        return record

    def _diverge(self, epoch: int, detector: StopOnNonFinite, entry: dict) -> dict:
        state = self.state
        self._tick()  # not saved: the state on disk stays the last good epoch's
        where = f"epoch {epoch + 1}" + (f", batch {detector.batch + 1}" if detector.batch is not None else "")
        record = self._record(
            "diverged",
            test=None,
            selected_epoch=None,
            history=[*state.history, entry],
            divergence={"epoch": epoch + 1, "batch": None if detector.batch is None else detector.batch + 1},
        )
        records_lib.append_record(self.out_dir / RECORDS_FILE, record)
        kept = f"epoch {state.epochs_done}" if state.epochs_done else "none: it diverged in epoch 1"
        raise DivergedError(
            f"run {state.run_id}: non-finite loss in {where} (learning rate {entry['lr']:g}); "
            f"last good checkpoint: {kept}; a 'diverged' record was appended"
        )

    def _record(self, status: str, *, test, selected_epoch, history=None, **extra) -> dict:
        config, state, splits = self.config, self.state, self.splits
        record = {
            "run_id": state.run_id,
            "status": status,
            "tags": self.tags,
            "config": config.to_dict(),
            "model": config.model,
            "params": int(self.model.count_params()),
            "trainable_params": int(sum(math.prod(v.shape) for v in self.model.trainable_variables)),
            "dataset": {
                "name": config.dataset,
                "source": splits.source,
                "n_train": len(splits.x_train),
                "n_val": len(splits.x_val),
                "n_test": len(splits.x_test),
            },
            "history": list(state.history if history is None else history),
            "test": test,
            "selected_epoch": selected_epoch,
            "wall_time": state.wall_time,
            "started": state.started,
            "finished": _utc_now(),
            "backend": keras.backend.backend(),
            "versions": _versions(),
            "device": _device_name(),
            "git": git_revision(),
            "seed": config.seed,
            "precision": config.precision,
            # Beyond the contract's keys: what else a reader of the record needs.
            "preprocessing": self.preprocessing,
            "jit_compile": bool(self.wrapper.jit_compile),
            "data_on_device": getattr(self.train_feed, "on_device", None),
            "stopped_early": state.stopped_early,
            "distribution": self.placement.info(config, n_train=len(splits.x_train)),
            **extra,
        }
        return records_lib.json_safe(record)


# --- helpers ----------------------------------------------------------------------------------------


def _completed_record(state: RunState, records_path: Path, tags: dict, verbose: int) -> dict:
    """The stored record of a completed run, with ``tags``.

    Appended only if ``records.jsonl`` lacks a record of this run with these tags: re-running
    a command adds nothing, while another experiment that reuses the same config (other tags)
    gets its own line without training again.
    """
    record = {**(state.record or {}), "tags": tags}
    # Checked and appended under one lock: a run killed while appending its record (the
    # state already says completed) gets it appended exactly once by the next call.
    records_lib.append_record_once(
        records_path, record, present=lambda r: r.get("run_id") == state.run_id and r.get("tags") == tags
    )
    if verbose:
        print(f"keras-cnns: {state.run_id} already completed; its record is in {records_path}", flush=True)
    return record


def _remove_stale_temp_files(run_dir: Path, verbose: int) -> None:
    """Delete the temporary files of a killed writer (the run's lock is held: none is live)."""
    stale = [p for p in run_dir.iterdir() if records_lib.is_temp_file(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale and verbose:
        names = ", ".join(sorted(p.name for p in stale))
        print(f"keras-cnns: removed {len(stale)} partly written file(s) of an interrupted run: {names}", flush=True)


def _load_checkpoint(model, path: Path, sha256: str | None) -> None:
    """``model.load_weights(path)``; a damaged or foreign file is one ``UserError`` naming it.

    ``sha256`` (from ``state.json``; ``None`` for a state written before checksums were kept)
    is checked first: HDF5 itself notices a cut file but not changed bytes.
    """
    if sha256 is not None and _sha256(path) != sha256:
        raise UserError(
            f"damaged checkpoint {path} (its sha256 differs from the one recorded when it was "
            f"written); delete {path.parent} (or pass --no-resume) to start the run again"
        )
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise UserError(
            f"damaged checkpoint {path} ({reason}); delete {path.parent} (or pass --no-resume) "
            "to start the run again"
        ) from None


def _check_final_model(path: Path, sha256: str | None) -> None:
    """A completed run's ``model.keras`` must be whole: its recorded sha256, else the zip CRCs."""
    import zipfile

    if not path.is_file():
        raise UserError(f"{path} is missing; delete {path.parent} (or pass --no-resume) to train again")
    if sha256 is not None:
        if _sha256(path) != sha256:
            raise UserError(
                f"damaged final model {path} (its sha256 differs from the one recorded when it was "
                f"written); delete {path.parent} (or pass --no-resume) to train again"
            )
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        bad = f"{type(err).__name__}: {err}"
    if bad is not None:
        raise UserError(
            f"damaged final model {path} ({bad}); delete {path.parent} (or pass --no-resume) to train again"
        )


class _BatchFault(keras.callbacks.Callback):
    """The ``train-batch`` fault hook (``keras_cnns.records``): SIGKILL after the N-th batch."""

    def on_train_batch_end(self, batch, logs=None):
        action = records_lib.fault_point("train-batch")
        if action is not None:
            records_lib.fault_strike(action)


@contextlib.contextmanager
def _exclusive(run_dir: Path) -> Iterator[None]:
    """Refuse a second process training the same run at the same time."""
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"run {run_dir.name} is being trained by another process") from None
        yield
    finally:
        os.close(fd)


def _clear_run_dir(run_dir: Path) -> None:
    for path in run_dir.iterdir():
        if path.name == ".lock":
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_atomic(save, path: Path, tmp: Path) -> str:
    """``save(tmp)``, fsync, then ``os.replace(tmp, path)``: a reader sees the old file or the new.

    Returns the sha256 of the file written (``RunState.checksums``).

    A failure (a full disk) removes ``tmp`` and leaves ``path`` as it was; an ``OSError`` names
    ``path``. The ``checkpoint-write`` fault hook (``keras_cnns.records``) strikes here, with
    ``tmp`` cut to half its size.
    """
    try:
        save(tmp)
        action = records_lib.fault_point("checkpoint-write")
        if action is not None:
            os.truncate(tmp, tmp.stat().st_size // 2)
            records_lib.fault_strike(action, path)
        _fsync_file(tmp)
        digest = _sha256(tmp)
        os.replace(tmp, path)
        return digest
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:
            raise OSError(err.errno, err.strerror, os.fspath(path)) from None
        raise


def _save_weights_atomic(model, path: Path) -> str:
    """``model.save_weights`` (weights and optimizer state), atomically; returns its sha256."""
    stem = path.name.removesuffix(".weights.h5")
    return _save_atomic(model.save_weights, path, path.with_name(f".{stem}.{os.getpid()}.tmp.weights.h5"))


def _save_model_atomic(model, path: Path) -> str:
    """``model.save`` (a ``.keras`` archive), atomically; returns its sha256."""
    return _save_atomic(model.save, path, path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras"))


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    versions = {
        "keras": keras.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    backend = keras.backend.backend()
    module = sys.modules.get(backend) or __import__(backend)
    versions[backend] = getattr(module, "__version__", "unknown")
    return versions


def _device_name() -> str:
    """The accelerator's name, or ``"cpu"``."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return str(details.get("device_name", gpus[0].name))
    return "cpu"


def tensorboard_available() -> bool:
    """Whether Keras' TensorBoard callback can write here (it needs tf.summary and tensorboard)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tensorboard"))


def git_revision() -> str | None:
    """``git rev-parse HEAD`` of the source tree, or ``None`` (no git, not a checkout, timeout)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    revision = result.stdout.strip()
    return revision if result.returncode == 0 and revision else None
