"""Training throughput and peak device memory of the engine, beside plain-PyTorch CIFAR ResNets.

What it measures: steady-state training throughput, in images per second, of the
engine's own training step (``training.compile_for_training`` + ``training.fit_epoch``, the
code ``train`` runs) on synthetic 32x32x3 images with 10 classes, for each combination of
backend, model, precision, batch size, augmentation (``pad_crop,flip`` on the device, or
none), engine mode and steps per execution; and the same for a plain-PyTorch twin of each CIFAR
ResNet benchmarked (ResNet-56 when none is), of the same shape and parameter count (ResNet-56:
853,018 trainable; option-A shortcuts; eager, channels-last, ``torch.autocast`` for the mixed
precisions), on the same device, measured in the same run, so each CIFAR ResNet row shows its
ratio to its own depth's reference.

How: each case trains ``warmup`` untimed passes (compilation, first touches), then
``repeats`` timed passes of ``images`` images (whole batches) with the host clock; a pass
ends with the epoch's logs read back on the host, so all its device work is done. The row
reports the median pass (images / seconds) and the spread (max - min) / median. The engine
modes of one model, precision, batch, augmentation and steps per execution share one
compiled step and take turns pass by pass, so a drift of the machine's speed reaches them
alike. On a CPU (no GPU seen) every compiled step of a worker process takes turns the same
way, and each plain-PyTorch reference runs in the worker of the first backend with its Keras
row (``--isolate backend``) and takes its turn with them, for the same reason: the rows with
and without augmentation, and a Keras row and its reference, see the same machine. On a GPU
each compiled step is measured alone (the steps would compete for its memory). Peak device memory: JAX ``Device.memory_stats()["peak_bytes_in_use"]``, PyTorch
``torch.cuda.max_memory_allocated``, TensorFlow ``tf.config.experimental.get_memory_info``;
"n/a" with the reason where the backend reports none (on a CPU none of them does). Each
backend runs in its own worker process (``--isolate backend``), or each compiled step with
its modes in its own (``--isolate case``, the default where ``nvidia-smi`` sees a GPU: JAX
cannot reset its peak within a process, and a fresh process keeps the numbers independent).

Engine modes (``--modes``), to measure each optimisation separately:

* ``plain``: the engine without its speed-ups: batches copied from host memory each step and
  a NaN check that reads every step's loss on the main thread (a host synchronisation per
  step).
* ``async``: the NaN check in Keras' callback threads (``StopOnNonFinite.async_safe``).
* ``device``: and the data resident on the accelerator, batches gathered there (JAX only).
* ``engine``: what ``train`` does (async; data on the device where ``device_data_fits``).

``steps_per_execution`` (``--steps-per-execution``) is the ``TrainConfig`` field: Keras runs
that many steps per call and the batch-end callbacks once per call (never on PyTorch).

Sizes: ``--gpu-sizes`` (25,600 images a pass, 1 warm-up, median of 5, batches 128 and 512,
every model and precision) or ``--cpu-sizes`` (a tiny run that checks the machinery in about
a minute on two cores: CPU numbers say nothing about a GPU); the default picks by whether
``nvidia-smi`` sees a GPU. Outputs: ``OUT/benchmark.csv`` and ``OUT/README.md`` (written
atomically; ``--merge`` keeps the rows of earlier runs that this run did not measure).

On a GPU. The targets in the README are for an H100 with the JAX backend (ResNet-56 for
CIFAR: at least 20,000 images/s at batch 128, 40,000 at batch 512 in bfloat16, augmentation
at most 5% of the step, the paper's 64,000 steps under 7 minutes); none has been measured yet. On a machine with an NVIDIA
GPU, install the package with JAX for CUDA (``pip install -e . "jax[cuda12]"``), then run,
one after another (each takes minutes; ``--merge`` keeps the rows of the earlier runs):

    keras-cnns benchmark --gpu-sizes --backends jax --models resnet56_cifar \\
        --precisions float32,mixed_bfloat16 --modes plain,engine --repeats 3 --timeout 300 \\
        --out results/benchmarks --batch-sizes 128
    keras-cnns benchmark ... (the same) --batch-sizes 512 --merge
    keras-cnns benchmark ... (the same) --batch-sizes 128,512 --modes engine \\
        --steps-per-execution 8 --no-reference --merge

then, as time allows, ``--precisions mixed_float16``, the other ``--models`` and
``--backends torch`` (Keras on PyTorch: slow), each with ``--merge``.
``keras-cnns benchmark --report-only --out results/benchmarks --note "..."`` rewrites the
README from the CSV with a note on top (the device, what was left out).

Where each part lives:

* ``cases``: the options, the ``Case``\\ s they expand to, the sizes, the engine modes.
* ``runner``: ``run``: the worker processes, and the worker's side (``worker_main``).
* ``measure``: timing the engine's step on a Keras backend; peak device memory.
* ``reference``: the plain-PyTorch CIFAR ResNets and their timing.
* ``report``: ``benchmark.csv`` and the README's tables, the machine it ran on.
"""

from __future__ import annotations

import argparse

from keras_cnns.benchmark.cases import (
    CSV_COLUMNS,
    MODELS,
    MODES,
    REFERENCE,
    REFERENCE_MODEL,
    REFERENCE_TRAINABLE_PARAMS,
    Case,
    Plan,
    Sizes,
    add_arguments,
    plan_from_args,
)
from keras_cnns.benchmark.reference import reference_augment, reference_resnet
from keras_cnns.benchmark.report import environment, format_readme, format_table, write_outputs
from keras_cnns.benchmark.runner import run, worker_main

__all__ = [
    "CSV_COLUMNS", "MODELS", "MODES", "REFERENCE", "REFERENCE_MODEL", "REFERENCE_TRAINABLE_PARAMS",
    "Case", "Plan", "Sizes", "add_arguments", "environment", "format_readme", "format_table",
    "main", "plan_from_args", "reference_augment", "reference_resnet", "run", "worker_main",
    "write_outputs",
]  # fmt: skip


def main(args: argparse.Namespace) -> int:
    """Run the benchmark the options describe (``keras-cnns benchmark``)."""
    run(plan_from_args(args))
    return 0
