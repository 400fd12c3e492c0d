"""The optimizer and the compiled training model.

Weight decay, two explicit choices (``TrainConfig.weight_decay_mode``):

* ``"l2"``: every decayed variable of the built model gets ``keras.regularizers.L2(weight_decay)``
  as its ``regularizer``; Keras adds ``weight_decay * sum(w**2)`` to the training loss (and to
  the reported loss and val_loss) on every backend. The papers' "weight decay 1e-4" is 5e-5 here.
* ``"decoupled"``: the optimizer's ``weight_decay``, the same variables only: each step
  ``w -= learning_rate * weight_decay * w`` before the gradient step (AdamW-style for Adam).

The decayed variables (``TrainConfig.weight_decay_scope``): the conv and dense kernels (rank >= 2,
``"kernels"``), or every trainable variable (``"all"``: biases and batch norm's gamma and beta
too, as Torch's and PyTorch's SGD decay every parameter it is given).

``compile_for_training`` puts the augmenter in front of the model in a wrapper model
``inputs -> augmenter -> model`` (augmentation runs per batch on the device, inside the
compiled step, only when ``training=True``) and compiles it with the optimizer, the schedule
(``keras_cnns.training.schedules``), XLA where Keras uses it and ``steps_per_execution``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import keras

from keras_cnns.errors import UserError
from keras_cnns.losses import make_loss
from keras_cnns.training.config import TrainConfig
from keras_cnns.training.schedules import PlanSchedule, SchedulePlan


def decayed_variables(model, scope: str = "kernels") -> list:
    """The variables weight decay acts on: the trainable ones of rank >= 2 (conv and dense
    kernels) for ``scope="kernels"``, every trainable one for ``"all"``."""
    if scope == "all":
        return list(model.trainable_variables)
    return [v for v in model.trainable_variables if len(v.shape) >= 2]


def apply_l2(model, l2: float, scope: str = "kernels") -> int:
    """Put ``keras.regularizers.L2(l2)`` on the variables ``decayed_variables(model, scope)``.

    Keras then adds ``l2 * sum(w**2)`` over those variables to the training loss, on every
    backend, with no builder argument needed.

    Returns:
        The number of variables regularised.

    Raises:
        UserError: a variable already has a regulariser (the builder set one): two penalties
            on one weight would silently double the decay.
    """
    variables = decayed_variables(model, scope)
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
    decay excludes every variable outside ``config.weight_decay_scope``. ``mixed_float16`` wraps the optimizer
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
        kernels = {id(v) for v in decayed_variables(model, config.weight_decay_scope)}
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
        apply_l2(model, config.weight_decay, config.weight_decay_scope)
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
        # run's weight-0 evaluation padding (keras_cnns.training.distribute).
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
