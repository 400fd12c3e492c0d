"""The global settings a run holds while it trains, and what its record says about where it ran.

``dtype_policy`` and ``deterministic_kernels`` set Keras' dtype policy and the backend's
deterministic kernels inside a block and restore them after. ``library_versions``, ``device_name``
and ``git_revision`` fill the record's ``versions``, ``device`` and ``git`` entries;
``tensorboard_available`` says whether TensorBoard logs can be written here.
"""

from __future__ import annotations

import contextlib
import datetime
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np


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

# (backend, precision or None for any) that trains several times slower on a CPU than
# TensorFlow in float32: (the factor measured by `keras-cnns benchmark`, the line, the CPU
# flags any of which make it not apply). results/benchmarks/README.md: ResNet-20, batch 128,
# no augmentation, 2 AMD EPYC cores with AVX-512 and AVX512_BF16 (measured 2026-12-06).
CPU_SLOWDOWNS = {
    ("jax", None): (
        # ResNet-20: 205 img/s against TensorFlow's 575 (2026-12-06; 113 against 312 on a
        # Zen 3 CPU, 2026-12-03). Deeper nets fare worse (XLA's CPU backend runs one large
        # computation slowly): ResNet-110 18.2 s a step against TensorFlow's 3.07
        # (results/benchmarks/stochastic_depth.md, constant depth).
        2.8,
        "the JAX backend on a CPU trains about {factor:.1f}x slower than TensorFlow "
        "(measured, ResNet-20; ResNet-110 about 6x); for CPU runs set KERAS_BACKEND=tensorflow "
        "(JAX is the GPU backend)",
        frozenset(),
    ),
    ("tensorflow", "mixed_bfloat16"): (
        # 28 img/s against float32's 312 on 2 AMD EPYC (Zen 3) cores with AVX2 and no bf16
        # instructions (2026-12-03; the benchmark page of that day, in git history). With
        # AVX512_BF16 it is faster than float32: 676 against 575 img/s (2026-12-06).
        11,
        "mixed_bfloat16 on TensorFlow on a CPU without bf16 instructions (AVX512_BF16, AMX) "
        "trains about {factor:.0f}x slower than float32 (measured, ResNet-20); use float32 on "
        "this CPU",
        frozenset({"avx512_bf16", "amx_bf16", "bf16"}),  # x86-64 AVX512_BF16 / AMX; AArch64 BF16
    ),
    ("tensorflow", "mixed_float16"): (
        5.9,  # 98 img/s against float32's 575 (the same command's; the page's 624 is a later one's)
        "mixed_float16 on TensorFlow on a CPU trains about {factor:.0f}x slower than float32 "
        "(measured, ResNet-20): CPUs have no fast float16 convolutions; use float32 on a CPU",
        frozenset(),
    ),
}
_announced: set[str] = set()


def cpu_slowdowns(precision: str) -> list[str]:
    """The ``CPU_SLOWDOWNS`` lines that apply to a run at ``precision`` on this backend and
    device (none on an accelerator)."""
    if device_name() != "cpu":
        return []
    backend = keras.backend.backend()
    lines = []
    for key in ((backend, None), (backend, precision)):
        if key in CPU_SLOWDOWNS:
            factor, line, unless = CPU_SLOWDOWNS[key]
            if not unless & cpu_flags():
                lines.append(line.format(factor=factor))
    return lines


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux lists them in ``/proc/cpuinfo`` (``flags`` on x86-64,
    ``Features`` on AArch64); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def announce_cpu_slowdowns(precision: str) -> None:
    """Print each of ``cpu_slowdowns(precision)`` to stderr, once a process."""
    for line in cpu_slowdowns(precision):
        if line not in _announced:
            _announced.add(line)
            print(f"keras-cnns: note: {line}", file=sys.stderr, flush=True)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    versions = {
        "keras": keras.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    backend = keras.backend.backend()
    module = sys.modules.get(backend) or __import__(backend)
    versions[backend] = getattr(module, "__version__", "unknown")
    return versions


def device_name() -> str:
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
