"""The training engine: ``train(config, out_dir=...)`` runs one ``TrainConfig`` end to end.

Where each part lives:

* ``engine``: ``train`` and the loop of one run, and the record it appends.
* ``schedules``: learning-rate schedules (step, plateau, cosine, one-cycle) and early stopping.
* ``optimizers``: the optimizer, weight decay, the augmenter wrapper and ``compile``.
* ``feeds``: batches on the host or the device, the epoch's order and random draws.
* ``callbacks``: the NaN stop, the progress bar, the fault hook.
* ``checkpoints``: ``state.json``, atomic weight and model files, their checksums, the run lock.
* ``environment``: dtype policy and deterministic kernels for the run's duration; versions,
  device and git revision for the record.
* ``config``: ``TrainConfig``, one run as a frozen, validated config (no Keras).
* ``record``: ``RunRecord``, the typed line a run appends to ``records.jsonl``, and what makes
  two records the same run (no Keras).
* ``distribute``: where a run executes: one device, or data-parallel over several devices and
  hosts, behind one ``Placement``.

Everything a caller needs is importable from ``keras_cnns.training`` itself, loaded on first
use: ``keras_cnns.training.config`` and ``.record`` import without Keras.

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
   one ``RunRecord`` to ``out_dir/records.jsonl``.

Where the run executes (``TrainConfig.devices``, ``distribute``): one device is the
plain path; more train data-parallel (JAX ``keras.distribution.DataParallel``, TensorFlow
``MirroredStrategy``) with the same global batch, batch-norm statistics and exact evaluation,
and on several hosts only process 0 writes. A streamed dataset (ImageNet,
``keras_cnns.data.imagenet``) comes as ``tf.data`` feeds instead of arrays.

A non-finite loss stops the run at once; the last good checkpoint stays, a record with status
``"diverged"`` is appended, then ``DivergedError`` is raised.

Speed without changing a number (``keras_cnns.benchmark`` times each part): the loop
never waits on the host for a step's loss (the NaN check and the progress bar run in Keras'
callback threads where the backend allows it); on JAX with an accelerator the splits stay on
the device and each batch is gathered there (``DeviceFeed``), so no step copies images from
the host; ``steps_per_execution`` runs several steps per call. Each path feeds the same
compiled step the same batches in the same order: ``tests/test_benchmark.py`` checks that the
losses and weights are bitwise those of the plain path.

Weight decay (L2 or decoupled) is described in ``optimizers``.

Only ``keras``, ``keras.ops`` and ``numpy`` are used at import: the engine runs on JAX or
PyTorch machines without TensorFlow.
"""

import importlib

# name -> the module of this package that defines it (imported on first use).
_EXPORTS = {
    "callbacks": ("StopOnNonFinite",),
    "checkpoints": ("CHECKPOINTS_DIR", "FINAL_MODEL_FILE", "STATE_FILE", "RunState"),
    "config": ("TrainConfig",),
    "engine": ("TENSORBOARD_DIR", "train"),
    "environment": ("deterministic_kernels", "dtype_policy", "git_revision", "tensorboard_available"),
    "feeds": (
        "DEVICE_DATA_FRACTION", "DeviceFeed", "HostFeed", "device_data_fits", "fit_epoch", "make_feed",
        "reset_seed_generators",
    ),
    "optimizers": (
        "apply_l2", "compile_for_training", "decayed_variables", "make_optimizer", "steps_per_execution",
        "wrap_with_augmenter",
    ),
    "record": ("RECORDS_FILE", "RunRecord"),
    "schedules": (
        "ONECYCLE_DIV_FACTOR", "ONECYCLE_FINAL_DIV_FACTOR", "ONECYCLE_PEAK_FRACTION", "PLATEAU_MIN_DELTA",
        "PlanSchedule", "SchedulePlan", "early_stopping_step", "learning_rate_at", "monitored_value",
        "plateau_step",
    ),
}  # fmt: skip
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    """``keras_cnns.training.NAME``: imported from its module on first use (PEP 562)."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value
